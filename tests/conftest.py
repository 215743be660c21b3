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
