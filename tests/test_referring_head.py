"""The LESS referring head, its losses and its metrics (mtml.model / losses / eval .referring)."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mtml.eval.referring import ReferringScores, box_of, mask_iou
from mtml.losses.referring import area_loss, bce_loss, dice_loss, mask_loss, point_to_point_loss, referring_loss
from mtml.model.referring import (
    GEOMETRY_CHANNELS,
    ReferringConfig,
    ReferringHead,
    count_parameters,
    fourier_positions,
    pool_superpoints,
)

V, C, L, TEXT = 300, 8, 6, 384


def _scene(seed=0, v=V, c=C):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, c, generator=g), torch.rand(v, 3, generator=g) * 5


def _text(s, seed=1, lengths=None):
    """S descriptions: words [S, L, 384], word_mask [S, L] (row i has lengths[i] real words), sentences [S, 384]."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(s, L, TEXT, generator=g)
    mask = torch.zeros(s, L, dtype=torch.bool)
    for i, n in enumerate(lengths or [L] * s):
        mask[i, :n] = True
    return words, mask, F.normalize(torch.randn(s, TEXT, generator=g), dim=1)


def _head(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ReferringConfig(**{"dim": 32, "num_queries": 6, "num_layers": 2, "num_heads": 4, **kw})
    return ReferringHead(C, cfg).eval()


def _run(head, feats, xyz, words, mask, sent):
    with torch.no_grad():
        return head(feats, xyz, words, mask, sent)


# ------------------------------------------------------------------------------------------------------ head


def test_shapes_for_one_and_three_descriptions():
    head, (feats, xyz) = _head(), _scene()
    words, mask, sent = _text(3)
    one = _run(head, feats, xyz, words[0], mask[0], sent[0])
    three = _run(head, feats, xyz, words, mask, sent)
    for out, s in ((one, 1), (three, 3)):
        assert out["mask_logits"].shape == (s, V)
        assert out["all_mask_logits"].shape == (s, 6, V)
        assert out["query_scores"].shape == out["query_logits"].shape == (s, 6)
        assert out["best_query"].shape == (s,) and out["best_query"].dtype == torch.int64
        assert out["point_embed"].shape == (s, V, 32)
        assert torch.allclose(out["query_scores"].sum(1), torch.ones(s))
    # final mask = QSA-weighted sum of the query masks (LESS)
    expected = (three["query_scores"][:, :, None] * three["all_mask_logits"]).sum(1)
    assert torch.allclose(three["mask_logits"], expected, atol=1e-5)


def test_batched_descriptions_equal_one_at_a_time_and_padding_is_ignored():
    head, (feats, xyz) = _head(), _scene()
    words, mask, sent = _text(3, lengths=[6, 3, 1])
    batch = _run(head, feats, xyz, words, mask, sent)
    for i, n in enumerate([6, 3, 1]):
        alone = _run(head, feats, xyz, words[i, :n], mask[i, :n], sent[i])
        assert torch.allclose(batch["mask_logits"][i], alone["mask_logits"][0], atol=1e-4)
    noisy = words.clone()
    noisy[~mask] = 100.0  # padding content must not matter
    assert torch.allclose(_run(head, feats, xyz, noisy, mask, sent)["mask_logits"], batch["mask_logits"], atol=1e-5)


def test_masks_depend_on_the_description():
    head, (feats, xyz) = _head(), _scene()
    words, mask, sent = _text(2)
    out = _run(head, feats, xyz, words, mask, sent)
    assert (out["mask_logits"][0] - out["mask_logits"][1]).abs().max() > 1e-3
    other_sentence = _run(head, feats, xyz, words[:1], mask[:1], sent[1:])  # same words, another sentence (QSA)
    assert (other_sentence["query_scores"][0] - out["query_scores"][0]).abs().max() > 1e-4


def test_without_pwca_words_matter_only_through_the_sentence():
    feats, xyz = _scene()
    words, mask, sent = _text(2)
    other_words = _text(2, seed=7)[0]
    plain = _head(use_pwca=False)
    a = _run(plain, feats, xyz, words, mask, sent)
    b = _run(plain, feats, xyz, other_words, mask, sent)
    for key in ("mask_logits", "all_mask_logits", "query_scores", "point_embed"):
        assert torch.equal(a[key], b[key])
    c = _run(plain, feats, xyz, words, mask, sent.flip(0))  # the sentence still steers it
    assert (c["point_embed"] - a["point_embed"]).abs().max() > 1e-3
    pwca = _head()
    assert (_run(pwca, feats, xyz, words, mask, sent)["mask_logits"]
            - _run(pwca, feats, xyz, other_words, mask, sent)["mask_logits"]).abs().max() > 1e-3


def test_without_qsa_the_mask_is_the_mean_of_the_query_masks():
    head, (feats, xyz) = _head(use_qsa=False), _scene()
    out = _run(head, feats, xyz, *_text(2))
    assert torch.allclose(out["query_scores"], torch.full((2, 6), 1 / 6))
    assert torch.allclose(out["mask_logits"], out["all_mask_logits"].mean(1), atol=1e-5)
    assert not hasattr(head, "qsa_sentence")


def test_argmax_selection_applies_in_eval_mode_only():
    head, (feats, xyz) = _head(select="argmax"), _scene()
    text = _text(2)
    out = _run(head, feats, xyz, *text)
    best = out["query_logits"].argmax(1)
    assert torch.equal(out["best_query"], best)
    assert torch.equal(out["mask_logits"], out["all_mask_logits"][torch.arange(2), best])
    head.train()
    train = head(feats, xyz, *text)
    assert torch.allclose(train["mask_logits"], (train["query_scores"][:, :, None] * train["all_mask_logits"]).sum(1),
                          atol=1e-5)


def test_position_encoding_switch_and_scene_normalisation():
    feats, xyz = _scene()
    text = _text(1)
    warped = xyz * torch.tensor([1.0, 0.3, 2.0])  # not a uniform scaling: relative positions change
    on, off = _head(), _head(pos_encoding=False)
    moved = _run(on, feats, xyz, *text)["mask_logits"] - _run(on, feats, warped, *text)["mask_logits"]
    assert moved.abs().max() > 1e-4
    assert torch.equal(_run(off, feats, xyz, *text)["mask_logits"], _run(off, feats, warped, *text)["mask_logits"])
    # positions are normalised to the scene: translating and uniformly scaling it changes nothing
    assert torch.allclose(fourier_positions(xyz, 4), fourier_positions(3 * xyz - 7, 4), atol=1e-4)
    pos = fourier_positions(xyz, 4)
    assert pos.shape == (V, 3 + 6 * 4) and pos[:, :3].abs().max() <= 1 + 1e-6
    waves = pos[:, 3:].view(V, 3, 2, 4)  # per coordinate: sines then cosines, octaves 0..3
    angles = math.pi * 2.0 ** torch.arange(4) * pos[:, :3, None]
    assert torch.allclose(waves[:, :, 0], torch.sin(angles), atol=1e-4)
    assert torch.allclose(waves[:, :, 1], torch.cos(angles), atol=1e-4)


def test_masked_attention_changes_the_decoder_and_trains():
    feats, xyz = _scene()
    text = _text(2)
    plain, masked = _head(), _head(masked_attention=True)
    change = _run(plain, feats, xyz, *text)["mask_logits"] - _run(masked, feats, xyz, *text)["mask_logits"]
    assert change.abs().max() > 1e-5
    masked.train()
    loss = referring_loss(masked(feats, xyz, *text), torch.stack([feats[:, 0] > 0, feats[:, 1] > 0]), masked.cfg)
    loss["loss"].backward()
    assert masked.queries.grad is not None and torch.isfinite(masked.queries.grad).all()


def test_bad_inputs_raise():
    head, (feats, xyz) = _head(), _scene()
    words, mask, sent = _text(2)
    with pytest.raises(ValueError, match="voxel_feats"):
        head(feats[:, :3], xyz, words, mask, sent)
    mask[1] = False
    with pytest.raises(ValueError, match="at least one real word"):
        head(feats, xyz, words, mask, sent)
    with pytest.raises(ValueError, match="divisible"):
        ReferringConfig(dim=30, num_heads=4)


def test_pool_superpoints_by_hand():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    xyz = torch.tensor([[0.0, 0.0, 0.5], [1.0, 2.0, 1.5], [4.0, 4.0, 0.0]])
    pooled, centres = pool_superpoints(feats, xyz, torch.tensor([1, 1, 0]))
    assert pooled.shape == (2, 2 + GEOMETRY_CHANNELS)
    # superpoint 1: mean features, extent (1, 2, 1), bottom 0.5 and top 1.5 above the lowest voxel (z = 0), log 2
    assert torch.allclose(pooled[1], torch.tensor([2.0, 1.0, 1.0, 2.0, 1.0, 0.5, 1.5, math.log(2)]))
    assert torch.allclose(pooled[0], torch.tensor([5.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(centres, torch.tensor([[4.0, 4.0, 0.0], [0.5, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="no gap"):
        pool_superpoints(feats, xyz, torch.tensor([0, 0, 2]))


def test_superpoint_head_gives_each_superpoint_one_value_and_trains():
    feats, xyz = _scene()
    sp = torch.arange(V) % 7
    head = _head(superpoints=True, context_layers=1)
    words, mask, sent = _text(3)
    with torch.no_grad():
        out = head(feats, xyz, words, mask, sent, sp)
    assert out["mask_logits"].shape == (3, V) and out["point_embed"].shape == (3, V, 32)
    for k in range(7):
        vals = out["mask_logits"][:, sp == k]
        assert torch.equal(vals, vals[:, :1].expand_as(vals))
    with pytest.raises(ValueError, match="superpoints"):
        head(feats, xyz, words, mask, sent)
    with pytest.raises(ValueError, match="superpoints: true"):
        ReferringConfig(context_layers=1)
    head.train()
    loss = referring_loss(head(feats, xyz, words, mask, sent, sp), sp[None].expand(3, -1) == 2, head.cfg)["loss"]
    loss.backward()
    assert all(p.grad is not None for n, p in head.named_parameters() if n.startswith(("context.", "voxel_in.")))


def test_default_head_is_small():
    n = count_parameters(ReferringHead(32 + 384))
    assert 100_000 < n < 600_000


@pytest.fixture
def one_thread():
    """Run tiny-tensor training on one thread: with a busy CPU, every multi-threaded op on a 200-voxel tensor waits
    for a second core (milliseconds each), which made this test 40x slower on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_head_overfits_a_toy_problem(one_thread):
    """Two descriptions of one scene select the two halves split by a voxel feature: Acc@0.5 = 1 after training."""
    torch.manual_seed(0)
    feats, xyz = _scene(v=200)
    targets = torch.stack([feats[:, 0] > 0, feats[:, 0] <= 0])
    words, mask, sent = _text(2)
    cfg = ReferringConfig(dim=32, num_queries=4, num_layers=1, num_heads=2)
    head = ReferringHead(C, cfg)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = referring_loss(head(feats, xyz, words, mask, sent), targets, cfg, generator=g)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
    head.eval()
    out = _run(head, feats, xyz, words, mask, sent)
    scores = ReferringScores()
    for s in range(2):
        scores.update(out["mask_logits"][s] > 0, targets[s])
    assert scores.results()["acc@0.5"] == 1.0
    assert scores.results()["miou"] > 0.95


# ---------------------------------------------------------------------------------------------------- losses


def test_bce_and_dice_by_hand():
    logits = torch.tensor([0.0, math.log(3.0), -math.log(3.0)])  # p = 0.5, 0.75, 0.25
    target = torch.tensor([True, True, False])
    bce = (-2 * math.log(0.5) - 2 * math.log(0.75) - math.log(0.75)) / 3
    assert float(bce_loss(logits, target, pos_weight=2.0)) == pytest.approx(bce, rel=1e-5)
    dice = 1 - (2 * (0.5 + 0.75) + 1) / ((0.5 + 0.75 + 0.25) + 2 + 1)
    assert float(dice_loss(logits, target)) == pytest.approx(dice, rel=1e-5)
    assert float(mask_loss(logits, target, 1.0, 0.5, 2.0)) == pytest.approx(bce + 0.5 * dice, rel=1e-5)
    # batched rows average
    both = torch.stack([logits, -logits]), torch.stack([target, ~target])
    assert float(dice_loss(*both)) == pytest.approx((dice + float(dice_loss(-logits, ~target))) / 2, rel=1e-5)


def test_perfect_logits_give_low_mask_loss():
    target = torch.arange(50) % 3 == 0
    perfect = torch.where(target, 20.0, -20.0)
    assert float(mask_loss(perfect, target)) < 1e-6
    assert float(mask_loss(-perfect, target)) > 10


def test_area_loss_is_the_mean_sigmoid():
    logits = torch.tensor([[0.0, 2.0, -1.0], [5.0, -5.0, 0.5]])
    assert float(area_loss(logits)) == pytest.approx(float(torch.sigmoid(logits).mean()), rel=1e-6)
    assert float(area_loss(logits[0])) == pytest.approx(float(torch.sigmoid(logits[0]).mean()), rel=1e-6)


def test_p2p_loss_by_hand_without_sampling():
    emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 2.0], [-1.0, 0.0]])
    target = torch.tensor([True, True, False, False])
    tau = 0.5
    e = F.normalize(emb, dim=1)
    center = e[:2].mean(0)
    ratios = []
    for i in range(2):
        a = math.exp(float(e[i] @ center) / tau)
        n = sum(math.exp(float(e[i] @ e[j]) / tau) for j in (2, 3))
        ratios.append(a / (a + n))
    expected = -math.log(sum(ratios) / 2)
    assert float(point_to_point_loss(emb, target, temperature=tau)) == pytest.approx(expected, rel=1e-5)


def test_p2p_loss_is_lower_when_the_target_is_clustered_and_handles_empty_targets():
    g = torch.Generator().manual_seed(0)
    target = torch.arange(2000) < 100
    scattered = torch.randn(2000, 16, generator=g)
    clustered = scattered.clone()
    clustered[target] = torch.ones(16) + 0.05 * torch.randn(100, 16, generator=g)
    clustered[~target] -= 3.0 * torch.ones(16) / 4
    lo = point_to_point_loss(clustered, target, num_samples=64, generator=torch.Generator().manual_seed(1))
    hi = point_to_point_loss(scattered, target, num_samples=64, generator=torch.Generator().manual_seed(1))
    assert float(lo) < 0.05 < float(hi)
    # sampled anchors and negatives estimate the loss over all voxels
    exact = point_to_point_loss(scattered, target, temperature=0.5, num_samples=10_000)
    sampled = point_to_point_loss(scattered, target, temperature=0.5, num_samples=64,
                                  generator=torch.Generator().manual_seed(2))
    assert float(sampled) == pytest.approx(float(exact), rel=0.05)
    emb = torch.randn(10, 4, requires_grad=True)
    none = point_to_point_loss(emb, torch.zeros(10, dtype=torch.bool))
    none.backward()
    assert float(none.detach()) == 0.0 and emb.grad is not None


def test_referring_loss_parts_weights_and_switches():
    head, (feats, xyz) = _head(), _scene()
    out = _run(head, feats, xyz, *_text(2))
    target = torch.stack([feats[:, 0] > 0, feats[:, 1] > 1])
    cfg = head.cfg
    parts = referring_loss(out, target, cfg, generator=torch.Generator().manual_seed(0))
    assert float(parts["bce"]) == pytest.approx(float(bce_loss(out["mask_logits"], target, cfg.pos_weight)))
    assert float(parts["area"]) == pytest.approx(float(area_loss(out["mask_logits"])))
    total = parts["bce"] + parts["dice"] + parts["area"] + 0.05 * parts["p2p"]
    assert float(parts["loss"]) == pytest.approx(float(total), rel=1e-6)
    off = ReferringConfig(dim=32, num_queries=6, use_area=False, use_p2p=False)
    parts_off = referring_loss(out, target, off)
    assert float(parts_off["area"]) == float(parts_off["p2p"]) == 0.0
    assert float(parts_off["loss"]) == pytest.approx(float(parts["bce"] + parts["dice"]), rel=1e-6)


# --------------------------------------------------------------------------------------------------- metrics


def test_mask_iou_by_hand():
    assert mask_iou(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0])) == pytest.approx(1 / 3)
    assert mask_iou(torch.tensor([True, False]), torch.tensor([True, False])) == 1.0
    assert mask_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert mask_iou(np.zeros(3, bool), np.ones(3, bool)) == 0.0
    with pytest.raises(ValueError):
        mask_iou(np.zeros(3, bool), np.zeros(4, bool))


def test_scores_thresholds_are_inclusive_and_time_is_per_scan():
    full4, full5 = np.ones(4, bool), np.ones(5, bool)
    scores = ReferringScores()
    ious = [scores.update(np.array([1, 0, 0, 0], bool), full4, seconds=0.1, scan="a"),  # IoU 0.25
            scores.update(np.array([1, 1, 0, 0], bool), full4, seconds=0.2, scan="a"),  # IoU 0.5
            scores.update(np.array([1, 0, 0, 0, 0], bool), full5, seconds=0.3, scan="b"),  # IoU 0.2
            scores.update(full4, full4)]  # IoU 1, untimed
    assert ious == pytest.approx([0.25, 0.5, 0.2, 1.0])
    r = scores.results()
    assert r["descriptions"] == 4
    assert r["miou"] == pytest.approx((0.25 + 0.5 + 0.2 + 1.0) / 4)
    assert r["acc@0.25"] == pytest.approx(0.75) and r["acc@0.5"] == pytest.approx(0.5)
    assert r["seconds_per_scan"] == pytest.approx(0.3) and r["timed_scans"] == 2  # (0.1 + 0.2 + 0.3) / 2 scans
    assert scores.to_dict()["ious"] == pytest.approx(ious)
    table = scores.table()
    assert "| 4 | 48.75 | 75.00 | 50.00 | 300.0 |" in table
    assert math.isnan(ReferringScores().results()["miou"])


def test_box_of():
    pts = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 5.0], [9.0, 9.0, 9.0]])
    lo, hi = box_of(pts, np.array([True, True, False]))
    assert lo.tolist() == [0.0, -1.0, 2.0] and hi.tolist() == [3.0, 1.0, 5.0]
    with pytest.raises(ValueError):
        box_of(pts, np.zeros(3, bool))


def test_referring_superpoints_are_instances_plus_one_segment_per_other_label():
    from types import SimpleNamespace

    from mtml.predict.infer import referring_superpoints
    from mtml.scene import Instances

    labels = np.array([0, 3, 3, 0, 5, 2, 0])  # voxels 4 and 5: no instance, labels 5 and 2; 0, 3, 6: floor
    result = SimpleNamespace(instances=Instances(masks=[np.array([1, 2]), np.array([4])], labels=np.array([3, 5]),
                                                 scores=np.array([0.9, 0.8])),
                             grid=SimpleNamespace(num_voxels=7, labels=labels))
    sp = referring_superpoints(result)
    assert sp.dtype == np.int64 and set(sp) == set(range(4))
    assert sp[1] == sp[2] and sp[0] == sp[3] == sp[6]
    assert len({sp[1], sp[4], sp[5], sp[0]}) == 4


def test_superpoint_targets_and_loss_count_each_superpoint_once():
    from mtml.losses.referring import superpoint_targets

    sp = torch.tensor([0, 0, 0, 1, 1, 2])
    target = torch.tensor([[True, True, False, False, False, True], [False, False, False, True, False, False]])
    assert superpoint_targets(target, sp).tolist() == [[True, False, True], [False, False, False]]
    assert superpoint_targets(target[0], sp).tolist() == [True, False, True]
    cfg = ReferringConfig(superpoints=True, use_p2p=False, use_area=False, dice_weight=0.0)
    sp_logits = torch.tensor([[4.0, -4.0, 4.0]])
    outputs = {"mask_logits": sp_logits[:, sp], "superpoints": sp, "superpoint_mask_logits": sp_logits,
               "superpoint_embed": torch.zeros(1, 3, 4), "point_embed": torch.zeros(1, 6, 4)}
    loss = referring_loss(outputs, target[:1], cfg)
    assert float(loss["bce"]) == pytest.approx(float(bce_loss(sp_logits, torch.tensor([[True, False, True]]),
                                                              cfg.pos_weight)))
