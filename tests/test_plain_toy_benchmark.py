"""The bundled plain-scan model on toy scenes whose labels are removed: box-class semantic mIoU and instance mean
AP50 on the 100 test scenes, guarded at what it measured (slow). Issue 5's 95 mIoU bar is not reached (94.5, 94.9
with voting): that is recorded in the issue note and docs/results.md, not encoded here."""

import pytest

from mtml.predict.checkpoint import resolve_checkpoint
from mtml.data.registry import toy_scene_seeds
from mtml.model.model import load_checkpoint
from mtml.tables.plain_scans import box_class_miou, evaluate_toy_plain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_results():
    ap, sem = evaluate_toy_plain(resolve_checkpoint("toy"), toy_scene_seeds("test"), progress=False)
    print("\n" + sem.table() + f"\ninstance AP50: {[round(100 * float(v), 1) for v in ap.ap50]}")
    return ap, sem


@pytest.fixture(scope="module")
def voted_results():
    """The same scenes with every point's label voted over 16 copies (``mtml.predict.voting``; about 100 s)."""
    ap, sem = evaluate_toy_plain(resolve_checkpoint("toy"), toy_scene_seeds("test"), progress=False,
                                 vote_passes=16)
    print("\nvoted over 16 passes:\n" + sem.table())
    return ap, sem


def test_bundled_model_reads_no_labels():
    model, _ = load_checkpoint(resolve_checkpoint("toy"))
    assert not model.cfg.needs_labels and model.semantic_head is not None


def test_semantic_miou_on_box_classes_does_not_regress(plain_results):
    """Below the bar above, but guarded: the bundled model measured 94.5 (README, mtml-bench toy-plain)."""
    _, sem = plain_results
    assert box_class_miou(sem) >= 0.93, sem.table()


def test_instances_from_predicted_labels(plain_results):
    ap, _ = plain_results
    assert ap.mean_ap50 >= 0.90, list(ap.ap50)


def test_voting_over_sixteen_copies_raises_the_box_classes(plain_results, voted_results):
    """Measured 94.5 -> 94.9 on these scenes (95.5 on the validation scenes, where 16 passes were chosen)."""
    _, single = plain_results
    ap, voted = voted_results
    assert box_class_miou(voted) >= box_class_miou(single) + 0.002, (box_class_miou(single), box_class_miou(voted))
    assert ap.mean_ap50 >= 0.90, list(ap.ap50)
