"""Issue 6's claims on the bundled model's referring head: Acc@0.5 >= 80% on the validation split of the synthetic
referring benchmark and on hand-written descriptions of toy scenes (words and sentence shapes the generator never
uses): the first hand-made set, and the blind set written without sight of the generator. Slow: about two minutes.
(Its speed is measured in benchmarks/bench_referring.py.)"""

import pytest

from mtml.cli.infer import bundled_checkpoint
from mtml.data.referring import HANDMADE_SETS
from mtml.eval.referring_table import evaluate_rows
from mtml.model.model import load_checkpoint

pytestmark = pytest.mark.slow

# what the bundled model measured (README, `mtml-bench referring --checkpoint mtml/checkpoints/toy.pt`), Acc@0.5
MEASURED = {"handmade": 0.735, "handmade_blind": 0.725}


@pytest.fixture(scope="module")
def results():
    path = bundled_checkpoint("toy.pt")
    model, _ = load_checkpoint(path)
    assert model.referring_head is not None
    res = evaluate_rows({"bundled": path}, handmade=HANDMADE_SETS, progress=False)["bundled"]
    print("\n", res)
    return res


def test_validation_split(results):
    assert results["val"]["descriptions"] >= 500  # 100 scenes, at least 5 descriptions each
    assert results["val"]["acc@0.5"] >= 0.80, results["val"]


@pytest.mark.xfail(strict=True, reason="issue 6's bar is not reached yet on words the generator never uses: the bundled "
                                       "model scores 73.5% Acc@0.5 on the 34 hand-made toy descriptions and 72.5% on "
                                       "the 40 blind ones (89.4% on validation)")
@pytest.mark.parametrize("name", sorted(MEASURED))
def test_hand_made_descriptions(results, name):
    assert results[name]["acc@0.5"] >= 0.80, results[name]


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_hand_made_descriptions_do_not_regress(results, name):
    """Below the bar above, but guarded: 0.65 is three descriptions under what the bundled model measured
    (``MEASURED``)."""
    assert results[name]["descriptions"] >= 30
    assert results[name]["acc@0.5"] >= 0.65, results[name]
