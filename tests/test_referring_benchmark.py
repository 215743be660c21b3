"""Issue 6's claims on the bundled model's referring head: Acc@0.5 >= 80% on the validation split of the synthetic
referring benchmark and on the hand-written descriptions of toy scenes (words and sentence shapes the generator never
uses). Slow: about a minute. (Its speed is measured in benchmarks/bench_referring.py.)"""

import pytest

from mtml.cli.infer import bundled_checkpoint
from mtml.data.referring import HANDMADE_DESCRIPTIONS
from mtml.eval.referring_table import evaluate_rows
from mtml.model.model import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    path = bundled_checkpoint("toy.pt")
    model, _ = load_checkpoint(path)
    assert model.referring_head is not None
    res = evaluate_rows({"bundled": path}, handmade=HANDMADE_DESCRIPTIONS, progress=False)["bundled"]
    print("\n", res)
    return res


def test_validation_split(results):
    assert results["val"]["descriptions"] >= 500  # 100 scenes, at least 5 descriptions each
    assert results["val"]["acc@0.5"] >= 0.80, results["val"]


@pytest.mark.xfail(strict=True, reason="issue 6's bar is not reached yet on words the generator never uses: the bundled "
                                       "model scores 55.9% Acc@0.5 on the 34 hand-made toy descriptions (92.6% on validation)")
def test_hand_made_descriptions(results):
    assert results["handmade"]["acc@0.5"] >= 0.80, results["handmade"]


def test_hand_made_descriptions_do_not_regress(results):
    """Below the bar above, but guarded: the bundled model measured 55.9% (README, mtml-bench referring)."""
    assert results["handmade"]["descriptions"] >= 25
    assert results["handmade"]["acc@0.5"] >= 0.50, results["handmade"]
