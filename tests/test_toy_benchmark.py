"""The paper's Table 1 claims, checked on the bundled checkpoints (slow: evaluates ~500 scenes)."""

import numpy as np
import pytest

from mtml.predict.checkpoint import resolve_checkpoint
from mtml.data.registry import toy_scene_seeds
from mtml.tables import toy_table1 as t

pytestmark = pytest.mark.slow

PAPER_CC_MEAN = float(np.mean(t.PAPER_TABLE1["connected_components"]))


@pytest.fixture(scope="module")
def table1():
    rows = t.evaluate_methods(
        t.default_segmenters(resolve_checkpoint("toy_multitask"), resolve_checkpoint("toy_fe_only")),
        toy_scene_seeds("test"), progress=False,
    )
    print("\n" + t.table1_text(rows))
    return {r.method: r for r in rows}


def test_test_split_is_the_papers_100_scenes():
    assert len(toy_scene_seeds("test")) == 100 and len(toy_scene_seeds("train")) == 900


def test_multi_task_at_least_paper_on_every_class(table1):
    ours = table1["multi_task"].ap50
    assert all(o >= p for o, p in zip(ours, t.PAPER_TABLE1["multi_task"])), ours


def test_order_multi_task_over_fe_only_over_connected_components(table1):
    assert table1["multi_task"].mean_ap50 > table1["fe_only"].mean_ap50 > table1["connected_components"].mean_ap50


def test_connected_components_as_hard_as_the_papers(table1):
    assert abs(table1["connected_components"].mean_ap50 - PAPER_CC_MEAN) <= 5.0


def test_generalises_to_unseen_harder_scenes():
    seeds = range(t.HARDER_SEED_START, t.HARDER_SEED_START + 100)
    rows = t.evaluate_methods(t.default_segmenters(resolve_checkpoint("toy_multitask"), None), seeds,
                              t.HARDER_TOY_CONFIG, progress=False)
    by = {r.method: r for r in rows}
    print("\n" + t.table1_text(rows, with_paper=False))
    assert by["multi_task"].mean_ap50 >= 95.0
    assert by["multi_task"].mean_ap50 > by["connected_components"].mean_ap50
