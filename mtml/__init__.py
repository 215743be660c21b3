"""mtml: 3D instance segmentation by multi-task metric learning (Lahoud et al., ICCV 2019).

The public API, imported on first use so that ``import mtml`` stays cheap (no torch until a model is needed)::

    import mtml
    predictor = mtml.Predictor.from_checkpoint("toy")    # a bundled model (mtml.bundled_checkpoints()) or a file
    segmentation = predictor.segment(mtml.read_scene("room.ply"))
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Predictor": "mtml.predict.predictor",
    "read_scene": "mtml.predict.predictor",
    "load_model": "mtml.predict.checkpoint",
    "bundled_checkpoints": "mtml.predict.checkpoint",
    "Scene": "mtml.scene",
    "Segmentation": "mtml.scene",
    "Instance": "mtml.scene",
    "Referral": "mtml.scene",
    "InputError": "mtml.errors",
}
__all__ = ["InputError", "Instance", "Predictor", "Referral", "Scene", "Segmentation", "bundled_checkpoints",
           "load_model", "read_scene"]


def __getattr__(name: str):
    """Import a public name's module the first time the name is used (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mtml' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_PUBLIC))
