"""Issue 5's claim on the bundled plain-scan model: on toy scenes whose labels are removed, semantic mIoU >= 95
on the five box classes and instance mean AP50 >= 90 (slow: the 100 test scenes)."""

import pytest

from mtml.cli.infer import bundled_checkpoint
from mtml.data.toy import toy_scene_seeds
from mtml.model.model import load_checkpoint
from mtml.tables.plain_scans import box_class_miou, evaluate_toy_plain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_results():
    ap, sem = evaluate_toy_plain(str(bundled_checkpoint("toy.pt")), toy_scene_seeds("test"), progress=False)
    print("\n" + sem.table() + f"\ninstance AP50: {[round(100 * float(v), 1) for v in ap.ap50]}")
    return ap, sem


@pytest.fixture(scope="module")
def voted_results():
    """The same scenes with every point's label voted over 16 copies (``mtml.predict.voting``; about 100 s)."""
    ap, sem = evaluate_toy_plain(str(bundled_checkpoint("toy.pt")), toy_scene_seeds("test"), progress=False,
                                 vote_passes=16)
    print("\nvoted over 16 passes:\n" + sem.table())
    return ap, sem


def test_bundled_model_reads_no_labels():
    model, _ = load_checkpoint(bundled_checkpoint("toy.pt"))
    assert not model.cfg.needs_labels and model.semantic_head is not None


@pytest.mark.xfail(strict=True, reason="issue 5's bar is not reached yet: the bundled model scores 94.5 box-class mIoU "
                                       "(small cube 87.7, long box 90.4: floor points taken for box feet at the noise "
                                       "level, and touching boxes merged into one instance, mostly two of one class)")
def test_semantic_miou_on_box_classes(plain_results):
    _, sem = plain_results
    assert box_class_miou(sem) >= 0.95, sem.table()


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


@pytest.mark.xfail(strict=True, reason="issue 5's bar is not reached with voting either: 94.9 over 16 passes "
                                       "(95.5 on the validation scenes)")
def test_semantic_miou_on_box_classes_with_voting(voted_results):
    _, sem = voted_results
    assert box_class_miou(sem) >= 0.95, sem.table()
