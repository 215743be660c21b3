"""Checkpoints are read with torch.load(weights_only=True): a file that would run code when unpickled is refused
before anything in it runs, and a file whose weights or model_config are wrong is one line naming the file and the
problem, exit status 2, in every command that reads checkpoints (mtml-infer --checkpoint, mtml-train --init and
--resume)."""

import builtins
import glob
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY

from mtml.cli import run_command
from mtml.cli.infer import main as infer_main
from mtml.cli.train import main as train_main
from mtml.data.toy import generate_scene
from mtml.errors import InputError
from mtml.io.ply import scene_to_ply
from mtml.model.backbone import BackboneConfig
from mtml.model.model import ModelConfig, MTMLNet, load_checkpoint, read_checkpoint, save_checkpoint
from mtml.predict.checkpoint import BUNDLED_DIR, bundled_checkpoints, load_model

REPO = Path(__file__).resolve().parents[1]


class CreatesAFile:
    """Unpickled with torch.load(weights_only=False), this opens (so creates) ``marker``: the payload of a
    malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def malicious_checkpoint(path: Path, marker: Path, legacy: bool) -> Path:
    """A checkpoint that looks like a plain mtml one (format tag, a real model_config and model_state) and
    carries the payload, in torch's zip format or its legacy format."""
    net = _tiny_net()
    state = {"format": "mtml-1", "model_config": asdict(net.cfg), "model_state": net.state_dict(),
             "epoch": 0, "payload": CreatesAFile(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def _tiny_net() -> MTMLNet:
    """The conftest TINY model: a small backbone, one-hot label input."""
    return MTMLNet(ModelConfig(backbone=BackboneConfig(**TINY["model"]["backbone"])))


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _tiny_config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(params=["zip", "legacy"])
def malicious(request, tmp_path):
    """(a malicious checkpoint file, the file its payload would create)."""
    marker = tmp_path / "payload_ran"
    return malicious_checkpoint(tmp_path / f"evil_{request.param}.pt", marker, request.param == "legacy"), marker


def test_the_payload_runs_under_an_unsafe_load(malicious):
    """The test's own check: the malicious file does create its marker when unpickled the unsafe way."""
    path, marker = malicious
    torch.load(path, weights_only=False)["payload"].close()  # the payload is the file object it opened
    assert marker.exists()


def test_infer_refuses_a_malicious_checkpoint(malicious, tmp_path, capsys):
    path, marker = malicious
    scene = scene_to_ply(generate_scene(1), tmp_path / "scene.ply")
    out = tmp_path / "out"
    code = run_command(infer_main, [str(scene), "--checkpoint", str(path), "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert path.name in line and "refused" in line and "open on loading" in line, line
    assert not marker.exists() and not out.exists()


def test_train_init_refuses_a_malicious_checkpoint(malicious, tmp_path, capsys):
    path, marker = malicious
    code = run_command(train_main, ["--config", str(_tiny_config_file(tmp_path)), "--out", str(tmp_path / "run"),
                                    "--init", str(path), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and path.name in line and "refused" in line, line
    assert not marker.exists()
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_resume_refuses_a_malicious_last_checkpoint(malicious, tmp_path, capsys):
    path, marker = malicious
    run = tmp_path / "run"
    run.mkdir()
    last = run / "last.pt"
    last.write_bytes(path.read_bytes())
    code = run_command(train_main, ["--config", str(_tiny_config_file(tmp_path)), "--out", str(run), "--resume",
                                    "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "last.pt" in line and "refused" in line, line
    assert not marker.exists()
    assert last.read_bytes() == path.read_bytes()  # the run did not go on and overwrite it


def test_the_installed_cli_refuses_it_in_a_subprocess(tmp_path):
    """The command as a user runs it, in its own process: one line on stderr, exit 2, the payload never runs."""
    marker = tmp_path / "payload_ran"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker, legacy=True)
    scene = scene_to_ply(generate_scene(1), tmp_path / "scene.ply")
    proc = subprocess.run([sys.executable, "-m", "mtml.cli.infer", str(scene), "--checkpoint", str(path),
                           "--out", str(tmp_path / "out"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert "evil.pt" in line and "refused" in line, line
    assert not marker.exists()


def _edited_checkpoint(tmp_path: Path, name: str, edit) -> Path:
    """A checkpoint of the tiny net saved normally, then its state changed by ``edit(state)`` and saved again."""
    path = tmp_path / name
    save_checkpoint(path, _tiny_net(), {"epoch": 0})
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    return path


def _wider_stem(state):
    state["model_config"]["backbone"]["full_channels"] = 6


def _semantic_head_without_weights(state):
    state["model_config"]["semantic_head"] = True


def _extra_tensor(state):
    state["model_state"]["embedding_head.extra"] = torch.zeros(2)


BAD_ARCHITECTURES = {
    "wider.pt": (_wider_stem, ["does not match model_config", "shape of backbone.", "in the file vs"]),
    "nohead.pt": (_semantic_head_without_weights, ["does not match model_config", "missing semantic_head."]),
    "extra.pt": (_extra_tensor, ["does not match model_config", "unexpected embedding_head.extra"]),
}


@pytest.mark.parametrize("name", list(BAD_ARCHITECTURES))
def test_wrong_architecture_is_one_line_naming_the_mismatch(name, tmp_path, capsys):
    edit, expected = BAD_ARCHITECTURES[name]
    path = _edited_checkpoint(tmp_path, name, edit)
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    for text in expected:
        assert text in str(info.value), str(info.value)
    scene = scene_to_ply(generate_scene(1), tmp_path / "scene.ply")
    code = run_command(infer_main, [str(scene), "--checkpoint", str(path), "--out", str(tmp_path / "out")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and name in line and expected[0] in line, line
    assert not (tmp_path / "out").exists()


def _unknown_key(state):
    state["model_config"]["num_clases"] = 6


def _wrong_type(state):
    state["model_config"]["num_classes"] = "6"


def _wrong_backbone_type(state):
    state["model_config"]["backbone"]["dilation"] = 2.5


def _unknown_referring_key(state):
    state["model_config"]["referring"] = {"dimension": 64}


def _not_a_mapping(state):
    state["model_config"] = [1, 2]


BAD_CONFIGS = {
    "unknown.pt": (_unknown_key, "unknown key num_clases"),
    "type.pt": (_wrong_type, "num_classes must be int, got str"),
    "backbone.pt": (_wrong_backbone_type, "backbone.dilation must be int, got float"),
    "referring.pt": (_unknown_referring_key, "unknown key referring.dimension"),
    "list.pt": (_not_a_mapping, "must be a mapping, got list"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_model_config_is_one_line_naming_the_key(name, tmp_path, capsys):
    edit, expected = BAD_CONFIGS[name]
    path = _edited_checkpoint(tmp_path, name, edit)
    with pytest.raises(InputError, match=f"{name}: bad model_config: .*{expected}"):
        load_checkpoint(path)
    code = run_command(train_main, ["--config", str(_tiny_config_file(tmp_path)), "--out", str(tmp_path / "run"),
                                    "--init", str(path), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and name in line and expected in line, line


def test_files_that_are_not_mtml_checkpoints(tmp_path):
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match="text.pt: not a readable mtml checkpoint"):
        read_checkpoint(text)
    untagged = tmp_path / "untagged.pt"
    torch.save({"model_state": {}}, untagged)
    with pytest.raises(InputError, match="untagged.pt: not an mtml checkpoint .missing format tag 'mtml-1'"):
        read_checkpoint(untagged)
    numpy_inside = tmp_path / "numpy.pt"
    torch.save({"format": "mtml-1", "counts": np.zeros(3)}, numpy_inside)
    with pytest.raises(InputError, match="numpy.pt: refused to load, not a plain mtml checkpoint"):
        read_checkpoint(numpy_inside)


def test_save_checkpoint_writes_only_plain_data(tmp_path):
    """numpy values a trainer puts in a checkpoint come back as plain numbers and lists under weights_only=True;
    a value that cannot be stored plainly is refused when saving, not when loading."""
    path = tmp_path / "m.pt"
    save_checkpoint(path, _tiny_net(), {"best_score": np.float64(0.5), "epoch": np.int64(3),
                                        "class_voxel_counts": np.arange(4), "sizes": {np.int64(1): np.float32(2.5)},
                                        "where": tmp_path / "x"})
    state = torch.load(path, weights_only=True)
    assert state["best_score"] == 0.5 and type(state["best_score"]) is float
    assert state["epoch"] == 3 and type(state["epoch"]) is int
    assert state["class_voxel_counts"] == [0, 1, 2, 3]
    assert state["sizes"] == {1: 2.5} and type(next(iter(state["sizes"]))) is int
    assert state["where"] == str(tmp_path / "x")
    with pytest.raises(TypeError, match=r"checkpoint\['bad'\] is a object"):
        save_checkpoint(tmp_path / "bad.pt", _tiny_net(), {"bad": object()})
    assert not (tmp_path / "bad.pt").exists()


def test_a_training_run_writes_checkpoints_that_load_safely(tiny_checkpoint):
    """last.pt (with optimizer state and RNG) and best.pt of a real run load with weights_only=True."""
    for path in (tiny_checkpoint, Path(tiny_checkpoint).parent / "best.pt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["format"] == "mtml-1"
    assert "optimizer_state" in torch.load(tiny_checkpoint, weights_only=True)


BUNDLED_FILES = (sorted(glob.glob(str(BUNDLED_DIR / "*.pt")))
                 + sorted(glob.glob(str(REPO / "tests" / "fixtures" / "longtail" / "*.pt"))))


@pytest.mark.parametrize("path", BUNDLED_FILES, ids=lambda p: Path(p).name)
def test_bundled_and_fixture_checkpoints_load_with_weights_only(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["format"] == "mtml-1"
    loaded = load_model(path)
    assert not loaded.model.training and loaded.path == path
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state["model_state"][name]), name


def test_every_bundled_checkpoint_has_a_model_card():
    names = bundled_checkpoints()
    assert {"toy", "toy_multitask", "toy_fe_only"} <= set(names)
    for name in names:
        card = (BUNDLED_DIR / f"{name}.md").read_text(encoding="utf-8")
        assert f"`{name}`" in card and "mtml-train --config" in card and "mtml-bench" in card, name
