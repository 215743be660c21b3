"""Referring segmentation metrics (ScanRefer protocol, as LESS reports them): mIoU, Acc@0.25, Acc@0.5, time per scan.

Per description, IoU = |pred & target| / |pred | target| over the points (or voxels) of its scan; IoU is 1 when both
masks are empty (nothing to find, nothing found) and 0 when only one is. Over descriptions:

* mIoU: the mean IoU (every description counts once, whatever its object's size);
* Acc@k: the share of descriptions with IoU >= k (inclusive, as ScanRefer's ``iou >= 0.25`` / ``iou >= 0.5``);
* time per scan: mean inference seconds per scan. Several descriptions of one scan may share one backbone pass:
  pass ``scan`` ids to ``update`` and the seconds given for that scan are summed before averaging over scans.

All shares are fractions in [0, 1]; ``table()`` prints percentages.
"""

from __future__ import annotations

import itertools

import numpy as np

THRESHOLDS = (0.25, 0.5)


def _as_bool(mask, what: str) -> np.ndarray:
    if hasattr(mask, "detach"):  # a torch tensor
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.ndim != 1:
        raise ValueError(f"{what} mask must be 1-D, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def mask_iou(pred, target) -> float:
    """IoU of two bool masks [N] (numpy arrays or torch tensors; any values, nonzero = in the mask).

    1.0 when both are empty. Raises ValueError when the shapes differ.
    """
    p, t = _as_bool(pred, "predicted"), _as_bool(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"predicted mask has {p.shape[0]} entries but target has {t.shape[0]}")
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def box_of(points, mask) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box of the masked points: points [N, 3] (metres), bool mask [N] -> (min float64 [3],
    max float64 [3]). Raises ValueError for an empty mask."""
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    pts = np.asarray(points, dtype=np.float64)
    m = _as_bool(mask, "box")
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] != m.shape[0]:
        raise ValueError(f"box_of: points must be [N, 3] with a mask [N], got {pts.shape} and {m.shape}")
    if not m.any():
        raise ValueError("box_of: the mask selects no point")
    sel = pts[m]
    return sel.min(0), sel.max(0)


class ReferringScores:
    """Accumulates referring segmentation results over descriptions (module docstring for the definitions)."""

    def __init__(self):
        self.ious: list[float] = []
        self._seconds: dict = {}
        self._anonymous = itertools.count()

    def update(self, pred_mask, target_mask, seconds: float | None = None, scan=None) -> float:
        """Add one description: predicted and target bool masks [N] over its scan's points; ``seconds`` the inference
        time to add to ``scan`` (any hashable id; None = a scan of its own). Returns this description's IoU."""
        iou = mask_iou(pred_mask, target_mask)
        self.ious.append(iou)
        if seconds is not None:
            key = ("anonymous", next(self._anonymous)) if scan is None else ("scan", scan)
            self._seconds[key] = self._seconds.get(key, 0.0) + float(seconds)
        return iou

    def results(self) -> dict:
        """{"descriptions": n, "miou", "acc@0.25", "acc@0.5" (fractions; nan with no description),
        "seconds_per_scan" (nan without timings), "timed_scans"}."""
        ious = np.asarray(self.ious, dtype=np.float64)
        out = {"descriptions": len(ious), "miou": float(ious.mean()) if len(ious) else float("nan")}
        for k in THRESHOLDS:
            out[f"acc@{k}"] = float((ious >= k).mean()) if len(ious) else float("nan")
        times = list(self._seconds.values())
        out["seconds_per_scan"] = float(np.mean(times)) if times else float("nan")
        out["timed_scans"] = len(times)
        return out

    def to_dict(self) -> dict:
        """``results()`` plus the per-description IoUs (list, in update order): JSON-friendly."""
        return {**self.results(), "ious": [float(v) for v in self.ious]}

    def table(self) -> str:
        """A markdown table: descriptions, mIoU, Acc@0.25, Acc@0.5 (percent) and ms per scan."""
        r = self.results()
        ms = "-" if not r["timed_scans"] else f"{1000 * r['seconds_per_scan']:.1f}"
        return ("| descriptions | mIoU | Acc@0.25 | Acc@0.5 | ms / scan |\n|---:|---:|---:|---:|---:|\n"
                f"| {r['descriptions']} | {100 * r['miou']:.2f} | {100 * r['acc@0.25']:.2f} | "
                f"{100 * r['acc@0.5']:.2f} | {ms} |")
