"""Experiment configs: composition from ``_base_`` files, the configs shipped with the package, and the toy
benchmark's floor rules, which no other benchmark's config switches on."""

import dataclasses
import os
import re
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import torch

from mtml.cluster.pipeline import ClusterConfig
from mtml.config import config_from_dict, find_config, load_config, packaged_configs_dir
from mtml.errors import InputError

CONFIGS = Path(packaged_configs_dir())
FLOOR_FIELDS = ("floor_label", "floor_tolerance", "floor_foot_radius", "floor_foot_offset", "floor_foot_rise")


def _experiment_configs() -> list[str]:
    """Every config a user trains from (not the _base_ parts), as names relative to the configs folder."""
    return sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if "_base_" not in p.parts)


def _bundled_experiment(name: str) -> dict:
    """The experiment config stored in a bundled checkpoint (mtml/checkpoints/<name>)."""
    path = resources.files("mtml") / "checkpoints" / name
    return torch.load(str(path), map_location="cpu", weights_only=True)["experiment"]


def test_base_files_compose_in_order_then_own_settings(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "model.yaml").write_text("_base_: [deeper.yaml]\nmodel:\n  semantic_head: true\n")
    (tmp_path / "parts" / "deeper.yaml").write_text("model:\n  embedding_dim: 8\ndata:\n  val_scenes: 7\n")
    (tmp_path / "schedule.yaml").write_text("train:\n  epochs: 5\n  lr: 0.01\n")
    (tmp_path / "faster.yaml").write_text("train:\n  lr: 0.02\n")
    (tmp_path / "child.yaml").write_text("_base_: [parts/model.yaml, schedule.yaml, faster.yaml]\nname: child\n"
                                         "train:\n  epochs: 2\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.name == "child"
    assert cfg.train.epochs == 2  # the file's own setting over its bases
    assert cfg.train.lr == 0.02  # a later base over an earlier one
    assert cfg.model.embedding_dim == 8 and cfg.model.semantic_head  # a base's base, paths relative to each file
    assert cfg.data.val_scenes == 7


def test_a_base_cycle_is_refused(tmp_path):
    (tmp_path / "loop.yaml").write_text("_base_: [loop.yaml]\n")
    with pytest.raises(InputError, match="cycle"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "a.yaml").write_text("_base_: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("_base_: [a.yaml]\n")
    with pytest.raises(InputError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_the_same_base_twice_is_no_cycle(tmp_path):
    (tmp_path / "shared.yaml").write_text("train:\n  epochs: 3\n")
    (tmp_path / "left.yaml").write_text("_base_: [shared.yaml]\n")
    (tmp_path / "both.yaml").write_text("_base_: [shared.yaml, left.yaml]\n")
    assert load_config(tmp_path / "both.yaml").train.epochs == 3


def test_inherit_is_refused_with_a_pointer_to_base(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\n")
    (tmp_path / "old.yaml").write_text("inherit: base.yaml\nname: old\n")
    with pytest.raises(InputError, match="_base_") as err:
        load_config(tmp_path / "old.yaml")
    assert "old.yaml" in str(err.value) and "inherit" in str(err.value)


@pytest.mark.parametrize("text, message", [("_base_: [missing.yaml]\n", "missing.yaml"),
                                           ("_base_: 3\n", "list of config files"),
                                           ("_base_: [[a.yaml]]\n", "list of config files")])
def test_bad_base_lists_are_one_line_errors(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_config(tmp_path / "bad.yaml")
    assert "bad.yaml" in str(err.value) and "\n" not in str(err.value)


def test_configs_are_found_by_name_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the name is looked up among the packaged configs
    assert load_config("toy/toy.yaml").name == "toy"
    assert Path(find_config("toy/toy.yaml")) == CONFIGS / "toy" / "toy.yaml"
    with pytest.raises(InputError, match="no such config file"):
        load_config("toy/no_such.yaml")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "toy").mkdir()
    (tmp_path / "mine" / "toy" / "toy.yaml").write_text("name: mine\n")
    assert load_config(find_config("toy/toy.yaml", tmp_path / "mine")).name == "mine"  # a given folder first
    with pytest.raises(InputError, match="no such config file"):
        find_config("toy/fe_only.yaml", tmp_path / "mine")  # ... and only it


def test_every_packaged_config_loads_and_composes():
    names = _experiment_configs()
    assert {n.split("/")[0] for n in names} == {"toy", "longtail", "referring", "scannet"}
    seen = {}
    for name in names:
        text = (CONFIGS / name).read_text()
        assert not re.search(r"^inherit:", text, re.MULTILINE), name
        cfg = load_config(name)
        assert cfg.name not in seen, f"{name} and {seen.get(cfg.name)} share the name {cfg.name}"
        seen[cfg.name] = name


def test_one_config_names_the_bundled_toy_model_as_its_product():
    """toy.pt is stage 8's best.pt: its stored experiment is that config's (trained with --threads 2, class sizes
    measured, input channels from the inputs), and recipe.sh ends with that stage."""
    producers = [n for n in _experiment_configs() if "is the bundled mtml/checkpoints/toy.pt" in
                 " ".join((CONFIGS / n).read_text().split())]
    assert producers == ["toy/referring_extra.yaml"]
    stored = config_from_dict(_bundled_experiment("toy.pt"), "toy.pt")
    config = load_config(producers[0])
    stored.train.num_threads, stored.cluster.class_sizes = config.train.num_threads, config.cluster.class_sizes
    stored.model.backbone.in_channels = config.model.backbone.in_channels
    assert stored.to_dict() == config.to_dict()
    stages = re.findall(r"^stage (\S+\.yaml)", (CONFIGS / "toy" / "recipe.sh").read_text(), re.MULTILINE)
    assert len(stages) == 8 and stages[-1] == "referring_extra.yaml"
    assert all((CONFIGS / "toy" / s).is_file() for s in stages)
    assert subprocess.run(["bash", "-n", str(CONFIGS / "toy" / "recipe.sh")], check=False).returncode == 0


def test_floor_rules_are_off_unless_a_toy_config_sets_them():
    generic = ClusterConfig()
    assert generic.floor_label is None
    assert generic.floor_tolerance == generic.floor_foot_radius == generic.floor_foot_offset == 0.0
    assert generic.floor_foot_rise == 0.0
    toy = load_config("toy/referring_extra.yaml").cluster
    assert toy.floor_label == 0 and toy.floor_foot_radius == 0.05 and toy.floor_tolerance == 0.03
    for name in _experiment_configs():
        cfg = load_config(name)
        if cfg.data.kind != "toy":
            assert all(getattr(cfg.cluster, f) == getattr(generic, f) for f in FLOOR_FIELDS), name
    scannet = load_config("scannet/scannet.yaml").cluster
    assert scannet.floor_label is None and scannet.floor_foot_radius == 0.0


def test_bundled_toy_models_keep_their_floor_rules():
    """toy.pt stores its floor settings, so the toy config's values and not the generic defaults apply; the
    one-hot models store no floor_label and run without the rules, as before."""
    stored = _bundled_experiment("toy.pt")["cluster"]
    toy = dataclasses.asdict(load_config("toy/referring_extra.yaml").cluster)
    assert {f: stored[f] for f in FLOOR_FIELDS} == {f: toy[f] for f in FLOOR_FIELDS}
    for name in ("toy_multitask.pt", "toy_fe_only.pt"):
        experiment = _bundled_experiment(name)
        assert experiment["cluster"].get("floor_label") is None
        assert config_from_dict(experiment, name).cluster.floor_label is None


def test_configs_ship_with_the_package():
    """setup.cfg installs every config file of configs/ as package data of mtml.configs (setup.py)."""
    import configparser

    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["mtml.configs"].split(",")]
    shipped = {str(p.relative_to(root / "configs")) for pattern in patterns for p in (root / "configs").glob(pattern)}
    on_disk = {str(p.relative_to(root / "configs")) for p in (root / "configs").rglob("*") if p.is_file()
               and p.suffix in (".yaml", ".sh")}
    assert on_disk and shipped == on_disk
    assert os.path.isfile(root / "configs" / "__init__.py")
