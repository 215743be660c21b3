"""Training augmentation of a scene: crops, elastic distortion, rotations, flips, scaling, shifts and colour jitter.

``AugmentConfig`` holds every switch and range. Its defaults are the augmentation of the generated benchmarks
(toy, longtail): a rotation by a multiple of 90 degrees about z, a mirror of x with probability 1/2 and a shift by
up to one voxel in x and y. The objects of those benchmarks already have arbitrary yaw, and the sub-voxel shift
re-draws the voxelisation aliasing. A transform that is switched off draws nothing from the rng, so the defaults
draw exactly what that augmentation always drew, in the same order (training runs stay bit-identical).

The heavy set for real scans (``configs/_base_/data/scannet_mini.yaml``) adds, as in Pointcept / SparseConvNet:
rotations by any angle, a mirror of y, scaling, elastic distortion (smoothed random displacement fields at two
granularities), colour jitter and random horizontal crops. The dense grid is rebuilt per sample from the
augmented points (``mtml.data.voxelize.voxelize`` takes the points' min corner as origin), so a rotated footprint
only makes that sample's grid larger.

Order: crop (in the scan's own frame, whose walls lie on x/y), elastic distortion, rotation, flips, scaling,
shift; then colour jitter.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from mtml.errors import InputError
from mtml.scene import Scene

ROTATIONS = ("none", "quarter", "any")
ELASTIC_NOISE_CLIP = 3.0
"""Raw elastic noise is clipped to this many standard deviations before smoothing, so that each field's
displacement is bounded by ``ELASTIC_NOISE_CLIP * magnitude`` per axis (Pointcept leaves it unbounded)."""


@dataclass
class AugmentConfig:
    """The training augmentation (``data.augment`` of an experiment config). Defaults: the generated benchmarks'.

    rotation:          "quarter" (k * 90 degrees about z, k uniform in 0..3), "any" (uniform angle) or "none".
    flip_x, flip_y:    mirror x (resp. y) with probability 1/2.
    scale_range:       [low, high]: one isotropic scale factor drawn uniformly; [1, 1] draws none.
    shift_voxels:      shift x and y by uniform [0, shift_voxels * voxel_size) metres each; 0 draws none.
    elastic:           [[granularity m, magnitude], ...]: smoothed Gaussian displacement fields (Pointcept's
                       ElasticDistortion; e.g. [[0.2, 0.4], [0.8, 1.6]]); [] for none.
    elastic_prob:      probability that the elastic distortion is applied to a sample.
    color_brightness:  add one offset in [-b, b] * 255 to all channels of all points.
    color_contrast:    scale colours about their mean by a factor in [1 - c, 1 + c].
    color_noise_std:   per-point, per-channel Gaussian noise, std in units of 255.
    crop_min_fraction: keep a random horizontal window whose x and y sides are each a uniform fraction in
                       [crop_min_fraction, 1] of the scan's extent; 1.0 crops nothing.
    crop_min_points:   a crop that keeps fewer points, or none of the scan's instance points, is not applied.
    """

    rotation: str = "quarter"
    flip_x: bool = True
    flip_y: bool = False
    scale_range: list = field(default_factory=lambda: [1.0, 1.0])
    shift_voxels: float = 1.0
    elastic: list = field(default_factory=list)
    elastic_prob: float = 1.0
    color_brightness: float = 0.0
    color_contrast: float = 0.0
    color_noise_std: float = 0.0
    crop_min_fraction: float = 1.0
    crop_min_points: int = 1000

    def __post_init__(self) -> None:
        where = "data.augment"
        if self.rotation not in ROTATIONS:
            raise InputError(where, f"rotation {self.rotation!r} is not one of {', '.join(ROTATIONS)}")
        if not (_numbers(self.scale_range, 2) and 0 < self.scale_range[0] <= self.scale_range[1]):
            raise InputError(where, f"scale_range must be [low, high] with 0 < low <= high, got {self.scale_range}")
        if not all(_numbers(pair, 2) and pair[0] > 0 and pair[1] >= 0 for pair in self.elastic):
            raise InputError(where, f"elastic must be [[granularity > 0, magnitude >= 0], ...], got {self.elastic}")
        if not 0 < self.crop_min_fraction <= 1:
            raise InputError(where, f"crop_min_fraction must be in (0, 1], got {self.crop_min_fraction}")
        for name in ("shift_voxels", "elastic_prob", "color_brightness", "color_contrast", "color_noise_std"):
            if getattr(self, name) < 0:
                raise InputError(where, f"{name} must be >= 0, got {getattr(self, name)}")
        self.scale_range = [float(v) for v in self.scale_range]
        self.elastic = [[float(g), float(m)] for g, m in self.elastic]


def _numbers(values, count: int) -> bool:
    """Whether ``values`` is a list (or tuple) of ``count`` real numbers (not bools)."""
    return (isinstance(values, (list, tuple)) and len(values) == count
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values))


def _rotation(rng: np.random.Generator, mode: str) -> Optional[np.ndarray]:
    """The 3x3 rotation about z drawn for ``mode`` (``AugmentConfig.rotation``), or None for "none"."""
    if mode == "none":
        return None
    if mode == "quarter":  # exact integer entries: the same matrix the benchmarks were always trained with
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][int(rng.integers(4))]
    else:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def augment_points(points: np.ndarray, rng: np.random.Generator, voxel_size: float,
                   config: Optional[AugmentConfig] = None) -> np.ndarray:
    """The rigid part of the augmentation: rotation about z, flips, scaling and the x/y shift of ``config``
    (default: ``AugmentConfig()``, k*90 degrees, maybe mirror x, shift up to one voxel).

    points: float [N, 3] metres. Returns a new float32 [N, 3] array (same points, moved).
    """
    config = AugmentConfig() if config is None else config
    out = points.astype(np.float64)
    rot = _rotation(rng, config.rotation)
    if rot is not None:
        out = out @ rot.T
    if config.flip_x and rng.random() < 0.5:
        out[:, 0] = -out[:, 0]
    if config.flip_y and rng.random() < 0.5:
        out[:, 1] = -out[:, 1]
    low, high = config.scale_range
    if low != high:
        out *= rng.uniform(low, high)
    elif low != 1.0:
        out *= low
    if config.shift_voxels > 0:
        out[:, :2] += rng.uniform(0, config.shift_voxels * voxel_size, size=2)
    return out.astype(np.float32)


def elastic_displacement(points: np.ndarray, rng: np.random.Generator, granularity: float,
                         magnitude: float) -> np.ndarray:
    """One smooth random displacement field sampled at ``points`` (Pointcept's / SparseConvNet's elastic
    distortion): Gaussian noise on a lattice of ``granularity`` metres covering the points (clipped to
    ``ELASTIC_NOISE_CLIP``), box-blurred twice along each axis, trilinearly interpolated and times ``magnitude``.

    points: float [N, 3] metres. Returns float64 [N, 3] metres; each component is at most
    ``ELASTIC_NOISE_CLIP * magnitude`` in absolute value, and points closer than ``granularity`` move alike.
    """
    pts = np.asarray(points, dtype=np.float64)
    low = pts.min(axis=0)
    lattice = (np.ptp(pts, axis=0) // granularity).astype(int) + 3
    noise = np.clip(rng.standard_normal((*lattice, 3)), -ELASTIC_NOISE_CLIP, ELASTIC_NOISE_CLIP)
    for _ in range(2):
        for axis in range(3):
            noise = ndimage.convolve1d(noise, np.full(3, 1.0 / 3.0), axis=axis, mode="constant", cval=0.0)
    axes = [np.linspace(lo - granularity, lo + granularity * (n - 2), n) for lo, n in zip(low, lattice)]
    field_at = RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0.0)
    return field_at(pts) * magnitude


def color_jitter(colors: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Colour jitter of ``config``: contrast about the mean colour, one brightness offset, per-channel noise.

    colors: uint8 [N, 3]. Returns a new uint8 [N, 3] (rounded, clipped to 0..255); switched-off parts draw nothing.
    """
    out = colors.astype(np.float64)
    if config.color_contrast > 0:
        mean = out.mean(axis=0, keepdims=True)
        out = mean + (out - mean) * rng.uniform(1.0 - config.color_contrast, 1.0 + config.color_contrast)
    if config.color_brightness > 0:
        out += 255.0 * rng.uniform(-config.color_brightness, config.color_brightness)
    if config.color_noise_std > 0:
        out += rng.normal(0.0, 255.0 * config.color_noise_std, size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def crop_mask(scene: Scene, rng: np.random.Generator, min_fraction: float, min_points: int) -> Optional[np.ndarray]:
    """The points a random horizontal window keeps: x and y sides each a uniform fraction in [min_fraction, 1] of
    the scene's extent, placed uniformly inside it; all heights are kept.

    Returns bool [N], or None (no crop) when the window keeps fewer than ``min_points`` points or, in a scene with
    instances, no point of any instance.
    """
    xy = np.asarray(scene.points[:, :2], dtype=np.float64)
    low, extent = xy.min(axis=0), np.ptp(xy, axis=0)
    side = extent * rng.uniform(min_fraction, 1.0, size=2)
    start = low + (extent - side) * rng.random(2)
    keep = ((xy >= start) & (xy <= start + side)).all(axis=1)
    if int(keep.sum()) < min_points:
        return None
    if scene.instances is not None:
        has_instance = np.asarray(scene.instances) >= 0
        if has_instance.any() and not has_instance[keep].any():
            return None
    return keep


def _take(values: Optional[np.ndarray], rows: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``values[rows]`` for a per-point array (None stays None; rows None keeps all)."""
    return values if values is None or rows is None else np.asarray(values)[rows]


def augment_scene(scene: Scene, rng: np.random.Generator, voxel_size: float,
                  config: Optional[AugmentConfig] = None) -> Scene:
    """The scene augmented by ``config`` (default ``AugmentConfig()``): crop, elastic distortion, then
    ``augment_points``, then colour jitter (see the module docstring for the order).

    Every per-point array (points, colors, labels, instances) is indexed alike, so they stay aligned after a crop;
    faces are dropped (augmented scenes are voxelised, never exported). voxel_size: metres (for the shift).
    Returns a new Scene with float32 points.
    """
    config = AugmentConfig() if config is None else config
    rows = None
    if config.crop_min_fraction < 1.0:
        rows = crop_mask(scene, rng, config.crop_min_fraction, config.crop_min_points)
    points = np.asarray(_take(scene.points, rows), dtype=np.float64)
    if config.elastic and rng.random() < config.elastic_prob:
        points = points + sum(elastic_displacement(points, rng, g, m) for g, m in config.elastic)
    colors = _take(scene.colors, rows)
    jitter = config.color_brightness > 0 or config.color_contrast > 0 or config.color_noise_std > 0
    points = augment_points(points, rng, voxel_size, config)
    if jitter and colors is not None:
        colors = color_jitter(np.asarray(colors), rng, config)
    return replace(scene, points=points, colors=colors, labels=_take(scene.labels, rows),
                   instances=_take(scene.instances, rows), faces=None)
