"""Scans as users have them -> the canonical frame the models read: z up, metres, walls along x and y, floor at
z = 0, the horizontal bounding box's min corner at the origin.

Users bring scans in their own frames: y-up exports from phone scanners, millimetres or centimetres, turned about
the vertical, far from the origin. Everything here is measured on the scan itself:

* the up axis (``detect_up_axis``): surface normals by k-NN PCA (scipy's cKDTree); the up axis is the coordinate
  axis whose one end holds a large flat slab facing along it (the floor) that its other end lacks (scans rarely
  hold as much ceiling as floor, and most hold none); when no axis shows that asymmetry clearly (a room scanned
  ceiling and all), the axis along which most normals lie (floors, ceilings, table tops). The floor is the end
  that holds more flat area plus more of the points (furniture stands on the floor: where a ceiling was scanned
  and furniture hides floor, most points still lie below the middle);
* the units (``detect_units``): rooms are 0.8 to 8 m high, so the height along the up axis says m, cm or mm;
  a height that fits no unit means metres;
* the turn about the vertical (``normalize_scene``): the mode of the horizontal normals' angle, modulo 90 degrees
  (the walls), goes onto x; of the four turns that leave the walls on x and y, the one with the longer horizontal
  extent along x and the centroid on the +x side of the bounding box's centre is taken, so a turned copy of a scan
  lands where the scan itself does.

A closed room (ceiling scanned as fully as the floor) whose walls hold more flat area than its floor and ceiling,
such as a corridor narrower than it is high, can be taken to stand on a wall: the one-line message says what was
assumed, and ``up_axis`` / ``units`` (mtml-infer ``--up-axis`` / ``--units``) override it.

Models trained on the wall-less toy scenes read scans unturned (``mtml.predict.predictor.aligns_walls``).
Only coordinates change: points keep their order, so per-point predictions need no mapping back, and the
``Transform`` maps coordinates back (``Transform.to_original``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from mtml.errors import InputError
from mtml.scene import Scene, Transform

UP_AXES = ("x", "y", "z", "-x", "-y", "-z")
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
UNIT_NAMES = {"m": "metres", "cm": "centimetres", "mm": "millimetres"}

MAX_SAMPLE = 40_000  # points whose normals are estimated (a fixed random subset: the same rows for every copy)
NEIGHBOURS = 16  # k of the k-NN PCA normals
FLATNESS = 0.05  # a point is on a flat surface when its smallest covariance eigenvalue is < this x the middle one
ALONG_COS = np.cos(np.radians(20.0))  # a normal lies along an axis within 20 degrees
HORIZONTAL_SIN = np.sin(np.radians(20.0))  # a wall's normal is within 20 degrees of horizontal
END_BAND = 0.10  # the floor / ceiling slab: the lowest / highest 10% of the extent along the axis
OPEN_TOP_MIN = 0.03  # share of the points in floor slab minus ceiling slab that makes an axis clearly "up"
FLAT_MIN = 0.05  # share of the points with normals along an axis needed to call it up without that asymmetry
ROOM_HEIGHT_M = (0.8, 8.0)  # a height along the up axis in this range (in some unit) fixes the unit
WALL_KAPPA = 8.0  # von Mises concentration for the wall angle x 4 (about 5 degrees of wall angle)


def parse_up_axis(text: str) -> tuple[int, int]:
    """(axis 0/1/2, sign +1/-1) of an up-axis name ("x", "-y", ...). InputError for anything else."""
    if text not in UP_AXES:
        raise InputError(None, f"up axis must be one of {', '.join(UP_AXES)} or auto, got {text!r}")
    return "xyz".index(text[-1]), -1 if text.startswith("-") else 1


def up_axis_name(up: tuple[int, int]) -> str:
    """The name ("y", "-z", ...) of an (axis, sign) pair."""
    return ("-" if up[1] < 0 else "") + "xyz"[up[0]]


@dataclasses.dataclass
class _Surfaces:
    """Normals of a fixed subset of a scan's points.

    rows:    int64 [M] rows of the scan's points.
    points:  float64 [M, 3] those points, in the scan's coordinates.
    normals: float64 [M, 3] unit normals (sign arbitrary).
    flat:    bool [M] whether the point lies on a flat surface (its normal means something).
    """

    rows: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    flat: np.ndarray


def _surfaces(points: np.ndarray) -> _Surfaces:
    """Normals by PCA of each sampled point's ``NEIGHBOURS`` nearest sampled points. The sample depends only on
    the number of points, so a turned, scaled or shifted copy of a scan samples the same rows."""
    n = len(points)
    rows = np.arange(n) if n <= MAX_SAMPLE else np.sort(np.random.default_rng(0).choice(n, MAX_SAMPLE, replace=False))
    sample = np.asarray(points, dtype=np.float64)[rows]
    if len(sample) <= NEIGHBOURS:
        return _Surfaces(rows, sample, np.zeros_like(sample), np.zeros(len(sample), dtype=bool))
    centred = sample - sample.mean(axis=0)  # far from the origin, neighbours still differ in many digits
    _, neighbours = cKDTree(centred).query(centred, k=NEIGHBOURS)
    local = centred[neighbours] - centred[neighbours].mean(axis=1, keepdims=True)
    eigenvalues, eigenvectors = np.linalg.eigh(np.einsum("nki,nkj->nij", local, local))
    flat = eigenvalues[:, 0] < FLATNESS * eigenvalues[:, 1]
    return _Surfaces(rows, sample, eigenvectors[:, :, 0], flat)


def _end_slabs(coordinate: np.ndarray, along: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(share of all points that are flat with normals along the axis in the low end band, the same for the high
    end, bool [M] the low band) of one axis. The ends are the 0.5 and 99.5 percentiles, so stray points do not
    move them."""
    low, high = np.percentile(coordinate, [0.5, 99.5])
    if high <= low:
        return 0.0, 0.0, np.zeros(len(coordinate), dtype=bool)
    u = (coordinate - low) / (high - low)
    low_band = u < END_BAND
    return float((along & low_band).mean()), float((along & (u > 1 - END_BAND)).mean()), low_band


def _up_from_surfaces(surfaces: _Surfaces) -> tuple[tuple[int, int], bool]:
    """((axis, sign), measured): the up axis, and whether it was measured (False: nothing flat enough, +z)."""
    if not surfaces.flat.any():
        return (2, 1), False
    floor_minus_ceiling, along_share, low_minus_high = np.zeros(3), np.zeros(3), np.zeros(3)
    for axis in range(3):
        coordinate = surfaces.points[:, axis]
        along = surfaces.flat & (np.abs(surfaces.normals[:, axis]) > ALONG_COS)
        floor, ceiling, _ = _end_slabs(coordinate, along)
        floor_minus_ceiling[axis] = floor - ceiling
        along_share[axis] = along.mean()
        middle = np.mean(np.percentile(coordinate, [0.5, 99.5]))
        low_minus_high[axis] = np.mean(coordinate < middle) - np.mean(coordinate > middle)
    axis = int(np.argmax(np.abs(floor_minus_ceiling)))
    if abs(floor_minus_ceiling[axis]) < OPEN_TOP_MIN:  # no open top: a closed room, or nothing room-like
        axis = int(np.argmax(along_share))
        if along_share[axis] < FLAT_MIN:
            return (2, 1), False
    # the floor is the end with more flat area and most of the points (furniture stands on it): with a ceiling
    # scanned, furniture hides floor, and the points' weight still says which end is down
    evidence = floor_minus_ceiling[axis] + low_minus_high[axis]
    return (axis, -1 if evidence < 0 else 1), True


def detect_up_axis(points: np.ndarray) -> tuple[int, int]:
    """The up axis of an indoor scan among +-x, +-y, +-z, measured (see the module's docstring).

    points: [N, 3] in any units and frame. Returns (axis 0/1/2, sign +1/-1): up is ``sign * e_axis``;
    (2, +1) (z up, the file's own) when nothing flat enough was found to tell.
    """
    return _up_from_surfaces(_surfaces(points))[0]


def _height(points: np.ndarray, up: tuple[int, int]) -> float:
    """The extent along the up axis, in the scan's units, between the 0.5 and 99.5 percentiles."""
    low, high = np.percentile(np.asarray(points, dtype=np.float64)[:, up[0]], [0.5, 99.5])
    return float(high - low)


def _units_of_height(height: float) -> str | None:
    """The unit ("m", "cm", "mm") in which ``height`` is a room's height (``ROOM_HEIGHT_M``), or None."""
    for name, metres_per_unit in UNITS.items():
        if ROOM_HEIGHT_M[0] <= height * metres_per_unit <= ROOM_HEIGHT_M[1]:
            return name
    return None


def detect_units(points: np.ndarray, up: tuple[int, int]) -> float:
    """Metres per unit of a scan's coordinates: 1 (m), 0.01 (cm) or 0.001 (mm).

    points: [N, 3]; up: (axis, sign) as ``detect_up_axis`` gives it. Rooms are 0.8 to 8 m high along the up axis
    (a scan of furniture alone, about 1 m): a height of 800 to 8000 means millimetres, 80 to 800 centimetres;
    a height that fits no unit (ambiguous) means metres.
    """
    return UNITS[_units_of_height(_height(points, up)) or "m"]


def _rotation_up_to_z(up: tuple[int, int]) -> np.ndarray:
    """float64 [3, 3] proper rotation taking ``sign * e_axis`` onto +z: a quarter turn about x for +-y (y-up
    exports: (x, y, z) -> (x, -z, y)), about y for +-x, a half turn about x for -z."""
    axis, sign = up
    if axis == 2:
        return np.eye(3) if sign > 0 else np.diag([1.0, -1.0, -1.0])
    if axis == 1:
        return np.array([[1.0, 0, 0], [0, 0, -sign], [0, sign, 0]])
    return np.array([[0, 0, -sign], [0, 1.0, 0], [sign, 0, 0]])


def _rotation_about_z(radians: float) -> np.ndarray:
    """float64 [3, 3] the turn by ``radians`` about +z (counter-clockwise seen from above)."""
    c, s = np.cos(radians), np.sin(radians)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _wall_angle(normals: np.ndarray) -> float | None:
    """The dominant direction of horizontal normals [M, 3] (z up) modulo 90 degrees, in radians in [-pi/4, pi/4),
    or None with too few of them. A histogram finds the peak; mean-shift on the points (von Mises kernel on 4x the
    angle) refines it, so a turned copy gives the same peak turned, not one snapped to the histogram's bins."""
    horizontal = normals[np.abs(normals[:, 2]) < HORIZONTAL_SIN]
    if len(horizontal) < 20:
        return None
    quadrupled = 4.0 * np.arctan2(horizontal[:, 1], horizontal[:, 0])
    bins = 360
    counts = np.bincount(((quadrupled + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins, minlength=bins)
    centres = -np.pi + (np.arange(bins) + 0.5) * 2 * np.pi / bins
    kernel = np.exp(WALL_KAPPA * (np.cos(centres - centres[0]) - 1.0))  # circular: row k is kernel shifted by k
    density = np.array([np.dot(counts, np.roll(kernel, k)) for k in range(bins)])
    peak = float(centres[int(np.argmax(density))])
    unit = np.exp(1j * quadrupled)
    for _ in range(100):
        weights = np.exp(WALL_KAPPA * (np.cos(quadrupled - peak) - 1.0))
        moved = float(np.angle(np.sum(weights * unit)))
        step = np.angle(np.exp(1j * (moved - peak)))
        peak = moved
        if abs(step) < 1e-12:
            break
    return float(np.angle(np.exp(1j * peak))) / 4.0


def _box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float64 [2] of the horizontal bounding box between the 1 and 99 percentiles (stray points
    ignored)."""
    low, high = np.percentile(points[:, :2], [1.0, 99.0], axis=0)
    return low, high


def _quarter_turns(points: np.ndarray) -> int:
    """How many quarter turns about +z (0-3) put the longer horizontal extent along x and the centroid on the
    +x side of the bounding box's centre (on +y when it sits on the centre's x): a rule on the scan's own shape, so
    every turned copy of a scan ends the same way round."""
    low, high = _box(points)
    turns = 1 if (high - low)[1] > (high - low)[0] else 0
    turned = points[:, :2] @ _rotation_about_z(turns * np.pi / 2)[:2, :2].T
    low, high = _box(turned)
    offset = turned.mean(axis=0) - (low + high) / 2
    if offset[0] < 0 or (offset[0] == 0 and offset[1] < 0):
        turns += 2
    return turns


def _floor_height(canonical_sample: np.ndarray, normals: np.ndarray, flat: np.ndarray) -> float | None:
    """z of the floor: the median z of the flat, horizontal sample points in the lowest band; None without any."""
    along = flat & (np.abs(normals[:, 2]) > ALONG_COS)
    _, _, low_band = _end_slabs(canonical_sample[:, 2], along)
    floor = along & low_band
    return float(np.median(canonical_sample[floor, 2])) if floor.any() else None


def describe(source: str, transform: Transform, hint: str = "") -> str:
    """One line saying what ``transform`` assumed about the scan ``source``, e.g.
    ``room.ply: assumed y-up (detected), millimetres (detected), turned 19.0 deg about the vertical (walls on x/y),
    floor at z=0`` plus `` (hint)`` when anything was detected or defaulted (``hint`` names the overrides)."""
    up = f"{transform.up_axis}-up ({transform.up_source})"
    units = f"{UNIT_NAMES[transform.units]} ({transform.units_source})"
    turn = (f"turned {transform.yaw_degrees:.1f} deg about the vertical (walls on x/y)" if transform.walls_aligned
            else "no turn about the vertical")
    line = f"{source}: assumed {up}, {units}, {turn}, floor at z=0"
    guessed = transform.up_source != "given" or transform.units_source != "given"
    return f"{line} ({hint})" if hint and guessed else line


def normalize_scene(scene: Scene, up_axis: str | None = None, units: str | None = None, align_walls: bool = True,
                    hint: str = "") -> tuple[Scene, Transform, str]:
    """A scan in the canonical frame: up onto +z, coordinates in metres, turned about z so that the dominant wall
    directions lie along x and y (with ``align_walls``; the 90-degree ambiguity resolved by ``_quarter_turns``),
    shifted so that the floor is at z = 0 and the horizontal bounding box's min corner at the origin.

    scene:       any Scene; its points [N, 3] in the scan's own units and frame.
    up_axis:     "x", "y", "z", "-x", "-y" or "-z" to override the detection (None or "auto": ``detect_up_axis``).
    units:       "m", "cm" or "mm" to override the detection (None or "auto": ``detect_units``).
    align_walls: False keeps the scan's yaw (no turn about the vertical).
    hint:        how to override the assumptions (e.g. "overrides: --up-axis, --units"), appended to the message
                 when something was detected.
    Returns (the scene with float32 canonical points, every other field as it was; the Transform; one line saying
    what was assumed, also ``Transform.message``). InputError for an empty scan, non-finite coordinates or an
    unknown up axis / unit name.
    """
    source = scene.source or scene.name
    points = np.asarray(scene.points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(source, f"empty scene or points not [N, 3] (shape {points.shape})")
    if not np.isfinite(points).all():
        raise InputError(source, "coordinates contain NaN or infinity")
    if units not in (None, "auto") and units not in UNITS:
        raise InputError(None, f"units must be one of {', '.join(UNITS)} or auto, got {units!r}")
    given_up = None if up_axis in (None, "auto") else parse_up_axis(up_axis)
    surfaces = _surfaces(points)
    if given_up is None:
        up, measured = _up_from_surfaces(surfaces)
        up_source = "detected" if measured else "default"
    else:
        up, up_source = given_up, "given"
    if units in (None, "auto"):
        detected = _units_of_height(_height(points, up))
        unit, units_source = (detected, "detected") if detected else ("m", "default")
    else:
        unit, units_source = units, "given"
    scale = UNITS[unit]
    rotation = _rotation_up_to_z(up)
    normals = surfaces.normals @ rotation.T
    yaw = 0.0  # radians
    if align_walls:
        wall = _wall_angle(normals[surfaces.flat])
        yaw = -wall if wall is not None else 0.0
        yaw += _quarter_turns(scale * (points @ (_rotation_about_z(yaw) @ rotation).T)) * np.pi / 2
        rotation = _rotation_about_z(yaw) @ rotation
    canonical = scale * (points @ rotation.T)
    floor = _floor_height(canonical[surfaces.rows], surfaces.normals @ rotation.T, surfaces.flat)
    floor = float(np.percentile(canonical[:, 2], 1.0)) if floor is None else floor
    translation = -np.array([canonical[:, 0].min(), canonical[:, 1].min(), floor])
    transform = Transform(rotation=rotation, scale=scale, translation=translation, up_axis=up_axis_name(up),
                          units=unit, up_source=up_source, units_source=units_source,
                          yaw_degrees=float(np.degrees(np.angle(np.exp(1j * yaw)))), walls_aligned=bool(align_walls))
    transform.message = describe(source, transform, hint)
    moved = dataclasses.replace(scene, points=(canonical + translation).astype(np.float32))
    return moved, transform, transform.message
