"""Evaluating a model or a baseline on scenes of the toy benchmark (MTML Table 1)."""

from __future__ import annotations

from typing import Iterable, Optional

from mtml.data.registry import class_set, dataset
from mtml.data.toy import ToySceneConfig
from mtml.eval.instance_ap import InstanceAPResult
from mtml.eval.scenes import Segmenter, evaluate_scenes


def evaluate_toy(segment: Segmenter, seeds: Iterable[int], toy_cfg: Optional[ToySceneConfig] = None,
                 progress: bool = True, desc: str = "eval") -> InstanceAPResult:
    """AP / AP50 / AP25 of ``segment`` over the toy scenes with the given seeds (point-level, ScanNet rules)."""
    make_scene = dataset("toy").make_scene
    seeds = list(seeds)
    return evaluate_scenes(segment, (make_scene(s, toy_cfg) for s in seeds), class_set("toy"),
                           progress=progress, desc=desc, total=len(seeds))
