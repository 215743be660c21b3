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
    from mtml.train import train

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
    from mtml.train import train

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
    from mtml.train_referring import train_referring

    out = tmp_path_factory.mktemp("tiny_referring_run")
    return train_referring(config_from_dict(TINY_REFERRING), out, progress=False,
                           init_checkpoint=str(tiny_semantic_checkpoint))
