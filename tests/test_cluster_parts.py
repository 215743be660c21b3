import numpy as np
import pytest

from mtml.cluster.components import connected_components, semantic_components, semantic_segments
from mtml.cluster.nms import nms, pairwise_iou
from mtml.cluster.proposals import proposal_scores


def test_connected_components_splits_by_gap_and_group():
    coords = np.array([[0, 0, 0], [1, 1, 1], [3, 0, 0], [4, 0, 0], [5, 0, 0]])
    groups = np.array([0, 0, 0, 0, 1])
    comp = connected_components(coords, groups)
    assert comp[0] == comp[1]  # diagonal neighbours (26-connectivity)
    assert comp[2] == comp[3] != comp[0]  # gap of one voxel splits
    assert comp[4] not in (comp[0], comp[2])  # touching but another group
    assert sorted(set(comp.tolist())) == [0, 1, 2]


def test_semantic_baselines():
    coords = np.array([[0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0], [9, 9, 9]])
    labels = np.array([1, 1, 1, 2, 0])
    cc = semantic_components(coords, labels, [1, 2])
    assert sorted(map(sorted, (m.tolist() for m in cc))) == [[0, 1], [2], [3]]
    seg = semantic_segments(labels, [1, 2])
    assert [m.tolist() for m in seg] == [[0, 1, 2], [3]]


def test_pairwise_iou_and_nms():
    props = [np.array([0, 1, 2, 3]), np.array([0, 1, 2]), np.array([5, 6])]
    iou = pairwise_iou(props, 8)
    assert iou[0, 1] == 0.75 and iou[0, 2] == 0.0 and iou[2, 2] == 1.0
    keep = nms(props, np.array([0.5, 0.9, 0.1]), 8, iou_threshold=0.5)
    assert keep.tolist() == [1, 2]
    keep = nms(props, np.array([0.5, 0.9, 0.1]), 8, iou_threshold=0.8)
    assert keep.tolist() == [1, 0, 2]


def test_proposal_scores_prefer_coherent_direction_and_features():
    xyz = np.array([[0.0, 0, 0], [2.0, 0, 0], [4.0, 0, 0], [6.0, 0, 0]])
    # directions: voxels 0,1 point to x=1; voxels 2,3 point to x=5
    direction = np.array([[1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0]])
    emb = np.array([[0.0], [0.1], [3.0], [3.1]])
    props = [np.array([0, 1]), np.array([2, 3]), np.array([0, 1, 2, 3])]
    s = proposal_scores(props, xyz, emb, direction, feature_threshold=0.5, size_prior_voxels=1)
    assert s["direction"][0] == 1.0 and s["direction"][1] == 1.0
    assert s["direction"][2] < 1.0  # the merged proposal points away from its centre on two voxels
    assert s["feature"][0] == 1.0 and s["feature"][2] == 0.0
    assert s["score"][0] > s["score"][2] and s["score"][1] > s["score"][2]
    no_dir = proposal_scores(props, xyz, emb, None, 0.5, 1)
    assert no_dir["direction"] is None and np.allclose(no_dir["score"], (no_dir["feature"] + no_dir["size"]) / 2)


def test_class_size_prior_prefers_typical_sizes_and_is_measured_per_class():
    from mtml.cluster.proposals import class_size_prior
    from mtml.scene import VoxelGrid

    grid = VoxelGrid(shape=(9, 1, 1), origin=np.zeros(3), voxel_size=0.1, coords=np.zeros((9, 3), dtype=np.int64),
                     point_to_voxel=np.arange(9), labels=np.array([0, 1, 1, 1, 1, 2, 2, 2, 2]),
                     instances=np.array([-1, 0, 0, 1, 1, 2, 2, 2, 2]))
    assert class_size_prior([grid], stuff_classes=[0]) == {1: 2.0, 2: 4.0}
    xyz = np.zeros((8, 3))
    emb = np.zeros((8, 1))
    props = [np.arange(4), np.arange(8), np.arange(2)]  # typical, merged pair (2x), fragment (1/2x)
    s = proposal_scores(props, xyz, emb, None, 1.0, 1, labels=np.array([1, 1, 1]), class_sizes={1: 4.0})
    assert s["size"][0] == 1.0 and s["size"][1] < 0.3 and s["size"][2] < 0.3
    assert s["size"][1] == pytest.approx(s["size"][2])  # symmetric in ln(size)
    unknown = proposal_scores(props, xyz, emb, None, 1.0, 1, labels=np.array([7, 7, 7]), class_sizes={1: 4.0})
    assert np.all(unknown["size"] == 1.0)  # classes without statistics fall back to the plain size floor
