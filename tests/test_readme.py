"""The README's two set-up commands are what users and CI run: keep them true. The README stays short, and every
relative link in it and in docs/ points to a file of the checkout."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _readme_commands() -> dict:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    cmds = [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("pip install torch")]
    return {"run": [c for c in cmds if "mtml-infer --demo" in c], "test": [c for c in cmds if "pytest" in c]}


def _relative_links(text: str) -> list:
    """Targets of the Markdown links and images in ``text`` that are not URLs or in-page anchors, with any
    ``#anchor`` removed; fenced code blocks and inline code are skipped."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", text, flags=re.M)  # [ref]: target
    out = []
    for target in targets:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:, ... or a link inside the same page
        out.append(target.split("#", 1)[0])
    return out


def test_readme_has_one_run_and_one_test_command():
    cmds = _readme_commands()
    assert len(cmds["run"]) == 1 and len(cmds["test"]) == 1, cmds


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    after = ci[ci.index("# README test command:") + 1].strip()
    assert after == _readme_commands()["test"][0]


def test_readme_is_at_most_200_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_link_finder_sees_links_and_skips_urls_anchors_and_code():
    text = ("[a](docs/a.md) ![p](img/p.png) [b](docs/b.md#part) [u](https://x.org) [s](#here)\n"
            "`[c](not/a/link.md)`\n```\n[d](not/either.md)\n```\n[ref]: ../up.md\n")
    assert _relative_links(text) == ["docs/a.md", "img/p.png", "docs/b.md", "../up.md"]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_in_the_checkout(doc):
    missing = []
    for target in _relative_links(doc.read_text()):
        path = (doc.parent / target).resolve()
        if not path.exists() or ROOT not in (path, *path.parents):
            missing.append(target)
    assert not missing, f"{doc.relative_to(ROOT)} links to files that are not in the checkout: {missing}"
