"""Writing segmentation results for people: an instance-coloured PLY and a JSON summary per scene."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Mapping

import numpy as np

from mtml.errors import InputError
from mtml.io.atomic import atomic_write_text
from mtml.io.ply import read_ply, write_ply

NO_INSTANCE_COLOR = (160, 160, 160)


def instance_colors(num_instances: int) -> np.ndarray:
    """uint8 [K, 3]: well separated, deterministic colours (golden-ratio hue steps)."""
    hues = (np.arange(num_instances) * 0.618033988749895) % 1.0
    rgb = [colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues]
    return (np.asarray(rgb, dtype=np.float64).reshape(-1, 3) * 255).round().astype(np.uint8)


def instance_summary(points: np.ndarray, point_instance: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                     class_names: Mapping[int, str]) -> list[dict]:
    """One dict per instance: id, label, label_name, score, num_points, bbox_min, bbox_max (metres).

    points [N, 3]; point_instance int64 [N] (-1 = none); labels int64 [K]; scores float [K].
    """
    out = []
    for k in range(len(labels)):
        pts = points[point_instance == k]
        if len(pts) == 0:
            continue
        out.append({
            "id": int(k), "label": int(labels[k]), "label_name": class_names.get(int(labels[k]), str(int(labels[k]))),
            "score": round(float(scores[k]), 6), "num_points": int(len(pts)),
            "bbox_min": [round(float(v), 4) for v in pts.min(axis=0)],
            "bbox_max": [round(float(v), 4) for v in pts.max(axis=0)],
        })
    return out


def class_colors(label_ids: np.ndarray) -> np.ndarray:
    """uint8 [N, 3]: a fixed colour per semantic class id (the same id gets the same colour in every scene)."""
    label_ids = np.asarray(label_ids, dtype=np.int64)
    if label_ids.size == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    return instance_colors(int(label_ids.max()) + 1)[np.maximum(label_ids, 0)]


def write_instance_outputs(out_dir: str | Path, name: str, points: np.ndarray, point_instance: np.ndarray,
                           point_label: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                           class_names: Mapping[int, str], meta: dict,
                           point_semantic: np.ndarray | None = None) -> tuple[Path, Path]:
    """Write ``<name>_instances.ply`` (``write_instance_ply``) and ``<name>_instances.json``
    (``write_instance_summary``), each atomically. Returns both paths."""
    ply_path = write_instance_ply(out_dir, name, points, point_instance, point_label, len(labels), point_semantic)
    json_path = write_instance_summary(out_dir, name, points, point_instance, labels, scores, class_names, meta)
    return ply_path, json_path


def write_instance_ply(out_dir: str | Path, name: str, points: np.ndarray, point_instance: np.ndarray,
                       point_label: np.ndarray, num_instances: int, point_semantic: np.ndarray | None = None) -> Path:
    """Write ``<name>_instances.ply`` atomically: x y z, instance colour, int ``instance`` (-1 = none), int ``label``
    (the labels the instances were built on), and int ``semantic`` (the semantic head's prediction) when
    ``point_semantic`` is given. points [N, 3] metres; point_instance, point_label, point_semantic int64 [N];
    num_instances: K, the instance count (the colour palette's size). Returns the path."""
    palette = instance_colors(num_instances)
    colors = np.tile(np.asarray(NO_INSTANCE_COLOR, dtype=np.uint8), (len(points), 1))
    has = point_instance >= 0
    colors[has] = palette[point_instance[has]]
    props = {"instance": point_instance.astype(np.int64), "label": point_label.astype(np.int64)}
    if point_semantic is not None:
        props["semantic"] = point_semantic.astype(np.int64)
    return write_ply(Path(out_dir) / f"{name}_instances.ply", points, colors=colors, int_props=props)


def write_instance_summary(out_dir: str | Path, name: str, points: np.ndarray, point_instance: np.ndarray,
                           labels: np.ndarray, scores: np.ndarray, class_names: Mapping[int, str],
                           meta: dict) -> Path:
    """Write ``<name>_instances.json`` atomically: ``{"instances": instance_summary(...), **meta}``. points [N, 3];
    point_instance int64 [N]; labels int64 [K]; scores float [K]. Returns the path."""
    summary = {"instances": instance_summary(points, point_instance, labels, scores, class_names), **meta}
    json_path = Path(out_dir) / f"{name}_instances.json"
    atomic_write_text(json_path, json.dumps(summary, indent=2) + "\n")
    return json_path


def read_instance_outputs(ply_path: str | Path, json_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read what ``write_instance_outputs`` wrote.

    Returns (masks bool [K, N] over the PLY's points, labels int64 [K], scores float64 [K]), one row per
    instance listed in the JSON. InputError names the file when either is missing or inconsistent.
    """
    scene = read_ply(ply_path)
    if scene.instances is None:
        raise InputError(ply_path, "no 'instance' vertex property (not an mtml-infer output?)")
    try:
        listed = json.loads(Path(json_path).read_text(encoding="utf-8"))["instances"]
    except FileNotFoundError:
        raise InputError(json_path, "no such file") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(json_path, f"not an mtml-infer summary ({type(err).__name__}: {err})") from None
    ids = np.asarray([int(i["id"]) for i in listed], dtype=np.int64)
    masks = scene.instances[None, :] == ids[:, None]
    empty = ids[~masks.any(axis=1)]
    if len(empty):
        raise InputError(json_path, f"instances {empty[:5].tolist()} have no points in {ply_path}")
    labels = np.asarray([int(i["label"]) for i in listed], dtype=np.int64)
    scores = np.asarray([float(i["score"]) for i in listed], dtype=np.float64)
    return masks, labels, scores


def write_semantic_outputs(out_dir: str | Path, name: str, points: np.ndarray, point_semantic: np.ndarray,
                           class_names: Mapping[int, str], picture: bool = True) -> list[Path]:
    """Write ``<name>_semantic.ply`` (``write_semantic_ply``) and, with ``picture``, ``<name>_semantic.png``
    (``write_semantic_picture``), atomically. Returns the paths written."""
    paths = [write_semantic_ply(out_dir, name, points, point_semantic)]
    if picture:
        paths.append(write_semantic_picture(out_dir, name, points, point_semantic, class_names))
    return paths


def write_semantic_ply(out_dir: str | Path, name: str, points: np.ndarray, point_semantic: np.ndarray) -> Path:
    """Write ``<name>_semantic.ply`` atomically: x y z, one colour per class (``class_colors``), int ``semantic``.
    points [N, 3] metres; point_semantic int64 [N] label ids. Returns the path."""
    return write_ply(Path(out_dir) / f"{name}_semantic.ply", points, colors=class_colors(point_semantic),
                     int_props={"semantic": point_semantic.astype(np.int64)})


def write_semantic_picture(out_dir: str | Path, name: str, points: np.ndarray, point_semantic: np.ndarray,
                           class_names: Mapping[int, str]) -> Path:
    """Write ``<name>_semantic.png`` atomically: a top view in the class colours with a legend of the classes
    present. points [N, 3] metres; point_semantic int64 [N] label ids. Returns the path."""
    present = np.unique(point_semantic)
    legend = {class_names.get(int(c), str(int(c))): class_colors(present)[i] for i, c in enumerate(present)}
    return write_top_view(Path(out_dir) / f"{name}_semantic.png", points, class_colors(point_semantic),
                          f"{name}: semantic labels (top view)", legend)


def write_instance_picture(path: str | Path, points: np.ndarray, point_instance: np.ndarray, title: str = "") -> Path:
    """A top-down PNG of the instances (x-y scatter, one colour per instance, grey for none), written atomically.

    points [N, 3] metres; point_instance int64 [N] (-1 = none). At most 200k points are drawn (a fixed subsample).
    """
    num = int(point_instance.max()) + 1 if len(point_instance) and point_instance.max() >= 0 else 0
    colors = np.tile(np.asarray(NO_INSTANCE_COLOR, dtype=np.uint8), (len(points), 1))
    has = point_instance >= 0
    colors[has] = instance_colors(num)[point_instance[has]]
    return write_top_view(path, points, colors, title or f"{num} instances (top view)")


def write_top_view(path: str | Path, points: np.ndarray, colors: np.ndarray, title: str,
                   legend: Mapping[str, np.ndarray] | None = None) -> Path:
    """A top-down PNG (x-y scatter) of points with colours uint8 [N, 3], written atomically; ``legend`` maps
    names to uint8 [3] colours. At most 200k points are drawn (a fixed subsample)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtml.io.atomic import atomic_path

    if len(points) > 200_000:
        keep = np.random.default_rng(0).choice(len(points), 200_000, replace=False)
        points, colors = points[keep], colors[keep]
    order = np.argsort(points[:, 2], kind="stable")  # draw low points first so tops stay visible
    pts, colors = points[order], np.asarray(colors, dtype=np.float64)[order] / 255.0
    span = np.ptp(points[:, :2], axis=0) if len(points) else np.ones(2)
    fig, ax = plt.subplots(figsize=(7, 7 * max(span[1], 1e-3) / max(span[0], 1e-3) if span[0] > 0 else 7))
    ax.scatter(pts[:, 0], pts[:, 1], c=colors, s=1.0, linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)"), ax.set_ylabel("y (m)")
    ax.set_title(title)
    if legend:
        from matplotlib.patches import Patch

        handles = [Patch(color=np.asarray(c, dtype=np.float64) / 255.0, label=n) for n, c in legend.items()]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
