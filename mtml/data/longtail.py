"""A long-tail synthetic semantic benchmark: rooms furnished with 44 object classes of Zipf-like frequency.

After ScanNet200 (Rozenberszki et al., "Language-Grounded Indoor 3D Semantic Segmentation in the Wild",
ECCV 2022): many classes, few of which are common. A scene is a rectangular room (floor, label 0; walls on
2..4 of its sides, label 1; neither has an instance) furnished with 6..14 objects. Each object class is a
composite of a few parts, each an oriented box or a vertical cylinder, whose dimensions are drawn from
per-class ranges in metres (a chair is a seat box, a backrest box and four leg cylinders; a table lamp a
base disc, a pole and a shade; ...). Related names share a shape family and differ in size and parts:
chair / office chair / armchair / sofa / ottoman / bench / stool are all "seating"; table / coffee table /
end table / desk are "table"; cabinet / kitchen cabinet / nightstand / dresser / tv stand / file cabinet /
wardrobe are "cabinet"; shelf / bookshelf are "shelf"; and so on (``LONGTAIL_CLASSES``).

Frequencies: each object's class is drawn with weight ``1 / rank ** zipf_exponent`` over the object
classes in id order (chair is rank 1, fire extinguisher rank 44), so chairs are in nearly every scene
and the last classes in a few percent of them. ``class_frequency_splits`` (measured on the training scenes by
``mtml.data.registry.longtail_class_splits``) divides the classes into head / common / tail thirds by point count,
as ScanNet200 does.

Placement: objects standing on the floor get a random yaw and position with ``min_gap`` metres between
footprints (rectangles around all their parts); classes flagged ``against_wall`` (doors, beds, pianos, ...)
usually stand ``wall_gap`` in front of a wall, their back to it. "Supported" classes (monitor, table lamp,
pillow, printer, microwave, toaster, box) stand on the top part of an allowed support (desk, table,
nightstand, bed, kitchen cabinet, ...) when one is in the room, else on the floor.

Points are sampled as a scanner sees them: a regular grid (``point_spacing`` apart, random phase per
face) on the floor, on the walls' inner faces, on each box part's top and four sides and each cylinder
part's side and top (no bottoms), minus every point hidden inside another part (so the floor under a leg
or a cabinet is gone, the floor under a table top is not), plus gaussian noise. Colours: one material per
object (and one for its accent parts: legs, poles, pots, ...) with per-point jitter.

Coordinates: metres, the floor is ``[0, room_x] x [0, room_y]`` at z = 0, z points up; nothing is taller
than ``wall_height`` (<= ``LONGTAIL_MAX_HEIGHT``), so a 5 m x 5 m room is about a 51 x 51 x 21 grid at 0.1 m.
Everything is deterministic for a seed (``np.random.default_rng(seed)``).

Splits (seeds 0..599 train, 600..699 val, 700..799 test) and the head / common / tail split of the classes
measured on the training scenes belong to the dataset registry (``mtml.data.registry``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from mtml.data.toy import ToyBox, _box_surface, _face_grid, footprint_corners, polygon_distance
from mtml.errors import InputError
from mtml.scene import NO_INSTANCE, Scene

LONGTAIL_VOXEL_SIZE = 0.1
"""Voxel edge (metres) the benchmark is designed for (every class is >= 0.25 m in its largest dimension)."""
LONGTAIL_FLOOR_LABEL = 0
LONGTAIL_WALL_LABEL = 1
LONGTAIL_MAX_HEIGHT = 2.4
"""Upper bound (metres) on ``LongtailSceneConfig.wall_height``; no object is taller than 2.0 m."""

BOX, CYLINDER = 0, 1
"""Part kinds (first column of a part row)."""

# --------------------------------------------------------------------------------------- materials

_MATERIALS = {
    "wood": (150, 105, 65),
    "dark wood": (85, 55, 35),
    "light wood": (200, 170, 125),
    "white": (228, 228, 222),
    "black": (38, 38, 42),
    "grey": (128, 128, 132),
    "metal": (172, 174, 180),
    "blue fabric": (65, 85, 135),
    "red fabric": (145, 55, 50),
    "beige fabric": (192, 176, 150),
    "green": (60, 125, 55),
    "terracotta": (175, 95, 60),
    "cardboard": (182, 142, 92),
    "red": (200, 35, 30),
    "yellow": (215, 185, 60),
}
_FLOOR_MATERIALS = ("wood", "light wood", "grey", "beige fabric")
_WALL_MATERIALS = ("white", "beige fabric")
_WOODS = ("wood", "dark wood", "light wood", "white")
_FABRICS = ("blue fabric", "red fabric", "beige fabric", "grey")

# ------------------------------------------------------------------------------------ part builders
#
# A builder takes the rng and returns a list of parts, each a tuple
# (kind, cx, cy, z0, sx, sy, sz, accent) in the object's own frame: x across its width, -y its back,
# z0 the part's bottom above the object's base, (sx, sy, sz) its edge lengths (a cylinder has
# sx = sy = its diameter), accent True for parts drawn in the accent material. Part 0 is the object's
# top surface when the class carries supported objects. Ranges are (lo, hi) in metres.


def _u(rng: np.random.Generator, r) -> float:
    """One uniform draw from the range ``r = (lo, hi)``."""
    return float(rng.uniform(r[0], r[1]))


def _box(cx, cy, z0, sx, sy, sz, accent=False) -> tuple:
    return (BOX, cx, cy, z0, sx, sy, sz, accent)


def _cyl(cx, cy, z0, radius, height, accent=False) -> tuple:
    return (CYLINDER, cx, cy, z0, 2.0 * radius, 2.0 * radius, height, accent)


def _seating(rng, *, width, depth, seat_h, seat_t, base, back_h=None, back_t=(0.04, 0.06), arm_w=None,
             arm_h=(0.18, 0.25), leg_r=(0.015, 0.025), round_seat=False) -> list:
    """Chairs, sofas, stools, benches. base: "legs" (4 cylinders), "pedestal" (column on a disc),
    "slabs" (two end panels) or "solid" (a block to the floor; part 0 is then the cushion block between
    the arms, in front of the back)."""
    w, d, h, t = _u(rng, width), _u(rng, depth), _u(rng, seat_h), _u(rng, seat_t)
    bh = _u(rng, back_h) if back_h else 0.0
    bt = _u(rng, back_t) if back_h else 0.0
    aw = _u(rng, arm_w) if arm_w else 0.0
    ah = _u(rng, arm_h) if arm_w else 0.0
    r = _u(rng, leg_r)
    if base == "solid":
        parts = [_box(0.0, bt / 2.0, 0.0, w - 2.0 * aw, d - bt, h)]
        if aw:
            parts += [_box(sgn * (w - aw) / 2.0, 0.0, 0.0, aw, d, h + ah) for sgn in (1.0, -1.0)]
        if bh:
            parts.append(_box(0.0, (bt - d) / 2.0, 0.0, w, bt, h + bh))
        return parts
    parts = [_cyl(0.0, 0.0, h - t, w / 2.0, t) if round_seat else _box(0.0, 0.0, h - t, w, d, t)]
    if base == "legs":  # under the corners of a square seat, on the diagonals of a round one
        ox, oy = (0.3 * w, 0.3 * w) if round_seat else (w / 2.0 - r - 0.02, d / 2.0 - r - 0.02)
        parts += [_cyl(sx * ox, sy * oy, 0.0, r, h - t, True) for sx in (1.0, -1.0) for sy in (1.0, -1.0)]
    elif base == "pedestal":
        parts += [_cyl(0.0, 0.0, 0.0, 0.6 * max(w, d), 0.06, True), _cyl(0.0, 0.0, 0.06, 0.03, h - t - 0.06, True)]
    elif base == "slabs":
        parts += [_box(sgn * (w / 2.0 - 0.08), 0.0, 0.0, 0.05, 0.9 * d, h - t, True) for sgn in (1.0, -1.0)]
    if bh:
        parts.append(_box(0.0, (bt - d) / 2.0, h, w, bt, bh))
    return parts


def _table(rng, *, width, depth, height, top_t=(0.03, 0.05), base="legs", leg_w=(0.04, 0.07),
           drawer_prob=0.0) -> list:
    """Tables and desks: a top (part 0) on four square legs ("legs") or on two side panels with a modesty
    panel ("panels", desks; one panel is replaced by a drawer block with probability ``drawer_prob``)."""
    w, d, h, t, lw = _u(rng, width), _u(rng, depth), _u(rng, height), _u(rng, top_t), _u(rng, leg_w)
    drawer = rng.random() < drawer_prob
    parts = [_box(0.0, 0.0, h - t, w, d, t)]
    if base == "legs":
        ox, oy = w / 2.0 - lw / 2.0 - 0.03, d / 2.0 - lw / 2.0 - 0.03
        parts += [_box(sx * ox, sy * oy, 0.0, lw, lw, h - t, True) for sx in (1.0, -1.0) for sy in (1.0, -1.0)]
        return parts
    pt = 0.04
    parts.append(_box(-(w - pt) / 2.0 + 0.01, 0.0, 0.0, pt, 0.95 * d, h - t, True))
    if drawer:
        parts.append(_box(w / 2.0 - 0.22, 0.0, 0.0, 0.42, 0.95 * d, h - t))
    else:
        parts.append(_box((w - pt) / 2.0 - 0.01, 0.0, 0.0, pt, 0.95 * d, h - t, True))
    parts.append(_box(0.0, -d / 2.0 + 0.06, (h - t) / 2.0, w - 0.1, 0.02, (h - t) / 2.0, True))
    return parts


def _cabinet(rng, *, width, depth, height, base=None, base_h=(0.08, 0.1), top_t=None, overhang=0.0,
             handle=False) -> list:
    """Cabinets: a body on a plinth ("plinth", inset 5 cm), on four short legs ("legs") or on the floor
    (None), under an optional top slab overhanging by ``overhang`` at the front and sides. Part 0 is the
    top slab, or the body when there is none."""
    w, d, h = _u(rng, width), _u(rng, depth), _u(rng, height)
    bh = _u(rng, base_h) if base else 0.0
    tt = _u(rng, top_t) if top_t else 0.0
    body = _box(0.0, 0.0, bh, w, d, h - bh - tt)
    parts = [_box(0.0, overhang / 2.0, h - tt, w + 2.0 * overhang, d + overhang, tt), body] if tt else [body]
    if base == "plinth":
        parts.append(_box(0.0, -0.025, 0.0, w - 0.1, d - 0.05, bh, True))
    elif base == "legs":
        parts += [_box(sx * (w / 2.0 - 0.05), sy * (d / 2.0 - 0.05), 0.0, 0.04, 0.04, bh, True)
                  for sx in (1.0, -1.0) for sy in (1.0, -1.0)]
    if handle:
        parts.append(_box(w / 2.0 - 0.08, d / 2.0 + 0.02, bh + 0.3 * (h - bh), 0.03, 0.04, 0.4 * (h - bh), True))
    return parts


def _shelf(rng, *, width, depth, height, boards, back, thick=(0.02, 0.03)) -> list:
    """Open shelving: two side panels and ``boards`` (int range) shelf boards, the top one being part 0;
    with a back panel when ``back``."""
    w, d, h, th = _u(rng, width), _u(rng, depth), _u(rng, height), _u(rng, thick)
    n = int(rng.integers(boards[0], boards[1] + 1))
    bp = 0.02 if back else 0.0
    inner = w - 2.0 * th
    levels = np.linspace(h - th, 0.06, n)
    parts = [_box(0.0, bp / 2.0, float(z), inner, d - bp, th) for z in levels]
    parts += [_box(sgn * (w - th) / 2.0, 0.0, 0.0, th, d, h) for sgn in (1.0, -1.0)]
    if back:
        parts.append(_box(0.0, (bp - d) / 2.0, 0.0, inner, bp, h))
    return parts


def _block(rng, *, width, depth, height, front_handle=False, top_handle=False, tray=False) -> list:
    """Box-shaped things (appliances, boxes, luggage): a body (part 0) with an optional vertical front
    handle, a handle on top or a paper tray on top at the back."""
    w, d, h = _u(rng, width), _u(rng, depth), _u(rng, height)
    parts = [_box(0.0, 0.0, 0.0, w, d, h)]
    if front_handle:
        parts.append(_box(w / 2.0 - 0.06, d / 2.0 + 0.02, 0.35 * h, 0.03, 0.04, 0.35 * h, True))
    if top_handle:
        parts.append(_box(0.0, 0.0, h, 0.6 * w, 0.03, 0.12, True))
    if tray:
        parts.append(_box(0.0, -d / 2.0 + 0.06, h, 0.7 * w, 0.08, 0.1, True))
    return parts


def _stack(rng, *, layers) -> list:
    """Parts stacked on one vertical axis (lamps, plants, bins, pedestal sinks, monitors). layers: tuples
    ("cyl", radius, height, accent) or ("box", width, depth, height, accent), bottom first."""
    parts, z = [], 0.0
    for layer in layers:
        if layer[0] == "cyl":
            r, h = _u(rng, layer[1]), _u(rng, layer[2])
            parts.append(_cyl(0.0, 0.0, z, r, h, layer[3]))
        else:
            w, d, h = _u(rng, layer[1]), _u(rng, layer[2]), _u(rng, layer[3])
            parts.append(_box(0.0, 0.0, z, w, d, h, layer[4]))
        z += h
    return parts


def _bed(rng, *, width, length, height, head_h, head_t=(0.06, 0.1)) -> list:
    """A mattress block (part 0) with a headboard at its back."""
    w, ln, h, hh, ht = _u(rng, width), _u(rng, length), _u(rng, height), _u(rng, head_h), _u(rng, head_t)
    return [_box(0.0, ht / 2.0, 0.0, w, ln, h), _box(0.0, -ln / 2.0, 0.0, w + 0.04, ht, hh, True)]


def _toilet(rng, *, bowl_r, bowl_h, tank_w, tank_d, tank_h) -> list:
    """A bowl cylinder with a tank box behind it."""
    r, bh, tw, td, th = (_u(rng, x) for x in (bowl_r, bowl_h, tank_w, tank_d, tank_h))
    return [_cyl(0.0, 0.0, 0.0, r, bh), _box(0.0, -(r + td / 2.0 - 0.04), 0.0, tw, td, th)]


def _tub(rng, *, length, width, height, rim=(0.06, 0.1), bottom=(0.12, 0.18)) -> list:
    """A hollow bathtub: a bottom slab inside four rim walls."""
    ln, w, h, t, b = (_u(rng, x) for x in (length, width, height, rim, bottom))
    parts = [_box(0.0, 0.0, 0.0, ln - 2.0 * t, w - 2.0 * t, b)]
    parts += [_box(sgn * (ln - t) / 2.0, 0.0, 0.0, t, w, h) for sgn in (1.0, -1.0)]
    parts += [_box(0.0, sgn * (w - t) / 2.0, 0.0, ln - 2.0 * t, t, h) for sgn in (1.0, -1.0)]
    return parts


def _radiator(rng, *, width, depth, height, feet_h=(0.08, 0.14)) -> list:
    """A panel raised on two feet."""
    w, d, h, fh = _u(rng, width), _u(rng, depth), _u(rng, height), _u(rng, feet_h)
    return [_box(0.0, 0.0, fh, w, d, h)] + [
        _box(sgn * (w / 2.0 - 0.08), 0.0, 0.0, 0.04, d, fh, True) for sgn in (1.0, -1.0)]


def _ladder(rng, *, width, height, rung_step=(0.26, 0.32)) -> list:
    """Two rails with rungs between them."""
    w, h, step = _u(rng, width), _u(rng, height), _u(rng, rung_step)
    parts = [_box(sgn * (w - 0.05) / 2.0, 0.0, 0.0, 0.05, 0.06, h, True) for sgn in (1.0, -1.0)]
    parts += [_box(0.0, 0.0, float(z), w - 0.1, 0.03, 0.03) for z in np.arange(0.25, h - 0.1, step)]
    return parts


def _piano(rng, *, width, depth, height, key_depth=(0.22, 0.28), key_z=(0.68, 0.74)) -> list:
    """An upright piano: a body, a keyboard shelf in front of it and two front legs under the shelf."""
    w, d, h, kd, kz = (_u(rng, x) for x in (width, depth, height, key_depth, key_z))
    y = d / 2.0 + kd / 2.0
    return [_box(0.0, 0.0, 0.0, w, d, h), _box(0.0, y, kz, 0.92 * w, kd, 0.06, True)] + [
        _cyl(sgn * 0.42 * w, d / 2.0 + kd - 0.05, 0.0, 0.03, kz, True) for sgn in (1.0, -1.0)]


# ------------------------------------------------------------------------------------------ classes


@dataclass(frozen=True)
class LongtailClass:
    """One object class of the benchmark.

    id:           label id (2..45; 0 is floor, 1 wall).
    name:         ScanNet200-style name.
    family:       shape family shared by related names ("seating", "table", "cabinet", ...).
    build:        rng -> list of parts (see the builders above); dimensions are drawn from the class ranges.
    materials:    material names for the main parts; accents: for the accent parts (default: materials).
    supported_by: names of classes whose top this class stands on when one is in the room.
    support_prob: probability that an object of a supported class looks for a support at all.
    against_wall: usually placed with its back to a wall.
    """

    id: int
    name: str
    family: str
    build: Callable
    materials: tuple
    accents: tuple = ()
    supported_by: tuple = ()
    support_prob: float = 1.0
    against_wall: bool = False


def _cls(name, family, build, materials, accents=(), supported_by=(), support_prob=1.0, against_wall=False):
    return dict(name=name, family=family, build=build, materials=materials, accents=accents,
                supported_by=supported_by, support_prob=support_prob, against_wall=against_wall)


_P = functools.partial
_DESKS = ("desk", "table")
_TOPS = ("table", "desk", "cabinet", "dresser", "nightstand", "end table", "tv stand", "shelf", "kitchen cabinet",
         "file cabinet", "coffee table")
# In rank order (most frequent first), loosely after ScanNet200's class frequencies.
_CLASS_TABLE = [
    _cls("chair", "seating", _P(_seating, width=(0.4, 0.5), depth=(0.4, 0.5), seat_h=(0.43, 0.48),
                                seat_t=(0.04, 0.06), base="legs", back_h=(0.35, 0.45)), _WOODS + ("black",)),
    _cls("table", "table", _P(_table, width=(1.0, 1.8), depth=(0.7, 1.0), height=(0.72, 0.77)), _WOODS, ("metal",)),
    _cls("door", "door", _P(_stack, layers=(("box", (0.8, 0.95), (0.04, 0.05), (1.9, 2.0), False),)),
         _WOODS, against_wall=True),
    _cls("sofa", "seating", _P(_seating, width=(1.6, 2.3), depth=(0.85, 1.0), seat_h=(0.4, 0.45), seat_t=(0, 0),
                               base="solid", back_h=(0.35, 0.45), back_t=(0.18, 0.25), arm_w=(0.15, 0.22)),
         _FABRICS, against_wall=True),
    _cls("cabinet", "cabinet", _P(_cabinet, width=(0.6, 1.2), depth=(0.4, 0.6), height=(0.8, 1.2), base="plinth"),
         _WOODS + ("grey",)),
    _cls("shelf", "shelf", _P(_shelf, width=(0.8, 1.3), depth=(0.3, 0.45), height=(0.8, 1.3), boards=(3, 3),
                              back=False), _WOODS + ("metal",)),
    _cls("desk", "table", _P(_table, width=(1.2, 1.7), depth=(0.6, 0.8), height=(0.72, 0.77), base="panels",
                             drawer_prob=0.5), _WOODS),
    _cls("office chair", "seating", _P(_seating, width=(0.45, 0.55), depth=(0.45, 0.52), seat_h=(0.45, 0.52),
                                       seat_t=(0.07, 0.09), base="pedestal", back_h=(0.45, 0.6)),
         ("black", "grey", "blue fabric"), ("black", "metal")),
    _cls("bed", "bed", _P(_bed, width=(1.0, 1.9), length=(1.95, 2.1), height=(0.45, 0.6), head_h=(0.9, 1.2)),
         ("white", "beige fabric", "blue fabric"), _WOODS, against_wall=True),
    _cls("pillow", "cushion", _P(_block, width=(0.5, 0.7), depth=(0.35, 0.45), height=(0.12, 0.18)),
         _FABRICS + ("white",), supported_by=("bed", "sofa", "armchair")),
    _cls("sink", "bathroom", _P(_stack, layers=(("cyl", (0.07, 0.1), (0.7, 0.8), True),
                                                ("box", (0.5, 0.65), (0.4, 0.5), (0.15, 0.2), False))),
         ("white",), against_wall=True),
    _cls("toilet", "bathroom", _P(_toilet, bowl_r=(0.18, 0.21), bowl_h=(0.38, 0.42), tank_w=(0.36, 0.45),
                                  tank_d=(0.16, 0.22), tank_h=(0.7, 0.8)), ("white",), against_wall=True),
    _cls("bookshelf", "shelf", _P(_shelf, width=(0.7, 1.0), depth=(0.28, 0.38), height=(1.7, 2.0), boards=(5, 6),
                                  back=True), _WOODS, against_wall=True),
    _cls("monitor", "screen", _P(_stack, layers=(("box", (0.18, 0.25), (0.15, 0.2), (0.02, 0.02), True),
                                                 ("box", (0.05, 0.05), (0.03, 0.03), (0.08, 0.12), True),
                                                 ("box", (0.45, 0.7), (0.03, 0.05), (0.28, 0.42), False))),
         ("black",), ("black", "metal"), supported_by=_DESKS),
    _cls("armchair", "seating", _P(_seating, width=(0.75, 0.95), depth=(0.75, 0.9), seat_h=(0.4, 0.45),
                                   seat_t=(0, 0), base="solid", back_h=(0.35, 0.45), back_t=(0.15, 0.2),
                                   arm_w=(0.12, 0.18)), _FABRICS),
    _cls("coffee table", "table", _P(_table, width=(0.8, 1.2), depth=(0.45, 0.65), height=(0.38, 0.46)), _WOODS),
    _cls("box", "block", _P(_block, width=(0.3, 0.55), depth=(0.25, 0.45), height=(0.2, 0.45)), ("cardboard",),
         supported_by=_TOPS, support_prob=0.5),
    _cls("refrigerator", "block", _P(_block, width=(0.6, 0.85), depth=(0.6, 0.75), height=(1.6, 1.9),
                                     front_handle=True), ("white", "metal"), ("metal", "black"), against_wall=True),
    _cls("lamp", "lamp", _P(_stack, layers=(("cyl", (0.06, 0.09), (0.02, 0.03), True),
                                            ("cyl", (0.01, 0.015), (0.2, 0.35), True),
                                            ("cyl", (0.1, 0.15), (0.15, 0.22), False))),
         ("white", "beige fabric"), ("metal", "black"),
         supported_by=("nightstand", "end table", "desk", "dresser", "table", "cabinet")),
    _cls("kitchen cabinet", "cabinet", _P(_cabinet, width=(1.0, 2.4), depth=(0.58, 0.62), height=(0.86, 0.92),
                                          base="plinth", top_t=(0.03, 0.04), overhang=0.03),
         ("white", "wood", "light wood"), ("grey", "black"), against_wall=True),
    _cls("nightstand", "cabinet", _P(_cabinet, width=(0.4, 0.55), depth=(0.35, 0.45), height=(0.5, 0.65),
                                     base="legs"), _WOODS),
    _cls("dresser", "cabinet", _P(_cabinet, width=(0.9, 1.5), depth=(0.45, 0.55), height=(0.75, 1.05),
                                  base="legs"), _WOODS, against_wall=True),
    _cls("stool", "seating", _P(_seating, width=(0.32, 0.4), depth=(0.32, 0.4), seat_h=(0.45, 0.75),
                                seat_t=(0.03, 0.05), base="legs", round_seat=True), _WOODS + ("black",),
         ("metal", "wood")),
    _cls("plant", "pot", _P(_stack, layers=(("cyl", (0.12, 0.2), (0.2, 0.35), True),
                                            ("cyl", (0.22, 0.4), (0.3, 0.8), False))),
         ("green",), ("terracotta", "white", "grey")),
    _cls("bathtub", "bathroom", _P(_tub, length=(1.5, 1.75), width=(0.7, 0.8), height=(0.5, 0.6)), ("white",),
         against_wall=True),
    _cls("end table", "table", _P(_table, width=(0.45, 0.6), depth=(0.45, 0.6), height=(0.5, 0.65)), _WOODS),
    _cls("printer", "block", _P(_block, width=(0.5, 0.62), depth=(0.42, 0.55), height=(0.15, 0.2), tray=True),
         ("white", "grey", "black"), supported_by=("desk", "table", "cabinet", "file cabinet")),
    _cls("tv stand", "cabinet", _P(_cabinet, width=(1.0, 1.8), depth=(0.38, 0.5), height=(0.4, 0.6),
                                   base="plinth", base_h=(0.05, 0.08)), _WOODS + ("black",), against_wall=True),
    _cls("trash can", "bin", _P(_stack, layers=(("cyl", (0.13, 0.2), (0.45, 0.7), False),)),
         ("grey", "black", "white", "metal")),
    _cls("microwave", "block", _P(_block, width=(0.45, 0.55), depth=(0.32, 0.38), height=(0.27, 0.33),
                                  front_handle=True), ("white", "black", "metal"),
         supported_by=("kitchen cabinet", "cabinet", "table")),
    _cls("ottoman", "seating", _P(_seating, width=(0.55, 0.8), depth=(0.55, 0.8), seat_h=(0.38, 0.45),
                                  seat_t=(0, 0), base="solid"), _FABRICS),
    _cls("bench", "seating", _P(_seating, width=(1.2, 1.7), depth=(0.32, 0.42), seat_h=(0.42, 0.48),
                                seat_t=(0.04, 0.06), base="slabs"), _WOODS),
    _cls("file cabinet", "cabinet", _P(_cabinet, width=(0.38, 0.48), depth=(0.55, 0.7), height=(0.7, 1.35),
                                       handle=True), ("grey", "metal", "black")),
    _cls("piano", "piano", _P(_piano, width=(1.4, 1.55), depth=(0.5, 0.62), height=(1.1, 1.3)),
         ("black", "dark wood"), ("white",), against_wall=True),
    _cls("suitcase", "block", _P(_block, width=(0.38, 0.5), depth=(0.2, 0.28), height=(0.55, 0.75), top_handle=True),
         ("black", "blue fabric", "red", "grey")),
    _cls("radiator", "radiator", _P(_radiator, width=(0.6, 1.2), depth=(0.08, 0.14), height=(0.45, 0.65)),
         ("white", "metal"), against_wall=True),
    _cls("wardrobe", "cabinet", _P(_cabinet, width=(0.9, 1.6), depth=(0.55, 0.62), height=(1.8, 2.0), base="plinth",
                                   handle=True), _WOODS, against_wall=True),
    _cls("bucket", "bin", _P(_stack, layers=(("cyl", (0.12, 0.15), (0.26, 0.33), False),)),
         ("red", "yellow", "grey", "blue fabric")),
    _cls("laundry basket", "bin", _P(_stack, layers=(("cyl", (0.23, 0.3), (0.35, 0.5), False),)),
         ("white", "beige fabric", "light wood")),
    _cls("column", "column", _P(_stack, layers=(("cyl", (0.15, 0.25), (1.95, 2.0), False),)), ("white", "grey")),
    _cls("ladder", "ladder", _P(_ladder, width=(0.38, 0.5), height=(1.5, 1.95)), ("metal", "wood"),
         against_wall=True),
    _cls("toaster", "block", _P(_block, width=(0.25, 0.3), depth=(0.15, 0.2), height=(0.18, 0.22)),
         ("metal", "white", "red"), supported_by=("kitchen cabinet", "table")),
    _cls("mini fridge", "block", _P(_block, width=(0.45, 0.55), depth=(0.45, 0.55), height=(0.5, 0.85),
                                    front_handle=True), ("white", "black", "metal"), ("metal",)),
    _cls("fire extinguisher", "canister", _P(_stack, layers=(("cyl", (0.06, 0.09), (0.45, 0.55), False),
                                                        ("cyl", (0.025, 0.03), (0.06, 0.1), True))),
         ("red",), ("black",)),
]

LONGTAIL_CLASSES: tuple = tuple(LongtailClass(id=i + 2, **row) for i, row in enumerate(_CLASS_TABLE))
"""The object classes, ids 2..45 in rank order (most frequent first)."""
LONGTAIL_CLASS_NAMES: dict = {LONGTAIL_FLOOR_LABEL: "floor", LONGTAIL_WALL_LABEL: "wall",
                              **{c.id: c.name for c in LONGTAIL_CLASSES}}
"""Every label id -> name (0 floor, 1 wall, 2..45 objects)."""
LONGTAIL_OBJECT_CLASS_IDS: tuple = tuple(c.id for c in LONGTAIL_CLASSES)
"""The object (thing) class ids, in rank order."""
_BY_NAME = {c.name: c for c in LONGTAIL_CLASSES}
_BY_ID = {c.id: c for c in LONGTAIL_CLASSES}
_SUPPORT_IDS = {c.id: frozenset(_BY_NAME[n].id for n in c.supported_by) for c in LONGTAIL_CLASSES}

def longtail_class_weights(zipf_exponent: float = 1.1) -> dict:
    """Sampling probability of each object class: ``1 / rank ** zipf_exponent``, normalised to sum to 1.

    Returns dict[int, float] over ``LONGTAIL_OBJECT_CLASS_IDS`` (rank 1 = id 2, chair).
    """
    w = 1.0 / np.arange(1, len(LONGTAIL_CLASSES) + 1, dtype=np.float64) ** zipf_exponent
    w /= w.sum()
    return dict(zip(LONGTAIL_OBJECT_CLASS_IDS, w.tolist()))


# ------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class LongtailSceneConfig:
    """How long-tail scenes are drawn. Lengths in metres.

    room_size:         (lo, hi) range of each floor side.
    wall_height:       height of the walls (<= LONGTAIL_MAX_HEIGHT); the tallest objects are 2.0 m.
    num_walls:         inclusive (min, max) number of the room's four sides that have a wall.
    num_objects:       inclusive (min, max) number of objects drawn (some may not fit and are dropped).
    zipf_exponent:     class weight is 1 / rank ** zipf_exponent.
    point_spacing:     grid step of the sampled surface points.
    noise:             gaussian std added to every coordinate.
    min_gap:           clearance between the footprints of floor-standing objects.
    wall_gap:          distance of wall-backed objects from their wall; every footprint keeps it from the
                       floor's edge.
    wall_prob:         probability that an ``against_wall`` object is first tried against a wall.
    item_gap:          clearance between objects standing on the same support.
    support_inset:     supported objects stay this far inside their support's top.
    max_tries:         placement attempts per object and mode before giving up.
    hidden_tolerance:  surface points within this distance inside another part count as hidden.
    colors:            give the scene RGB colours (else ``Scene.colors`` is None).
    """

    room_size: tuple = (3.5, 6.0)
    wall_height: float = 2.0
    num_walls: tuple = (2, 4)
    num_objects: tuple = (6, 14)
    zipf_exponent: float = 1.1
    point_spacing: float = 0.04
    noise: float = 0.01
    min_gap: float = 0.15
    wall_gap: float = 0.05
    wall_prob: float = 0.8
    item_gap: float = 0.05
    support_inset: float = 0.02
    max_tries: int = 60
    hidden_tolerance: float = 0.01
    colors: bool = True


# --------------------------------------------------------------------------------------- placement


@dataclass
class LongtailObject:
    """One placed object.

    label:    class id (2..45); instance: its instance id in the scene (0..K-1, placement order).
    center:   (x, y) of its footprint centre, metres; yaw: rotation about +z, radians.
    base_z:   height of its base: 0 on the floor, the support's top when supported.
    parts:    float64 [P, 7] rows (kind, cx, cy, z0, sx, sy, sz) in the object's frame (footprint centred
              at the origin, z0 above ``base_z``); kind BOX or CYLINDER (sx = sy = diameter).
    accent:   bool [P]: parts drawn in the accent material.
    support:  instance id of the object it stands on, or None.
    """

    label: int
    instance: int
    center: tuple
    yaw: float
    base_z: float
    parts: np.ndarray
    accent: np.ndarray
    support: Optional[int] = None

    @property
    def half_xy(self) -> np.ndarray:
        """float64 [2]: half the footprint's edge lengths (object frame), metres."""
        return _half_extent(self.parts)

    @property
    def height(self) -> float:
        """Top of the highest part above the base, metres."""
        return float((self.parts[:, 3] + self.parts[:, 6]).max())

    def footprint(self) -> np.ndarray:
        """float64 [4, 2]: world (x, y) corners of the rectangle around all parts, counter-clockwise."""
        return footprint_corners(np.asarray(self.center), self.half_xy, np.asarray(self.yaw))

    def top_surface(self) -> tuple:
        """(centre_xy [2] in the object's frame, half_xy [2], z above the floor) of part 0's top."""
        p = self.parts[0]
        return p[1:3].copy(), p[4:6] / 2.0, self.base_z + float(p[3] + p[6])


def _half_extent(parts: np.ndarray) -> np.ndarray:
    """Half the xy extent of parts [P, 7] (assumed centred), float64 [2]."""
    return np.maximum(np.abs(parts[:, 1:3] + parts[:, 4:6] / 2.0), np.abs(parts[:, 1:3] - parts[:, 4:6] / 2.0)).max(0)


def _build(rng: np.random.Generator, cls: LongtailClass) -> tuple:
    """Draw a class's parts; returns (parts float64 [P, 7] centred on the footprint, accent bool [P])."""
    rows = cls.build(rng)
    parts = np.array([r[:7] for r in rows], dtype=np.float64)
    accent = np.array([bool(r[7]) for r in rows])
    lo = (parts[:, 1:3] - parts[:, 4:6] / 2.0).min(0)
    hi = (parts[:, 1:3] + parts[:, 4:6] / 2.0).max(0)
    parts[:, 1:3] -= (lo + hi) / 2.0
    return parts, accent


def _extent(half: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Axis-aligned half extents [T, 2] of rectangles with half edges ``half`` [2] rotated by yaw [T]."""
    c, s = np.abs(np.cos(yaw)), np.abs(np.sin(yaw))
    return np.stack([c * half[0] + s * half[1], s * half[0] + c * half[1]], axis=1)


def _rotate(xy: np.ndarray, yaw) -> np.ndarray:
    """Rotate [..., 2] vectors by yaw (broadcast) about the origin."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([xy[..., 0] * c - xy[..., 1] * s, xy[..., 0] * s + xy[..., 1] * c], axis=-1)


def _first_free(center, corners, half, placed, bound, gap) -> Optional[int]:
    """Index of the first candidate footprint (centres [T, 2], corners [T, 4, 2], half edges ``half`` [2])
    with every corner <= ``bound`` [2] and ``gap`` metres from every placed object's footprint, or None.
    Only pairs whose bounding circles come within ``gap`` are tested exactly (``polygon_distance``)."""
    ok = (corners <= bound + 1e-9).all(axis=(1, 2))
    if placed and ok.any():
        pc = np.array([o.center for o in placed])
        pr = np.array([np.hypot(*o.half_xy) for o in placed])
        near = np.linalg.norm(center[:, None] - pc[None], axis=-1) < np.hypot(*half) + pr[None] + gap
        near &= ok[:, None]
        clear = np.flatnonzero(ok & ~near.any(1))
        if len(clear):  # tries after the first clear one cannot come first
            near[clear[0]:] = False
        ti, ki = np.nonzero(near)
        if len(ti):
            fp = np.stack([o.footprint() for o in placed])
            ok[ti[polygon_distance(corners[ti], fp[ki]) < gap]] = False
    hits = np.flatnonzero(ok)
    return int(hits[0]) if len(hits) else None


# yaw that turns an object's front (+y) away from each wall: x = 0, x = room_x, y = 0, y = room_y
_WALL_YAW = np.array([-np.pi / 2.0, np.pi / 2.0, 0.0, np.pi])


def _place_on_floor(rng, half, against, walls, placed, room, cfg) -> Optional[tuple]:
    """Centre and yaw for a footprint of half edges ``half`` [2] on the floor: against one of ``walls`` (back
    ``wall_gap`` from it) when ``against``, else anywhere; ``min_gap`` from every placed floor object."""
    t, m = cfg.max_tries, cfg.wall_gap
    u = rng.random((t, 2))
    free_yaw = rng.uniform(0.0, 2.0 * np.pi, t)
    wall = np.asarray(walls)[rng.integers(0, max(len(walls), 1), t)] if len(walls) else np.zeros(t, int)
    if against and len(walls):
        yaw = _WALL_YAW[wall]
        along_axis = np.where(wall < 2, 1, 0)  # walls at x = const run along y
        ext = _extent(half, yaw)
        lo, hi = m + ext, room - m - ext
        center = lo + u * np.maximum(hi - lo, 0.0)
        normal = 1 - along_axis
        at_max = wall % 2 == 1
        rows = np.arange(t)
        center[rows, normal] = np.where(at_max, room[normal] - m - half[1], m + half[1])
    else:
        yaw = free_yaw
        ext = _extent(half, yaw)
        center = m + ext + u * np.maximum(room - 2.0 * (m + ext), 0.0)
    # centres keep footprints >= m from the floor's low edges by construction; check the high ones
    i = _first_free(center, footprint_corners(center, half, yaw), half, placed, room - m, cfg.min_gap)
    return None if i is None else (center[i], float(yaw[i]))


def _place_on_support(rng, half, supports, items, cfg) -> Optional[tuple]:
    """Centre, yaw and support for a footprint of half edges ``half`` [2] on the top of one of ``supports``
    (LongtailObject list), ``support_inset`` inside its edge and ``item_gap`` from the ``items`` already on it."""
    t = cfg.max_tries
    pick = rng.integers(0, len(supports), t)
    rel_yaw = rng.integers(0, 4, t) * (np.pi / 2.0) + rng.uniform(-0.15, 0.15, t)
    u = rng.uniform(-1.0, 1.0, (t, 2))
    for k in range(t):
        sup = supports[pick[k]]
        c_top, h_top, _ = sup.top_surface()
        room = h_top - cfg.support_inset - _extent(half, rel_yaw[k:k + 1])[0]
        if (room < 0).any():
            continue
        local = c_top + u[k] * room
        center = np.asarray(sup.center) + _rotate(local, sup.yaw)
        yaw = sup.yaw + rel_yaw[k]
        mine = [o.footprint() for o in items if o.support == sup.instance]
        if mine:
            dist = polygon_distance(footprint_corners(center, half, np.asarray(yaw))[None], np.stack(mine))
            if (dist < cfg.item_gap).any():
                continue
        return center, float(yaw), sup
    return None


def sample_longtail_layout(rng: np.random.Generator, config: LongtailSceneConfig = LongtailSceneConfig()) -> tuple:
    """Draw a room and its objects (no points).

    rng: the scene's generator (consumed). Returns (room float64 [2] floor size in metres, walls: list of
    wall sides (0: x = 0, 1: x = room_x, 2: y = 0, 3: y = room_y), objects: list[LongtailObject] in
    placement order, floor-standing ones first).
    """
    cfg = config
    room = rng.uniform(cfg.room_size[0], cfg.room_size[1], 2)
    n_walls = int(rng.integers(cfg.num_walls[0], cfg.num_walls[1] + 1))
    walls = sorted(int(w) for w in rng.choice(4, size=min(n_walls, 4), replace=False))
    n = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    weights = np.array(list(longtail_class_weights(cfg.zipf_exponent).values()))
    labels = rng.choice(np.asarray(LONGTAIL_OBJECT_CLASS_IDS), size=n, p=weights)
    shapes = [_build(rng, _BY_ID[int(lb)]) for lb in labels]
    wants_support = rng.random(n) < np.array([_BY_ID[int(lb)].support_prob if _SUPPORT_IDS[int(lb)] else 0.0
                                              for lb in labels])
    wall_first = rng.random(n) < cfg.wall_prob
    # floor-standing objects first, largest footprint first; then the supported ones in draw order
    area = np.array([np.prod(_half_extent(p)) for p, _ in shapes])
    order = [i for i in np.argsort(-area, kind="stable") if not wants_support[i]]
    order += [i for i in range(n) if wants_support[i]]
    objects: list = []
    floor_objs: list = []
    for i in order:
        label, (parts, accent) = int(labels[i]), shapes[i]
        cls = _BY_ID[label]
        half = _half_extent(parts)
        got, support = None, None
        if wants_support[i]:
            sups = [o for o in floor_objs if o.label in _SUPPORT_IDS[label]]
            if sups:
                got = _place_on_support(rng, half, sups, objects, cfg)
            if got is not None:
                center, yaw, support = got
        if got is None:
            got = _place_on_floor(rng, half, cls.against_wall and bool(wall_first[i]), walls, floor_objs, room, cfg)
            if got is None and cls.against_wall and wall_first[i]:
                got = _place_on_floor(rng, half, False, walls, floor_objs, room, cfg)
            if got is None:
                continue
            center, yaw = got
        obj = LongtailObject(label=label, instance=len(objects), center=(float(center[0]), float(center[1])),
                             yaw=float(yaw), base_z=0.0 if support is None else support.top_surface()[2],
                             parts=parts, accent=accent, support=None if support is None else support.instance)
        objects.append(obj)
        if support is None:
            floor_objs.append(obj)
    return room, walls, objects


# ---------------------------------------------------------------------------------------- sampling


def _cylinder_surface(rng, radius: float, height: float, spacing: float) -> np.ndarray:
    """Points on a vertical cylinder's side and top (no bottom), centred at the origin, base at z = 0:
    float64 [M, 3]."""
    a, b = _face_grid(rng, 2.0 * np.pi * radius, height, spacing)
    ang = a / radius
    side = np.stack([radius * np.cos(ang), radius * np.sin(ang), b], 1)
    a, b = _face_grid(rng, 2.0 * radius, 2.0 * radius, spacing)
    a, b = a - radius, b - radius
    keep = a * a + b * b <= radius * radius
    top = np.stack([a[keep], b[keep], np.full(int(keep.sum()), height)], 1)
    return np.concatenate([side, top])


def _world_parts(obj: LongtailObject) -> np.ndarray:
    """The object's parts in world coordinates: float64 [P, 8] (kind, x, y, z0, sx, sy, sz, yaw)."""
    w = np.empty((len(obj.parts), 8))
    w[:, 0] = obj.parts[:, 0]
    w[:, 1:3] = np.asarray(obj.center) + _rotate(obj.parts[:, 1:3], obj.yaw)
    w[:, 3] = obj.base_z + obj.parts[:, 3]
    w[:, 4:7] = obj.parts[:, 4:7]
    w[:, 7] = obj.yaw
    return w


def _part_points(rng, part: np.ndarray, spacing: float) -> np.ndarray:
    """Surface points of one world part row (see ``_world_parts``): float64 [M, 3]."""
    kind, x, y, z0, sx, sy, sz, yaw = part
    if kind == CYLINDER:
        pts = _cylinder_surface(rng, sx / 2.0, sz, spacing)
        pts[:, 0] += x
        pts[:, 1] += y
    else:
        pts = _box_surface(rng, ToyBox(label=-1, instance=-1, center=(x, y, 0.0), size=(sx, sy, sz), yaw=yaw), spacing)
    pts[:, 2] += z0
    return pts


def _hidden(points: np.ndarray, owner: np.ndarray, parts: np.ndarray, tol: float) -> np.ndarray:
    """bool [N]: points [N, 3] lying inside (grown by ``tol``) a world part [P, 8] other than their own
    (``owner`` [N] part index, < 0 for floor and walls)."""
    order = np.argsort(points[:, 0], kind="stable")
    xs = points[order, 0]
    hidden = np.zeros(len(points), dtype=bool)
    for j, (kind, x, y, z0, sx, sy, sz, yaw) in enumerate(parts):
        if kind == CYLINDER:
            ex = ey = sx / 2.0
        else:
            ex, ey = _extent(np.array([sx / 2.0, sy / 2.0]), np.array([yaw]))[0]
        lo, hi = np.searchsorted(xs, [x - ex - tol, x + ex + tol])
        idx = order[lo:hi]
        p = points[idx]
        near = (np.abs(p[:, 1] - y) <= ey + tol) & (p[:, 2] >= z0 - tol) & (p[:, 2] <= z0 + sz + tol)
        idx, p = idx[near], p[near]
        dx, dy = p[:, 0] - x, p[:, 1] - y
        if kind == CYLINDER:
            inside = dx * dx + dy * dy <= (sx / 2.0 + tol) ** 2
        else:
            c, s = np.cos(yaw), np.sin(yaw)
            inside = (np.abs(dx * c + dy * s) <= sx / 2.0 + tol) & (np.abs(-dx * s + dy * c) <= sy / 2.0 + tol)
        inside &= owner[idx] != j
        hidden[idx[inside]] = True
    return hidden


def _colors(rng, owner_part: np.ndarray, objects: list) -> np.ndarray:
    """uint8 [N, 3] for points owned by ``owner_part`` [N] (-1 floor, -2 walls, else the index of a part of
    ``objects``, in order): a material per object (accent parts their own), floor and walls one each, jittered."""
    palette = [_MATERIALS[rng.choice(_FLOOR_MATERIALS)], _MATERIALS[rng.choice(_WALL_MATERIALS)]]
    part_color = []
    for obj in objects:
        cls = _BY_ID[obj.label]
        main = np.array(_MATERIALS[cls.materials[int(rng.integers(len(cls.materials)))]], float)
        acc_names = cls.accents or cls.materials
        acc = np.array(_MATERIALS[acc_names[int(rng.integers(len(acc_names)))]], float)
        shift = rng.normal(0.0, 10.0, 3)
        part_color += [(acc if a else main) + shift for a in obj.accent]
    table = np.array(palette + part_color, dtype=np.float64).reshape(-1, 3)
    # owner_part: -2 wall, -1 floor, else part index -> rows 1, 0, 2 + index
    row = np.where(owner_part >= 0, owner_part + 2, np.where(owner_part == -1, 0, 1))
    rgb = table[row] + rng.normal(0.0, 6.0, (len(row), 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def longtail_scene_name(seed: int) -> str:
    """The scene name of a seed: ``longtail_<seed, 5 digits>``."""
    return f"longtail_{seed:05d}"


def _check_config(seed, config: LongtailSceneConfig) -> None:
    """InputError for a negative / non-int seed or a config the generator cannot honour."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(None, f"longtail seed must be a non-negative int, got {seed!r}")
    if not 0.0 < config.wall_height <= LONGTAIL_MAX_HEIGHT:
        raise InputError(None, f"wall_height must be in (0, {LONGTAIL_MAX_HEIGHT}] m, got {config.wall_height}")
    lo, hi = config.room_size
    if not 2.0 * config.wall_gap < lo <= hi:
        raise InputError(None, f"bad room_size range {config.room_size}")


def _object_points(rng, objects: list, config: LongtailSceneConfig) -> tuple:
    """Surface points of all objects' parts, hidden ones removed.

    Returns (points float64 [M, 3], owner_part int64 [M] index into the parts, world_parts float64 [P, 8]
    (see ``_world_parts``), part_object int64 [P] instance id of each part).
    """
    world = [_world_parts(o) for o in objects]
    part_obj = np.concatenate([np.full(len(w), o.instance, np.int64) for o, w in zip(objects, world)] +
                              [np.zeros(0, np.int64)])
    world_all = np.concatenate(world) if world else np.zeros((0, 8))
    pts = [np.zeros((0, 3))] + [_part_points(rng, part, config.point_spacing) for part in world_all]
    owner = np.repeat(np.arange(len(world_all), dtype=np.int64), [len(p) for p in pts[1:]])
    points = np.concatenate(pts)
    keep = ~_hidden(points, owner, world_all, config.hidden_tolerance)
    return points[keep], owner[keep], world_all, part_obj


def generate_longtail_scene_with_objects(seed: int, config: LongtailSceneConfig = LongtailSceneConfig()) -> tuple:
    """Draw one long-tail scene and the objects it was built from.

    seed:   non-negative int; the same seed (and config) gives bit-identical output.
    config: LongtailSceneConfig.
    Returns (Scene, list[LongtailObject]): the Scene has points float32 [N, 3] (metres), colors uint8 [N, 3]
    (None if ``config.colors`` is False), labels int64 [N] (0 floor, 1 wall, 2..45 object classes),
    instances int64 [N] (-1 floor and walls, 0..K-1 objects, equal to ``LongtailObject.instance``),
    name ``longtail_<seed>``.
    """
    _check_config(seed, config)
    rng = np.random.default_rng(seed)
    room, walls, objects = sample_longtail_layout(rng, config)
    obj_pts, obj_owner, world_all, part_obj = _object_points(rng, objects, config)
    spacing, hgt = config.point_spacing, config.wall_height
    a, b = _face_grid(rng, room[0], room[1], spacing)
    stuff = [np.stack([a, b, np.zeros_like(a)], 1)]
    stuff_owner = [np.full(len(a), -1, np.int64)]
    for w in walls:
        length = room[1] if w < 2 else room[0]
        a, b = _face_grid(rng, length, hgt, spacing)
        at = np.full_like(a, room[w // 2] if w % 2 else 0.0)
        stuff.append(np.stack([at, a, b], 1) if w < 2 else np.stack([a, at, b], 1))
        stuff_owner.append(np.full(len(a), -2, np.int64))
    stuff, stuff_owner = np.concatenate(stuff), np.concatenate(stuff_owner)
    keep = ~_hidden(stuff, stuff_owner, world_all, config.hidden_tolerance)
    points = np.concatenate([obj_pts, stuff[keep]])
    owner_part = np.concatenate([obj_owner, stuff_owner[keep]])
    points = points + rng.normal(0.0, config.noise, points.shape)
    instances = np.full(len(points), NO_INSTANCE, np.int64)
    instances[: len(obj_owner)] = part_obj[obj_owner]
    obj_labels = np.array([o.label for o in objects], dtype=np.int64)
    labels = np.where(owner_part == -1, LONGTAIL_FLOOR_LABEL, LONGTAIL_WALL_LABEL).astype(np.int64)
    labels[: len(obj_owner)] = obj_labels[instances[: len(obj_owner)]]
    colors = _colors(rng, owner_part, objects) if config.colors else None
    scene = Scene(points=points.astype(np.float32), colors=colors, labels=labels, instances=instances,
                  name=longtail_scene_name(int(seed)), source=f"longtail seed {seed}")
    return scene, objects


def generate_longtail_scene(seed: int, config: LongtailSceneConfig = LongtailSceneConfig()) -> Scene:
    """One long-tail scene (see ``generate_longtail_scene_with_objects`` for the arrays and units)."""
    return generate_longtail_scene_with_objects(seed, config)[0]


# ------------------------------------------------------------------------------------- class splits


_GROUPS = ("head", "common", "tail")


def class_frequency_splits(point_counts: dict) -> dict:
    """Head / common / tail thirds of classes by total point count.

    point_counts: dict[int, int] class id -> number of points (include zero-count classes to place them).
    Returns dict[int, str]: classes sorted by count descending (ties: smaller id first) and cut into three
    near-equal consecutive thirds ("head" gets the extra class first, then "common").
    """
    ids = sorted(point_counts, key=lambda k: (-point_counts[k], k))
    out = {}
    for group, members in zip(_GROUPS, np.array_split(np.asarray(ids, dtype=np.int64), 3)):
        out.update({int(k): group for k in members})
    return out


def longtail_point_counts(seeds, config: LongtailSceneConfig = LongtailSceneConfig()) -> dict:
    """Total points of each object class over the scenes of ``seeds``: dict[int, int] over every object
    class id (zero if absent)."""
    k = max(LONGTAIL_CLASS_NAMES) + 1
    counts = np.zeros(k, dtype=np.int64)
    for seed in seeds:
        # the object points are drawn before the floor and walls, which hide none of them, so this
        # counts exactly the object points of ``generate_longtail_scene(seed, config)``
        _check_config(seed, config)
        rng = np.random.default_rng(int(seed))
        _, _, objects = sample_longtail_layout(rng, config)
        _, owner, _, part_obj = _object_points(rng, objects, config)
        if objects:
            labels = np.array([o.label for o in objects], dtype=np.int64)
            counts += np.bincount(labels[part_obj[owner]], minlength=k)
    return {c: int(counts[c]) for c in LONGTAIL_OBJECT_CLASS_IDS}
