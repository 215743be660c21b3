"""The README's two set-up commands are what users and CI run: keep them true."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> dict:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    cmds = [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("pip install torch")]
    return {"run": [c for c in cmds if "mtml-infer --demo" in c], "test": [c for c in cmds if "pytest" in c]}


def test_readme_has_one_run_and_one_test_command():
    cmds = _readme_commands()
    assert len(cmds["run"]) == 1 and len(cmds["test"]) == 1, cmds


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    after = ci[ci.index("# README test command:") + 1].strip()
    assert after == _readme_commands()["test"][0]
