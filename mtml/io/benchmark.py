"""The ScanNet instance-segmentation benchmark layout: ground-truth id files and prediction files with masks.

* Ground truth ``<scene>.txt``: one integer per line and vertex, ``label_id * 1000 + instance`` (0: unannotated).
* Predictions ``<scene>.txt``: one line per instance, ``<mask path> <label id> <confidence>``, the mask path relative
  to the prediction file's folder (conventionally ``pred_mask/<scene>_NNN.txt``); a mask file holds one integer per
  line and vertex, non-zero meaning "in the instance".

Readers raise InputError naming the offending file (and line) for anything malformed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np

from mtml.errors import InputError
from mtml.io.atomic import atomic_write_text
from mtml.scene import ScenePredictions

#: Folder, beside the prediction files, that ``write_scene_predictions`` puts masks in.
PRED_MASK_DIR = "pred_mask"
#: The official script's default result file name; never taken for a prediction file.
OFFICIAL_RESULT_NAME = "semantic_instance_evaluation.txt"


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, expected a {what}") from None
    except UnicodeDecodeError:
        raise InputError(path, f"not a text file (expected a {what})") from None
    except OSError as err:
        raise InputError(path, f"cannot read {what}: {err.strerror or err}") from None


def _read_int_lines(path: Path, what: str) -> np.ndarray:
    """int64 [L]: one integer per line of ``path``; InputError naming the first line that is not one."""
    lines = _read_text(path, what).splitlines()
    try:
        return np.array(lines, dtype=np.int64).reshape(-1)
    except (ValueError, OverflowError):
        pass
    for number, line in enumerate(lines, start=1):
        try:
            int(line)
        except ValueError:
            raise InputError(path, f"line {number}: expected an integer, got {line!r}") from None
    raise InputError(path, "expected one integer per line")


def read_gt_ids(path: str | os.PathLike) -> np.ndarray:
    """Read a ground-truth file: int64 [N], ``label_id * 1000 + instance`` per vertex.

    InputError (naming the file) when it is missing, empty or has a line that is not an integer.
    """
    path = Path(path)
    ids = _read_int_lines(path, "ground-truth file")
    if ids.size == 0:
        raise InputError(path, "empty ground-truth file (no vertices)")
    return ids


def read_mask(path: str | os.PathLike, num_vertices: int | None = None) -> np.ndarray:
    """Read one mask file: bool [N], True where the line is non-zero.

    ``num_vertices``: the expected N; InputError (naming the file) when the line count differs, the file is
    missing, or a line is not an integer.
    """
    path = Path(path)
    values = _read_int_lines(path, "mask file")
    if num_vertices is not None and values.size != num_vertices:
        raise InputError(path, f"expected {num_vertices} lines (one per vertex), got {values.size}")
    return values != 0


def read_prediction_file(
    path: str | os.PathLike,
    num_vertices: int | None,
    class_ids: Collection[int] | None = None,
) -> ScenePredictions:
    """Read one scene's prediction file and its masks.

    ``path``: ``<scene>.txt`` with lines ``<mask path> <label id> <confidence>`` (mask paths relative to this file's
    folder and inside it; blank lines are skipped). ``num_vertices``: N every mask must have (None: take it from the
    first mask; all must agree). ``class_ids``: when given, lines whose label is not one of them are skipped without
    reading their mask, as the official script does (the evaluator would drop them anyway).
    Returns ScenePredictions (masks bool [P, N], label_ids int64 [P], scores float64 [P]) in file order. The label
    field is read as ``int(float(text))`` like the official script, and a mask path listed twice is one prediction,
    at its first line's position with its last line's label and confidence (the official script keys them by path).
    InputError naming the file (and line) for a missing file, a malformed line, a non-numeric label or confidence,
    an absolute or escaping mask path, and for masks that are missing, malformed or of the wrong length.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    keep = None if class_ids is None else {int(c) for c in class_ids}
    entries: dict[Path, tuple[int, float, int]] = {}
    for number, line in enumerate(_read_text(path, "prediction file").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise InputError(path, f"line {number}: expected '<mask path> <label id> <confidence>', got {line!r}")
        rel, label_text, conf_text = parts
        if os.path.isabs(rel):
            raise InputError(path, f"line {number}: mask path {rel!r} must be relative to the prediction file's folder")
        mask_file = Path(os.path.abspath(folder / rel))
        if not mask_file.is_relative_to(folder):
            raise InputError(path, f"line {number}: mask path {rel!r} points outside the prediction folder")
        try:
            label = int(float(label_text))
        except (ValueError, OverflowError):
            raise InputError(path, f"line {number}: label id {label_text!r} is not a number") from None
        try:
            conf = float(conf_text)
        except ValueError:
            raise InputError(path, f"line {number}: confidence {conf_text!r} is not a number") from None
        if math.isnan(conf):
            raise InputError(path, f"line {number}: confidence is nan")
        entries[mask_file] = (label, conf, number)

    masks: list[np.ndarray] = []
    labels: list[int] = []
    scores: list[float] = []
    for mask_file, (label, conf, number) in entries.items():
        if keep is not None and label not in keep:
            continue
        try:
            mask = read_mask(mask_file, num_vertices)
        except InputError as err:
            raise InputError(err.source, f"{err.problem} (listed on line {number} of {path})") from None
        if num_vertices is None:
            num_vertices = mask.size
        masks.append(mask)
        labels.append(label)
        scores.append(conf)
    if not masks:
        return ScenePredictions.empty(num_vertices or 0)
    return ScenePredictions(np.stack(masks), np.array(labels, np.int64), np.array(scores, np.float64))


def _mask_text(mask: np.ndarray) -> str:
    """'0'/'1' per vertex, one per line."""
    buf = np.full(2 * mask.size, ord("\n"), dtype=np.uint8)
    buf[0::2] = mask.astype(np.uint8) + ord("0")
    return buf.tobytes().decode("ascii")


def write_scene_predictions(
    out_dir: str | os.PathLike,
    scene_name: str,
    masks: np.ndarray,
    label_ids: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
) -> Path:
    """Write one scene's predictions in the benchmark layout, every file atomically.

    ``masks``: bool (or 0/1) [P, N]; ``label_ids``: int [P]; ``scores``: float [P]. Writes
    ``out_dir/pred_mask/<scene>_NNN.txt`` (one 0/1 per line, NNN = 000, 001, ...) and then ``out_dir/<scene>.txt``
    listing them with label and confidence (``repr`` of the float, so it reads back exactly). Returns the path of
    ``<scene>.txt``. ValueError for a scene name with whitespace or a path separator, or inconsistent shapes.
    """
    if not scene_name or any(ch.isspace() for ch in scene_name) or "/" in scene_name or os.sep in scene_name:
        raise ValueError(f"scene name {scene_name!r} must be non-empty, without whitespace or path separators")
    preds = ScenePredictions(masks, label_ids, scores)
    out_dir = Path(out_dir)
    lines = []
    for index, (mask, label, score) in enumerate(zip(preds.masks, preds.label_ids, preds.scores)):
        rel = f"{PRED_MASK_DIR}/{scene_name}_{index:03d}.txt"
        atomic_write_text(out_dir / rel, _mask_text(mask))
        lines.append(f"{rel} {int(label)} {float(score)!r}\n")
    scene_file = out_dir / f"{scene_name}.txt"
    atomic_write_text(scene_file, "".join(lines))
    return scene_file


def list_scene_files(
    folder: str | os.PathLike, what: str, exclude: Iterable[str | os.PathLike] = ()
) -> dict[str, Path]:
    """Scene name -> path of every ``<scene>.txt`` directly in ``folder`` (sorted by name), leaving out
    ``OFFICIAL_RESULT_NAME`` and the paths in ``exclude``. ``what`` names the folder in the InputError raised
    when it does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, f"no such {what} folder")
    skip = {os.path.abspath(p) for p in exclude}
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.suffix == ".txt" and p.is_file() and p.name != OFFICIAL_RESULT_NAME and os.path.abspath(p) not in skip
    }


def pair_benchmark_scenes(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    require_all_gt: bool = False,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[tuple[str, Path, Path]]:
    """Match prediction files to ground-truth files by scene name: ``[(scene, pred_file, gt_file)]`` sorted by scene.

    As the official script: every ``pred_dir/<scene>.txt`` (less ``OFFICIAL_RESULT_NAME`` and ``exclude``) is
    evaluated, InputError if there is none or if one has no ``gt_dir/<scene>.txt``. Ground-truth scenes without a
    prediction file are left out, unless ``require_all_gt`` (then InputError naming the first of them).
    """
    gt_files = list_scene_files(gt_dir, "ground-truth")
    pred_files = list_scene_files(pred_dir, "prediction", exclude)
    if not pred_files:
        raise InputError(pred_dir, "no prediction files (<scene>.txt) found")
    for scene, pred_file in pred_files.items():
        if scene not in gt_files:
            raise InputError(pred_file, f"no ground-truth file {Path(gt_dir) / pred_file.name} for this scene")
    if require_all_gt:
        missing = [scene for scene in gt_files if scene not in pred_files]
        if missing:
            raise InputError(
                Path(pred_dir) / f"{missing[0]}.txt",
                f"no prediction file for ground-truth scene {missing[0]} ({len(missing)} scene(s) missing)",
            )
    return [(scene, pred_files[scene], gt_files[scene]) for scene in pred_files]


def load_benchmark_scene(
    pred_file: str | os.PathLike, gt_file: str | os.PathLike, class_ids: Collection[int] | None = None
) -> tuple[np.ndarray, ScenePredictions]:
    """Read one scene: ``(gt_ids int64 [N], ScenePredictions over the same N vertices)``; ``class_ids`` as in
    ``read_prediction_file``."""
    gt_ids = read_gt_ids(gt_file)
    return gt_ids, read_prediction_file(pred_file, gt_ids.size, class_ids)
