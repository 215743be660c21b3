"""The one way to load a model for inference: a checkpoint file, or a model bundled with the package by name, read
safely (``mtml.model.model.load_checkpoint``: tensors and plain data only) with its experiment config rebuilt."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mtml.config import ExperimentConfig, config_from_dict
from mtml.errors import InputError
from mtml.model.model import MTMLNet, load_checkpoint

BUNDLED_DIR = Path(str(resources.files("mtml") / "checkpoints"))
"""Where the bundled checkpoints live: each ``<name>.pt`` there is a bundled model, with its card ``<name>.md``."""


@dataclass
class LoadedModel:
    """A checkpoint, loaded.

    model:  the network in eval mode, on the device it was loaded to.
    config: its experiment config (voxel size, clustering settings, benchmark...), from the checkpoint's
            ``experiment`` block (the defaults for a checkpoint without one).
    state:  the checkpoint's whole state dict (weights, optimizer state, epoch, class counts...).
    path:   the file: the argument as given for a file, the bundled file for a bundled name.
    """

    model: MTMLNet
    config: ExperimentConfig
    state: dict
    path: str

    @property
    def class_names(self) -> dict:
        """Class id (int) -> name, as the checkpoint records them (empty when it records none)."""
        return {int(k): v for k, v in self.state.get("class_names", {}).items()}


def bundled_checkpoints() -> list[str]:
    """Names of the models bundled with the package (the stems of mtml/checkpoints/*.pt), sorted."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """The checkpoint file ``name_or_path`` stands for: an existing file (returned as given), else a bundled model's
    name (its file in mtml/checkpoints/). InputError listing the bundled names when it is neither."""
    text = os.fspath(name_or_path)
    if os.path.isfile(text):
        return text
    names = bundled_checkpoints()
    if text in names:
        return str(BUNDLED_DIR / f"{text}.pt")
    raise InputError(text, f"no such checkpoint file, nor a bundled model (bundled: {', '.join(names)})")


def load_model(name_or_path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """Load a checkpoint file or a bundled model by name (``bundled_checkpoints``) onto ``device``: the model in
    eval mode and its experiment config. InputError naming the file (one line) for a name that is neither, a
    file that is not a plain mtml checkpoint (nothing in it runs), weights that do not fit its ``model_config``,
    or a bad ``experiment`` block."""
    path = resolve_checkpoint(name_or_path)
    model, state = load_checkpoint(path, map_location=device)
    try:
        config = config_from_dict(state.get("experiment", {}), path)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"bad experiment block: {' '.join(str(err).split())}") from None
    return LoadedModel(model.to(device), config, state, path)
