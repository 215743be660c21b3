import json

import pytest
import torch
import yaml

from mtml.cli import run_command
from mtml.cli.train import main as train_main
from mtml.model.model import load_checkpoint
from mtml.train.segment import train


def test_train_writes_log_checkpoints_and_curves(tiny_config, tmp_path):
    last = train(tiny_config, tmp_path, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == [1, 2]
    assert all(0.0 <= r["ap50"] <= 1.0 for r in rows if r["kind"] == "val")
    assert all(r["loss"] == r["loss"] for r in rows if r["kind"] == "step")  # no NaN
    model, state = load_checkpoint(last)
    assert state["epoch"] == 1 and "optimizer_state" in state
    assert (tmp_path / "best.pt").exists() and (tmp_path / "curves.png").stat().st_size > 1000
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["name"] == "tiny"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_continues_after_last_epoch_and_matches_uninterrupted_run(tiny_config, tmp_path, monkeypatch,
                                                                         ema_decay):
    tiny_config.train.ema_decay = ema_decay  # with a weight average, last.pt holds it and the optimizer's weights
    full = train(tiny_config, tmp_path / "full", progress=False)

    import mtml.train.loop as train_module

    real_plot = train_module.plot_curves

    def interrupt(*args):  # the run is killed at the end of epoch 1, after its checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "plot_curves", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, tmp_path / "split", progress=False)
    monkeypatch.setattr(train_module, "plot_curves", real_plot)
    resumed = train(tiny_config, tmp_path / "split", resume=True, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]
    a, _ = load_checkpoint(full)
    b, _ = load_checkpoint(resumed)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-5), name


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_kill_during_last_validation_then_resume_validates_and_writes_best(tiny_config, tmp_path, monkeypatch,
                                                                          ema_decay):
    tiny_config.train.ema_decay = ema_decay
    tiny_config.train.val_every = 2  # only the last epoch validates: best.pt can only come from that validation
    full = tmp_path / "full"
    train(tiny_config, full, progress=False)

    import mtml.train.segment as segment_module

    real_validate = segment_module.validate
    calls = []

    def killed_once(*args, **kwargs):  # the run is killed inside the last epoch's validation, after its last.pt
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(segment_module, "validate", killed_once)
    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, split, progress=False)
    assert not (split / "best.pt").exists() and load_checkpoint(split / "last.pt")[1]["val_pending"]
    train(tiny_config, split, resume=True, progress=False)
    assert len(calls) == 2

    def rows(run, kind):
        return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if json.loads(x)["kind"] == kind]

    def metrics(row):
        return {k: v for k, v in row.items() if k != "seconds"}  # training time differs between runs

    assert [metrics(r) for r in rows(split, "val")] == [pytest.approx(metrics(r)) for r in rows(full, "val")]
    assert [r["epoch"] for r in rows(split, "val")] == [2]
    assert rows(split, "val")[0]["seconds"] == rows(split, "epoch")[-1]["seconds"]
    a, a_state = load_checkpoint(full / "best.pt")
    b, b_state = load_checkpoint(split / "best.pt")
    assert a_state["epoch"] == b_state["epoch"] == 1 and a_state["best_score"] == pytest.approx(b_state["best_score"])
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-5), name
    _, last_state = load_checkpoint(split / "last.pt")
    assert not last_state["val_pending"] and last_state["best_score"] == pytest.approx(b_state["best_score"])
    train(tiny_config, split, resume=True, progress=False)  # nothing is left to do: no second validation
    assert len(calls) == 2 and len(rows(split, "val")) == 1


def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    assert run_command(train_main, ["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml" in err[0] and "unknown setting 'epochz'" in err[0]
    assert not (tmp_path / "o").exists()


def test_auto_class_sizes_are_measured_and_stored(tiny_config, tmp_path):
    tiny_config.cluster.class_sizes = "auto"
    tiny_config.train.epochs = 1
    last = train(tiny_config, tmp_path, progress=False)
    _, state = load_checkpoint(last)
    sizes = state["experiment"]["cluster"]["class_sizes"]
    assert set(sizes) <= {1, 2, 3, 4, 5} and len(sizes) >= 2
    assert all(v > 0 for v in sizes.values())
