"""Failures every writing CLI must handle before or while it works (issue 23): unusable output paths, a full
disk half-way through a scan's outputs, bad numeric options, config values of the wrong type; and mtml-infer's
stage timings adding up to its wall time."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY

from mtml.cli import run_command
from mtml.cli.bench import main as bench_main
from mtml.cli.infer import main as infer_main
from mtml.cli.train import main as train_main
from mtml.config import config_from_dict
from mtml.data.toy import generate_scene
from mtml.errors import InputError
from mtml.io.atomic import STAGING_PREFIX, staged_outputs
from mtml.io.ply import scene_to_ply, write_ply

READ_ONLY_DIR = Path("/sys")  # sysfs refuses new files, also to root (tests here may run as root)


def _run(main, argv, capsys):
    code = run_command(main, argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip().splitlines()


def _no_model_loading(monkeypatch):
    """Make loading a checkpoint or training fail the test: the checks must come first."""
    import mtml.cli.infer as infer_module
    from mtml.train import trainers

    def forbidden(*args, **kwargs):
        raise AssertionError("the output path was checked after work had started")

    monkeypatch.setattr(infer_module, "load_model", forbidden)
    monkeypatch.setattr(trainers, "run_training", forbidden)


def _bad_out_paths(tmp_path):
    """(argument, words the error must contain) for outputs that cannot be written."""
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not a folder\n")
    return {
        "regular file": (a_file, "not a folder"),
        "below a file": (a_file / "sub", "is a file, not a folder"),
        "read-only": (READ_ONLY_DIR / "mtml_out", "not writable"),
    }


@pytest.fixture
def train_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize("case", ["regular file", "below a file", "read-only"])
def test_infer_refuses_unusable_out_before_loading_the_model(case, tmp_path, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    out, words = _bad_out_paths(tmp_path)[case]
    src = write_ply(tmp_path / "room.ply", generate_scene(1).points)
    code, _, err = _run(infer_main, [str(src), "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert str(out) in err[0] and words in err[0] and "--out" in err[0]


def test_infer_refuses_unusable_scannet_export(tmp_path, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    export, _ = _bad_out_paths(tmp_path)["regular file"]
    src = write_ply(tmp_path / "room.ply", generate_scene(1).points)
    code, _, err = _run(infer_main, [str(src), "--out", str(tmp_path / "o"), "--scannet-export", str(export)], capsys)
    assert code == 2 and len(err) == 1 and str(export) in err[0] and "--scannet-export" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["regular file", "read-only"])
def test_train_refuses_unusable_out_before_training(case, train_config, tmp_path, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    out, words = _bad_out_paths(tmp_path)[case]
    code, _, err = _run(train_main, ["--config", str(train_config), "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert str(out) in err[0] and words in err[0]


@pytest.mark.parametrize("case", ["regular file", "read-only"])
def test_bench_refuses_unusable_out_before_evaluating(case, tmp_path, monkeypatch, capsys):
    import mtml.tables.toy_table1 as table1

    monkeypatch.setattr(table1, "evaluate_methods", lambda *a, **k: pytest.fail("evaluated before checking --out"))
    out, words = _bad_out_paths(tmp_path)[case]
    code, _, err = _run(bench_main, ["toy-generalization", "--scenes", "1", "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert str(out) in err[0] and words in err[0]


# --- all outputs of a scan, or none


def _fail_on(monkeypatch, module, name: str, when=lambda *args: True):
    """Make ``module.name`` raise a full-disk OSError when ``when(*args)``; returns the list of calls that failed."""
    real = getattr(module, name)
    failed = []

    def writer(*args, **kwargs):
        if when(*args):
            failed.append(args)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, writer)
    return failed


def _leftovers(folder: Path) -> list:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_full_disk_midway_leaves_nothing_of_that_scan(tiny_semantic_checkpoint, tmp_path, monkeypatch, capsys):
    from mtml.io import instances

    first = write_ply(tmp_path / "in" / "first.ply", generate_scene(3).points)
    second = write_ply(tmp_path / "in" / "second.ply", generate_scene(4).points)
    # the second scan's semantic and instance PLYs are written, then its instance picture hits a full disk
    failed = _fail_on(monkeypatch, instances, "write_instance_picture", lambda path, *rest: "second" in str(path))
    out, export = tmp_path / "out", tmp_path / "export"
    code, printed, err = _run(infer_main, [str(first), str(second), "--checkpoint", str(tiny_semantic_checkpoint),
                                           "--out", str(out), "--scannet-export", str(export)], capsys)
    assert failed and code == 2 and len(err) == 1, err
    assert "second" in err[0] and "No space left on device" in err[0]
    assert "first.ply" in printed and "second.ply" not in printed
    # the first scan is complete, nothing of the second is left: no files, no staging folders, no temporary files
    assert _leftovers(out) == ["first_instances.json", "first_instances.ply", "first_instances.png",
                               "first_semantic.ply", "first_semantic.png"]
    assert not [p for p in _leftovers(export) if "second" in p or STAGING_PREFIX in p]
    assert (export / "first.txt").exists()


def test_full_disk_names_the_file_being_written(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from plyfile import PlyData

    scene = scene_to_ply(generate_scene(2), tmp_path / "room.ply")
    _fail_on(monkeypatch, PlyData, "write", lambda ply, stream: "_instances.ply" in str(stream))
    out = tmp_path / "out"
    code, _, err = _run(infer_main, [str(scene), "--checkpoint", str(tiny_checkpoint), "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert str(out / "room_instances.ply") in err[0] and "No space left on device" in err[0]
    assert not out.exists()  # the folder the scan's outputs created is gone with them


def test_staged_outputs_move_together_or_not_at_all(tmp_path):
    dest = tmp_path / "a" / "b"
    with staged_outputs("the test files") as stage:
        (stage.folder(dest) / "one.txt").write_text("1")
        (stage.folder(dest) / "sub").mkdir()
        (stage.folder(dest) / "sub" / "two.txt").write_text("2")
        assert not (dest / "one.txt").exists()  # nothing is in place before the block ends
    assert _leftovers(dest) == ["one.txt", "sub", "sub/two.txt"]
    with pytest.raises(InputError, match="fresh/one.txt: cannot write: No space left on device"), \
            staged_outputs("the test files") as stage:
        (stage.folder(tmp_path / "fresh") / "one.txt").write_text("1")
        raise OSError(errno.ENOSPC, "No space left on device", str(stage.folder(tmp_path / "fresh") / "one.txt"))
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(KeyError), staged_outputs() as stage:  # any other error: nothing left, the error kept
        (stage.folder(dest) / "three.txt").write_text("3")
        raise KeyError("boom")
    assert _leftovers(dest) == ["one.txt", "sub", "sub/two.txt"]


# --- numeric options


NUMERIC_CASES = [
    (infer_main, ["x.ply"], "--max-memory-gb", ["nan", "inf", "-1", "0", "abc", "1e300"]),
    (infer_main, ["x.ply"], "--vote", ["0", "17", "2.5"]),
    (train_main, ["--config", "x.yaml"], "--epochs", ["0", "-1", "abc"]),
    (train_main, ["--config", "x.yaml"], "--seed", ["-1", "1.5"]),
    (train_main, ["--config", "x.yaml"], "--threads", ["-2"]),
    (bench_main, ["toy-generalization"], "--scenes", ["0", "-3"]),
    (bench_main, ["toy-table1"], "--scenes", ["0"]),
    (bench_main, ["toy-plain"], "--scenes", ["-1"]),
    (bench_main, ["toy-plain"], "--vote", ["0", "17"]),
    (bench_main, ["longtail"], "--scenes", ["0"]),
    (bench_main, ["referring"], "--scenes", ["0"]),
]


@pytest.mark.parametrize("main, before, option, value",
                         [(m, b, o, v) for m, b, o, values in NUMERIC_CASES for v in values],
                         ids=lambda x: x if isinstance(x, str) else "")
def test_bad_numeric_option_is_exit_2_with_one_error_line(main, before, option, value, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        main([*before, option, value])
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and option in errors[0] and value in errors[0], errors


def test_memory_limit_is_named_by_its_flag(tiny_checkpoint, tmp_path, capsys):
    big = np.array([[0, 0, 0], [50, 50, 5]], dtype=np.float32)
    src = write_ply(tmp_path / "big.ply", big, int_props={"label": np.ones(2, np.int64)})
    code, _, err = _run(infer_main, [str(src), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
                                     "--max-memory-gb", "0.0001"], capsys)
    assert code == 2 and len(err) == 1
    assert "big.ply" in err[0] and "--max-memory-gb" in err[0] and "--max-voxels" not in err[0]


# --- config values of the wrong type


def test_train_set_of_wrong_type_fails_before_any_work(train_config, tmp_path, monkeypatch, capsys):
    _no_model_loading(monkeypatch)
    out = tmp_path / "run"
    code, _, err = _run(train_main, ["--config", str(train_config), "--out", str(out), "--set", "train.epochs=abc"],
                        capsys)
    assert code == 2 and len(err) == 1, err
    assert "tiny.yaml" in err[0] and "'epochs'" in err[0] and "'abc'" in err[0] and "integer" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "epochs", "abc", "an integer"),
    ("train", "epochs", 2.5, "an integer"),
    ("train", "epochs", True, "an integer"),
    ("train", "lr", "fast", "a number"),
    ("train", "lr", "1e-3", "write 0.001"),  # YAML 1.1 reads 1e-3 as text
    ("model", "semantic_head", "yes please", "true or false"),
    ("model", "semantic_head", 1, "true or false"),
    ("loss", "semantic", 3, "a string"),
    ("train", "max_steps_per_epoch", "many", "an integer or null"),
    ("data", "stuff_classes", 0, "a list"),
    ("data", "toy", [1, 2], "a mapping"),
    ("cluster", "bandwidths", [0.5, "wide"], "a list of numbers"),
    ("cluster", "floor_label", 1.5, "an integer or null"),
])
def test_config_value_of_wrong_type_names_setting_and_value(section, key, value, expected):
    with pytest.raises(InputError) as exc:
        config_from_dict({section: {key: value}}, "run.yaml")
    message = str(exc.value)
    assert message.startswith(f"run.yaml:{section}:") and repr(key) in message and repr(value) in message
    assert expected in message


def test_config_values_of_the_right_type_are_kept():
    cfg = config_from_dict({"train": {"lr": 1, "max_steps_per_epoch": None, "epochs": 3},
                            "cluster": {"class_sizes": "auto", "floor_label": None, "bandwidths": (0.4, 1)},
                            "model": {"class_ids": "toy"}})
    assert cfg.train.lr == 1 and cfg.train.max_steps_per_epoch is None and cfg.train.epochs == 3
    assert cfg.cluster.class_sizes == "auto" and cfg.cluster.bandwidths == (0.4, 1)
    assert cfg.model.class_ids[0] == 0 and cfg.model.num_classes == len(cfg.model.class_ids)


# --- timings


def test_infer_timings_cover_the_whole_run(tiny_semantic_checkpoint, tmp_path, capsys):
    src = write_ply(tmp_path / "plain.ply", generate_scene(8).points)
    t0 = time.perf_counter()
    code, _, err = _run(infer_main, [str(src), "--checkpoint", str(tiny_semantic_checkpoint),
                                     "--out", str(tmp_path / "o")], capsys)
    wall = time.perf_counter() - t0
    assert code == 0, err
    timings = json.loads((tmp_path / "o" / "plain_instances.json").read_text())["timings_s"]
    assert {"setup", "read", "voxelize", "network", "cluster", "point_labels", "writing", "pictures"} <= set(timings)
    parts = sum(v for k, v in timings.items() if k != "total")
    assert parts == pytest.approx(timings["total"], rel=0.1)
    assert timings["total"] == pytest.approx(wall, rel=0.1)
    assert timings["other"] < 0.1 * timings["total"]  # the named stages account for nearly all of it
