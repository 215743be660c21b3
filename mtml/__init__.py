"""mtml: 3D instance segmentation by multi-task metric learning (Lahoud et al., ICCV 2019)."""

__version__ = "0.1.0"
