from pathlib import Path

import pytest

from mtml.config import config_from_dict

TINY = {
    "name": "tiny",
    "data": {"train_scenes": 4, "val_scenes": 1},
    "model": {"backbone": {"full_channels": 4, "half_channels": 8, "dilated_blocks": 1, "dilation": 2,
                           "out_channels": 8}},
    "train": {"epochs": 2, "val_every": 1, "max_steps_per_epoch": 2, "num_threads": 1, "log_every": 1},
}


@pytest.fixture
def tiny_config():
    """A config that trains in seconds: 2 epochs of 2 steps with a small backbone."""
    return config_from_dict(TINY)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint written by the real training loop (tiny, untrained-ish), shared by CLI tests."""
    from mtml.train.segment import train

    out = tmp_path_factory.mktemp("tiny_run")
    return train(config_from_dict(TINY), out, progress=False)


TINY_SEMANTIC = {
    **TINY,
    "name": "tiny_semantic",
    "model": {**TINY["model"], "inputs": ["occupancy", "height"], "semantic_head": True},
    "loss": {"semantic": "cb_focal"},
}


@pytest.fixture(scope="session")
def tiny_semantic_checkpoint(tmp_path_factory):
    """A checkpoint with a semantic head that reads geometry only (plain scans), from the real training loop."""
    from mtml.train.segment import train

    out = tmp_path_factory.mktemp("tiny_semantic_run")
    return train(config_from_dict(TINY_SEMANTIC), out, progress=False)


TINY_REFERRING = {
    **TINY_SEMANTIC,
    "name": "tiny_referring",
    "data": {**TINY["data"], "referring_per_scene": 3},
    "model": {**TINY_SEMANTIC["model"], "referring": {"dim": 16, "num_queries": 4, "num_layers": 1, "num_heads": 2,
                                                      "superpoints": True, "context_layers": 1}},
    "train": {**TINY["train"], "task": "refer"},
}


@pytest.fixture(scope="session")
def tiny_referring_checkpoint(tmp_path_factory, tiny_semantic_checkpoint):
    """The tiny semantic model with a (barely trained) referring head, from the real referring trainer."""
    from mtml.train.referring import train_referring

    out = tmp_path_factory.mktemp("tiny_referring_run")
    return train_referring(config_from_dict(TINY_REFERRING), out, progress=False,
                           init_checkpoint=str(tiny_semantic_checkpoint))


@pytest.fixture(scope="session")
def bundled_toy():
    """(path of the bundled plain-scan model, its experiment config as a dict)."""
    import torch

    from mtml.predict.checkpoint import resolve_checkpoint

    path = resolve_checkpoint("toy")
    return str(path), torch.load(path, map_location="cpu", weights_only=True)["experiment"]


def train_instance_head_on_bundled(tmp_path, bundled_toy, task: str, head: str, cluster: dict = None):
    """Run the per-instance head trainer ``task`` (``mtml.train.instances``) for 2 epochs of 3 scenes on the
    bundled model, with ``model.<head>`` switched on and ``cluster`` settings added, and check what every such run
    must do: only ``head`` changes (a fresh one, also when the bundled model has one), two validations are
    logged and every step has a loss. Returns (trained model, its checkpoint state)."""
    import json

    import torch

    from mtml.model.model import load_checkpoint
    from mtml.train.trainers import run_training

    path, experiment = bundled_toy
    cfg = config_from_dict({**experiment, "name": f"{head}_test",
                            "data": {**experiment["data"], "train_scenes": 3, "val_scenes": 1},
                            "model": {**experiment["model"], head: True},
                            "cluster": {**experiment["cluster"], **(cluster or {})},
                            "train": {**experiment["train"], "task": task, "epochs": 2,
                                      "val_every": 1, "num_threads": 1, "log_every": 1}})
    last = run_training(cfg, tmp_path / "run", progress=False, init_checkpoint=path)
    model, state = load_checkpoint(last)
    src, _ = load_checkpoint(path)
    assert getattr(model, head) is not None and state["epoch"] == 1
    source = {k: v for k, v in src.state_dict().items() if not k.startswith(f"{head}.")}
    frozen = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{head}.")}
    assert frozen.keys() == source.keys()
    assert all(torch.equal(v, source[k]) for k, v in frozen.items())
    if getattr(src, head) is not None:  # the bundled model has one: the run starts its own, fresh
        trained = getattr(model, head).state_dict()
        assert not all(torch.equal(v, getattr(src, head).state_dict()[k]) for k, v in trained.items())
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["kind"] for r in rows].count("val") == 2
    assert all(r["loss"] > 0 for r in rows if r["kind"] == "step")  # the scenes gave examples to learn from
    assert state["class_voxel_counts"]  # the frozen model's statistics are kept
    return model, state


SCANNET_MINI_SCANS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scannet_mini" / "scans"
"""The 16 real labelled ScanNet scans: under ScanNet's terms they are read in place and never copied into the repo."""
SCANNET_MINI_MISSING = (f"the real ScanNet scans are not here: {SCANNET_MINI_SCANS} is missing (they live in "
                        "../shared/data and may not be copied into the repo; CI has them)")


def require_scannet_mini() -> Path:
    """``SCANNET_MINI_SCANS``, or skip the calling test with ``SCANNET_MINI_MISSING`` when the folder is absent."""
    if not SCANNET_MINI_SCANS.is_dir():
        pytest.skip(SCANNET_MINI_MISSING)
    return SCANNET_MINI_SCANS
