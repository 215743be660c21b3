"""Speed of the vectorised ScanNet instance evaluator against a per-mask loop implementation.

100 synthetic scenes of ~50k vertices, ~20 gt instances and ~30 predictions each (the ScanNet val set has 312
scenes of ~10k-300k vertices). The per-mask loop is the literal restatement of the official script that
tests/test_instance_ap.py checks the evaluator against (one mask, one gt instance at a time, as the official
``assign_instances_for_scan`` / ``evaluate_matches`` do), loaded from there so the two stay one implementation.

Run: ``PYTHONPATH=. python -m pytest benchmarks/bench_instance_ap.py -q -s`` (prints the speed ratio).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mtml.data.registry import class_set
from mtml.eval.instance_ap import evaluate_instances
from mtml.scene import ScenePredictions

NUM_SCENES = 100
NUM_VERTICES = 50_000
NUM_GT = 20
NUM_PRED = 30


def _load_reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "test_instance_ap.py"
    spec = importlib.util.spec_from_file_location("_instance_ap_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module.reference_average_precisions


def synthetic_scene(rng: np.random.Generator, class_ids, chair_share: float = 0.0) -> tuple:
    """(gt_ids int64 [N], ScenePredictions [~30, N]): contiguous gt instances over ~75% of the vertices, the rest
    unlabelled or non-class; predictions are shifted / resized copies of most instances, some duplicates, some with
    other labels, and random false positives. ``chair_share``: fraction of instances forced to be chairs (5), the
    rest uniform over ``class_ids``."""
    n = NUM_VERTICES
    gt = np.zeros(n, np.int64)
    cuts = np.sort(rng.choice(np.arange(1, n), size=2 * NUM_GT + 9, replace=False))
    segments = list(zip(np.r_[0, cuts], np.r_[cuts, n]))
    rng.shuffle(segments)
    instances = []
    for k, (a, b) in enumerate(segments):
        if k < NUM_GT:
            label = 5 if rng.random() < chair_share else int(rng.choice(class_ids))
            gt[a:b] = label * 1000 + k + 1
            instances.append((a, b, label))
        elif k < NUM_GT + 6:
            gt[a:b] = int(rng.choice([1, 2])) * 1000 + k + 1  # wall / floor: not instance classes
    masks, labels = [], []
    for a, b, label in instances:
        if len(masks) >= NUM_PRED - 4 or rng.random() < 0.1:
            continue  # a miss
        size = b - a
        shift = int(rng.normal(0, 0.15 * size))
        grow = int(rng.normal(0, 0.15 * size))
        mask = np.zeros(n, bool)
        mask[max(0, a + shift) : min(n, b + shift + grow)] = True
        masks.append(mask)
        labels.append(label if rng.random() < 0.85 else int(rng.choice(class_ids)))
        if rng.random() < 0.2 and len(masks) < NUM_PRED - 4:  # a duplicate
            masks.append(np.roll(mask, int(rng.integers(-size // 4, size // 4 + 1))))
            labels.append(label)
    while len(masks) < NUM_PRED:  # false positives
        a = int(rng.integers(0, n - 2000))
        mask = np.zeros(n, bool)
        mask[a : a + int(rng.integers(50, 2000))] = True
        masks.append(mask)
        labels.append(int(rng.choice(class_ids)))
    scores = np.round(rng.random(len(masks)), 2)
    return gt, ScenePredictions(np.stack(masks), np.array(labels), scores)


#: Label mixes: uniform over the 18 classes, or ScanNet-like with many chairs (the per-mask loop compares each
#: prediction with every gt instance of its label, so it slows down as same-label instances pile up).
MIXES = {"uniform labels": 0.0, "40% chairs": 0.4}


@pytest.fixture(scope="module", params=list(MIXES))
def scenes(request):
    rng = np.random.default_rng(2019)
    ids = class_set("scannet20").ids
    return request.param, [synthetic_scene(rng, ids, MIXES[request.param]) for _ in range(NUM_SCENES)]


_TIMES: dict = {}


def test_vectorised_evaluator(benchmark, scenes):
    mix, scenes = scenes
    classes = class_set("scannet20")
    benchmark.group = f"instance AP, 100 scenes x 50k vertices, {mix}"
    result = benchmark.pedantic(
        evaluate_instances, args=(scenes, classes.ids, classes.names), rounds=3, iterations=1, warmup_rounds=0
    )
    _TIMES[mix] = (benchmark.stats.stats.min, result.ap_per_overlap)
    assert np.isfinite(result.mean_ap)


def test_per_mask_loop_reference(benchmark, scenes):
    mix, scenes = scenes
    classes = class_set("scannet20")
    reference = _load_reference()
    benchmark.group = f"instance AP, 100 scenes x 50k vertices, {mix}"
    aps = benchmark.pedantic(
        reference, args=(scenes, classes.ids, classes.names), rounds=1, iterations=1, warmup_rounds=0
    )
    loop_time = benchmark.stats.stats.min
    if mix in _TIMES:
        fast_time, fast_aps = _TIMES[mix]
        np.testing.assert_allclose(fast_aps, aps, rtol=0, atol=1e-12, equal_nan=True)
        ratio = loop_time / fast_time
        benchmark.extra_info["speedup_vs_vectorised"] = ratio
        print(f"\n{mix}: per-mask loop {loop_time:.3f} s, vectorised {fast_time:.3f} s: {ratio:.1f}x faster")
