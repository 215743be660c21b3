"""mean_shift agrees with scikit-learn on embeddings produced by the bundled toy model (not only on blobs)."""

import numpy as np
import pytest
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from mtml.predict.checkpoint import resolve_checkpoint
from mtml.cluster.meanshift import extension_available, mean_shift
from mtml.data.toy import generate_scene
from mtml.data.voxelize import voxelize
from mtml.model.model import load_checkpoint
from mtml.predict.infer import predict_voxels


@pytest.fixture(scope="module")
def toy_embeddings():
    model, _ = load_checkpoint(resolve_checkpoint("toy_multitask"))
    out = []
    for seed in (900, 950):
        grid = voxelize(generate_scene(seed), 0.1)
        emb = predict_voxels(model, grid).embedding
        out.append(emb[grid.labels != 0])  # the pipeline clusters the non-floor voxels
    return out


@pytest.mark.parametrize("bandwidth", [0.6, 1.0, 1.5])
def test_matches_sklearn_on_toy_model_embeddings(toy_embeddings, bandwidth):
    backends = ["torch"] + (["cpp"] if extension_available() else [])  # without the C++ build: torch only
    for emb in toy_embeddings:
        ref = MeanShift(bandwidth=bandwidth, bin_seeding=False).fit(emb)
        for backend in backends:
            ours, modes = mean_shift(emb, bandwidth, backend=backend)
            assert adjusted_rand_score(ref.labels_, ours.numpy()) >= 0.99, backend
            assert len(modes) == len(ref.cluster_centers_), backend
        assert len(np.unique(ref.labels_)) > 3  # real structure: several objects, not one blob
