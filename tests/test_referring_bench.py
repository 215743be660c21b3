"""mtml-bench referring: the seeds/002 ablation rows train from one frozen model and are scored the same way."""

import json

import torch
import yaml
from conftest import TINY_REFERRING

from mtml.cli import run_command
from mtml.cli.bench import main as bench_main
from mtml.data.referring import HANDMADE_SETS, evaluation_set_name, read_referring_json
from mtml.model.model import load_checkpoint
from mtml.tables import referring_table as rt
from mtml.train.trainers import run_training


def _write_tiny_ablation_configs(folder):
    """The real ablation configs' switches and text augmentation on the tiny referring config (one scene a split,
    two steps)."""
    from mtml.config import find_config, load_config

    full_row = rt.METHODS[0].config
    real = load_config(full_row).data
    data = {**TINY_REFERRING["data"], "val_scenes": 1, "referring_redraw": real.referring_redraw,
            "referring_word_dropout": real.referring_word_dropout}
    base = {**TINY_REFERRING, "data": data}
    (folder / full_row).parent.mkdir(parents=True, exist_ok=True)
    (folder / full_row).write_text(yaml.safe_dump(base))
    for method in rt.METHODS[1:]:
        with open(find_config(method.config)) as f:
            real = yaml.safe_load(f)
        assert real["_base_"] == ["ablation.yaml"] and full_row == "referring/ablation.yaml"
        (folder / method.config).write_text(yaml.safe_dump({"_base_": ["ablation.yaml"], "model": real["model"]}))


def test_ablation_configs_switch_off_one_part_each():
    from mtml.config import load_config

    full = load_config(rt.METHODS[0].config).model.referring
    for method, switch in zip(rt.METHODS[1:], ("use_pwca", "use_qsa", "use_area", "use_p2p")):
        row = load_config(method.config).model.referring
        assert full[switch] is True and row[switch] is False
        assert {k: v for k, v in row.items() if k != switch} == {k: v for k, v in full.items() if k != switch}


def test_ablation_trains_every_row_and_prints_the_table(tmp_path, tiny_semantic_checkpoint, capsys):
    configs = tmp_path / "configs"
    configs.mkdir()
    _write_tiny_ablation_configs(configs)
    code = run_command(bench_main, ["referring", "--train", "--init", str(tiny_semantic_checkpoint), "--configs",
                                    str(configs), "--runs", str(tmp_path / "runs"), "--scenes", "1",
                                    "--out", str(tmp_path / "bench")])
    out = capsys.readouterr().out
    assert code == 0, out
    for method in rt.METHODS:
        assert method.title in out
        model, _ = load_checkpoint(tmp_path / "runs" / method.key / "best.pt")
        switch = {"no_pwca": "use_pwca", "no_qsa": "use_qsa", "no_area": "use_area", "no_p2p": "use_p2p"}.get(method.key)
        assert switch is None or getattr(model.referring_head.cfg, switch) is False
    rows = (tmp_path / "bench" / "referring.csv").read_text().splitlines()
    assert rows[0] == "method,set,descriptions,miou,acc@0.25,acc@0.5,ms_per_scan"
    assert {r.split(",")[0] for r in rows[1:]} == {m.key for m in rt.METHODS}
    assert {r.split(",")[1] for r in rows[1:]} == {"val", *map(evaluation_set_name, HANDMADE_SETS)}
    for r in rows[1:]:
        vals = [float(v) for v in r.split(",")[3:6]]
        assert all(0 <= v <= 100 for v in vals) and vals[1] >= vals[2]  # Acc@0.25 >= Acc@0.5
        assert float(r.split(",")[6]) > 0


def test_a_new_head_never_starts_from_the_init_checkpoints_head(tmp_path, tiny_referring_checkpoint):
    from mtml.config import config_from_dict

    cfg = config_from_dict({**TINY_REFERRING, "train": {**TINY_REFERRING["train"], "epochs": 1, "max_steps_per_epoch": 1,
                                                         "lr": 0.0}})
    torch.manual_seed(123)
    last = run_training(cfg, tmp_path / "run", progress=False, init_checkpoint=str(tiny_referring_checkpoint))
    old, _ = load_checkpoint(tiny_referring_checkpoint)
    new, _ = load_checkpoint(last)
    old_head, new_head = old.referring_head.state_dict(), new.referring_head.state_dict()
    assert any(not torch.equal(old_head[k], new_head[k]) for k in old_head if old_head[k].is_floating_point())
    old_rest, new_rest = old.backbone.state_dict(), new.backbone.state_dict()
    assert all(torch.equal(old_rest[k], new_rest[k]) for k in old_rest)  # the frozen model is the init's
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["kind"] in ("step", "epoch")


def test_one_checkpoint_is_scored_on_validation_and_hand_made_descriptions(tmp_path, tiny_referring_checkpoint, capsys):
    code = run_command(bench_main, ["referring", "--checkpoint", str(tiny_referring_checkpoint), "--scenes", "2",
                                    "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [r.split(",") for r in (tmp_path / "referring.csv").read_text().splitlines()[1:]]
    assert [r[:2] for r in rows] == [["model", "val"], ["model", "handmade"], ["model", "handmade_blind"],
                                     ["model", "handmade_blind2"], ["model", "handmade_blind3"],
                                     ["model", "handmade_blind4"], ["model", "handmade_blind5"],
                                     ["model", "handmade_blind6"]]

    for row, path in zip(rows[1:], HANDMADE_SETS):
        assert int(row[2]) == sum(r["scene_id"].startswith("toy_") for r in read_referring_json(path))
    assert int(rows[0][2]) == 2 * TINY_REFERRING["data"]["referring_per_scene"]
    assert str(tiny_referring_checkpoint) in out


def test_the_text_table_has_a_line_per_row_and_set_validation_first():
    def scores(n, acc):
        return {"descriptions": n, "miou": acc - 0.1, "acc@0.25": acc + 0.05, "acc@0.5": acc, "seconds_per_scan": 0.2}

    results = {"full": {"val": scores(800, 0.9), "handmade": scores(34, 0.7), "handmade_blind": scores(40, 0.75)},
               "no_qsa": {"val": scores(400, 0.8), "handmade": scores(34, 0.6)}}
    lines = rt.table_text(results).splitlines()
    full, no_qsa = (next(m.title for m in rt.METHODS if m.key == k) for k in ("full", "no_qsa"))
    assert lines[0].split()[:2] == ["method", "set"]
    assert lines[2].startswith(full) and lines[2].split()[-5:] == ["800", "80.0", "95.0", "90.0", "200.0"]
    assert [line.split()[0] for line in lines[3:5]] == ["handmade", "handmade_blind"]
    assert lines[4].split()[1:] == ["40", "65.0", "80.0", "75.0"]  # ms per scan only on the validation line
    assert lines[5].startswith(no_qsa) and lines[6].split()[0] == "handmade"


def test_the_text_table_keeps_a_long_method_title_apart_from_its_set():
    """A checkpoint path longer than the method column (mtml-bench referring --checkpoint ...) still leaves a gap."""
    long_title = "runs/a_longer_run_name_than_the_column/best.pt"
    method = rt.Method("ckpt", long_title, config="")
    row = {"descriptions": 800, "miou": 0.8, "acc@0.25": 0.9, "acc@0.5": 0.85, "seconds_per_scan": 0.1}
    lines = rt.table_text({"ckpt": {"val": row}}, [method]).splitlines()
    assert lines[2].split()[:2] == [long_title, "val"]
    assert lines[0].index("set") == lines[2].index(" val") + 1  # the columns line up
