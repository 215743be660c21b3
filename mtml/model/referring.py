"""LESS referring head (Liu et al., "LESS: Label-Efficient and Single-Stage Referring 3D Segmentation", NeurIPS 2024)
on the shared MTML backbone: per-voxel features + one or more descriptions -> one binary mask per description.

Pipeline (``ReferringHead.forward``), for S descriptions of one scene with V voxels, L words and width ``dim``:

1. Voxel projection, once per scene: ``v0 = Linear([features, fourier(xyz)])`` [V, dim]. ``fourier`` maps the
   voxel centres, normalised isotropically to [-1, 1] over the scene's bounding box, to ``xyz, sin(2^k pi xyz),
   cos(2^k pi xyz)`` for k < ``pos_frequencies``, so that relations ("left of", "largest") can be read off positions.
2. PWCA, point-word cross-modal alignment (``use_pwca``): every voxel attends to the words of each description
   (single-head cross-attention, as in the authors' code), ``f = LN(v0 + attn(v0, words))`` [S, V, dim]. The query
   and output projections are folded into the word side (a bilinear form on the L words), so nothing of size V x dim
   x dim is computed per description. Without PWCA (the paper's ablation baseline): ``f = LN(v0 + Linear(sentence))``.
3. QMP, query mask predictor: ``num_queries`` learned queries run ``num_layers`` decoder layers (cross-attention to
   the voxels -> self-attention -> FFN, each residual + LayerNorm; the cross-attention's keys and values are f itself,
   split into heads by channels, see ``VoxelCrossAttention``). Query k's mask logits are ``<mask_mlp(q_k), f_v>``
   for every voxel v. With ``masked_attention`` each query attends only to the voxels
   its previous mask covers (Mask2Former, as the authors' QMP), or to all voxels when that mask is empty.
4. QSA, query-sentence alignment (``use_qsa``): ``R = softmax_k(<W_q q_k, MLP(sentence)> / sqrt(dim))`` [S, Q]; the
   final mask logits are ``sum_k R_k M_k`` (the authors' released code does exactly this weighted sum, at training
   and at test time). ``select="argmax"`` instead returns, in eval mode only, the mask of the query most similar to
   the sentence (training always uses the weighted sum, which is differentiable in R). Without QSA the final mask is
   the plain mean of the query masks (R uniform, whatever ``select``), the ablation baseline.

Cost: the only quadratic terms are V x L (PWCA) and V x Q (decoder cross-attention and masks); nothing is V x V.
The voxel-side work that does not depend on the description (step 1) is done once for all S descriptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class ReferringConfig:
    """Shape, ablation switches and loss weights of the LESS referring head.

    Head: ``dim`` model width; ``num_queries`` learned queries; ``num_layers`` QMP decoder layers; ``num_heads`` heads
    of the decoder's attention (divides ``dim``); ``text_dim`` width of the text encoder's word and sentence features
    (384 for MiniLM); ``use_pwca`` / ``use_qsa`` / ``pos_encoding`` / ``masked_attention`` switches described in the
    module docstring; ``pos_frequencies`` Fourier octaves of the position encoding; ``select`` "weighted" (LESS) or
    "argmax" (eval-mode hard choice of one query's mask).

    Losses (``mtml.losses.referring``; defaults are the authors' released training code, since the paper text we
    build from gives the formulas but no weights): ``bce_weight`` and ``pos_weight`` (target voxels count 20x in the
    BCE), ``dice_weight`` (Dice is not in the authors' code; we add it with weight 1, set 0 to match them exactly),
    ``use_area`` / ``area_weight`` (1.0), ``use_p2p`` / ``p2p_weight`` (0.05), ``p2p_temperature`` (0.05) and
    ``p2p_samples`` (anchors and negatives drawn per description for L_p2p).
    """

    dim: int = 64
    num_queries: int = 16
    num_layers: int = 2
    num_heads: int = 4
    text_dim: int = 384
    use_pwca: bool = True
    use_qsa: bool = True
    pos_encoding: bool = True
    pos_frequencies: int = 6
    masked_attention: bool = False
    select: str = "weighted"
    bce_weight: float = 1.0
    pos_weight: float = 20.0
    dice_weight: float = 1.0
    use_area: bool = True
    area_weight: float = 1.0
    use_p2p: bool = True
    p2p_weight: float = 0.05
    p2p_temperature: float = 0.05
    p2p_samples: int = 256

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"referring head: dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.select not in ("weighted", "argmax"):
            raise ValueError(f"referring head: select must be 'weighted' or 'argmax', got {self.select!r}")
        if min(self.dim, self.num_queries, self.text_dim) < 1 or self.num_layers < 0 or self.pos_frequencies < 0:
            raise ValueError("referring head: dim, num_queries, text_dim must be positive, num_layers >= 0")


def fourier_positions(xyz: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """Voxel centres [V, 3] (metres) -> position features float [V, 3 + 6 * num_frequencies].

    Coordinates are first normalised isotropically to [-1, 1] over the scene's bounding box (centre at 0, the longest
    side spanning [-1, 1]); the features are ``x`` (3 columns), then for each coordinate c in x, y, z
    ``sin(2^k pi c)`` for k = 0 .. F-1 followed by ``cos(2^k pi c)`` for k = 0 .. F-1 (6 F columns; the cosines are
    computed as sines with a pi/2 phase, in one call).
    """
    xyz = xyz.float()
    lo, hi = xyz.amin(0), xyz.amax(0)
    half = ((hi - lo).amax() / 2).clamp_min(1e-6)
    x = (xyz - (lo + hi) / 2) / half
    if num_frequencies == 0:
        return x
    freqs = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=x.dtype, device=x.device)
    freqs = torch.cat([freqs, freqs])  # sin block, then cos block
    phase = torch.cat([torch.zeros(num_frequencies), torch.full((num_frequencies,), math.pi / 2)]).to(x)
    waves = torch.addcmul(phase, x[:, :, None], freqs).sin_().flatten(1)  # [V, 3 * 2F]
    return torch.cat([x, waves], dim=1)


class VoxelCrossAttention(nn.Module):
    """Multi-head attention of a few queries over many voxels whose keys and values are the voxel features
    themselves, split into ``heads`` groups of ``dim / heads`` channels (head h reads channels h*dh .. (h+1)*dh).

    Only the queries are projected (and the pooled output): a key or value projection of the V voxels would cost
    V x dim x dim per layer, more than the attention itself, and the voxel features are already a learned projection
    (``ReferringHead`` step 1-2). One ``scaled_dot_product_attention`` call, O(Q V dim).

    forward(queries [S, Q, dim], voxels [S, V, dim], allowed bool [S, Q, V] or None (True = may attend; every row
    needs a True)) -> [S, Q, dim].
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, voxels: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        s, nq, dim = queries.shape
        qh = self.q(queries).view(s, nq, self.heads, self.head_dim).transpose(1, 2)  # [S, H, Q, dh]
        mem = voxels.view(s, voxels.shape[1], self.heads, self.head_dim).transpose(1, 2)  # [S, H, V, dh], a view
        mask = None if allowed is None else allowed[:, None]
        pooled = F.scaled_dot_product_attention(qh, mem, mem, attn_mask=mask)
        return self.out(pooled.transpose(1, 2).reshape(s, nq, dim))


class DecoderLayer(nn.Module):
    """One QMP layer: queries [S, Q, dim] cross-attend to voxels [S, V, dim], then self-attend, then an FFN; each
    step residual + LayerNorm (post-norm, as the authors' QMP). Returns the updated queries [S, Q, dim]."""

    def __init__(self, dim: int, heads: int, ffn_mult: int = 4):
        super().__init__()
        self.cross = VoxelCrossAttention(dim, heads)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.ReLU(), nn.Linear(ffn_mult * dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, q: torch.Tensor, voxels: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norms[0](q + self.cross(q, voxels, allowed))
        q = self.norms[1](q + self.self_attn(q, q, q, need_weights=False)[0])
        return self.norms[2](q + self.ffn(q))


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class ReferringHead(nn.Module):
    """LESS referring segmentation head (see the module docstring for the computation).

    in_channels: width C_in of the per-voxel input features (backbone features, optionally concatenated with the
    semantic head's language-grounded features).

    forward(voxel_feats [V, C_in] float, xyz [V, 3] float metres, words [L, text_dim] or [S, L, text_dim],
    word_mask bool [L] or [S, L] (True = real token; each description needs at least one), sentence [text_dim] or
    [S, text_dim]) -> dict, always with a leading S (S = 1 for unbatched input):

    * ``mask_logits`` [S, V]: the final mask per description (sigmoid > 0.5 = referred voxel);
    * ``all_mask_logits`` [S, Q, V]: every query's mask;
    * ``query_logits`` [S, Q] and ``query_scores`` [S, Q]: QSA similarities before / after the softmax over queries
      (uniform scores without QSA);
    * ``best_query`` int64 [S]: the query most similar to the sentence;
    * ``point_embed`` [S, V, dim]: the sentence-aware voxel features f (input of L_p2p, as in the authors' code).
    """

    def __init__(self, in_channels: int, cfg: ReferringConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ReferringConfig()
        self.in_channels = int(in_channels)
        d = cfg.dim
        pos_ch = 3 + 6 * cfg.pos_frequencies if cfg.pos_encoding else 0
        self.voxel_in = nn.Linear(self.in_channels + pos_ch, d)
        if cfg.use_pwca:
            self.text_norm = nn.LayerNorm(cfg.text_dim)
            # single-head attention voxel -> words: scores <v0, K w>, values O V w (query/output maps folded in)
            self.word_key = nn.Linear(cfg.text_dim, d)
            self.word_value = _mlp(cfg.text_dim, d, d)
        else:
            self.sentence_in = _mlp(cfg.text_dim, d, d)
        self.fuse_norm = nn.LayerNorm(d)
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, d) * 0.5)
        self.query_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.num_heads) for _ in range(cfg.num_layers))
        self.mask_mlp = _mlp(d, d, d)
        if cfg.use_qsa:
            self.qsa_query = nn.Linear(d, d)
            self.qsa_sentence = _mlp(cfg.text_dim, d, d)

    def _masks(self, q: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Queries [S, Q, dim], voxel features [S, V, dim] -> mask logits [S, Q, V]. (A per-query offset needs no
        bias term: f = LayerNorm(.) carries the norm's learned shift beta, and <m_k, beta> is one.)"""
        return torch.bmm(self.mask_mlp(q), f.transpose(1, 2))

    def forward(self, voxel_feats: torch.Tensor, xyz: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                sentence: torch.Tensor) -> dict:
        cfg = self.cfg
        if words.dim() == 2:
            words, word_mask, sentence = words[None], word_mask[None], sentence[None]
        if voxel_feats.dim() != 2 or voxel_feats.shape[1] != self.in_channels or xyz.shape != (voxel_feats.shape[0], 3):
            raise ValueError(f"referring head: voxel_feats must be [V, {self.in_channels}] and xyz [V, 3], got "
                             f"{tuple(voxel_feats.shape)} and {tuple(xyz.shape)}")
        s = words.shape[0]
        if word_mask.shape != words.shape[:2] or sentence.shape != (s, cfg.text_dim) or words.shape[2] != cfg.text_dim:
            raise ValueError(f"referring head: got words {tuple(words.shape)}, word_mask {tuple(word_mask.shape)}, "
                             f"sentence {tuple(sentence.shape)} (text_dim {cfg.text_dim})")

        # 1. voxel projection, shared by all descriptions
        w_in = self.voxel_in.weight
        v0 = torch.addmm(self.voxel_in.bias, voxel_feats.float(), w_in[:, : self.in_channels].T)  # [V, d]
        if cfg.pos_encoding:  # the same linear map on [features, positions], without concatenating them
            v0 = v0.addmm_(fourier_positions(xyz, cfg.pos_frequencies), w_in[:, self.in_channels:].T)

        # 2. language fusion -> sentence-aware voxel features f [S, V, d]
        if cfg.use_pwca:
            word_mask = word_mask.bool()
            if not word_mask.any(1).all():
                raise ValueError("referring head: every description needs at least one real word (word_mask row)")
            w = self.text_norm(words.float())
            # the S descriptions ride on the heads axis, so the V voxel queries are shared, not copied per description
            attended = F.scaled_dot_product_attention(
                v0.expand(1, s, *v0.shape), self.word_key(w)[None], self.word_value(w)[None],
                attn_mask=word_mask[None, :, None, :])[0]
            # in place when no autograd graph needs the attention output: saves a fresh S x V x dim buffer
            f = self.fuse_norm(attended + v0 if attended.requires_grad else attended.add_(v0))
        else:
            f = self.fuse_norm(v0 + self.sentence_in(sentence.float())[:, None, :])

        # 3. query mask predictor
        q = self.query_norm(self.queries).expand(s, -1, -1)
        for layer in self.layers:
            allowed = None
            if cfg.masked_attention:
                allowed = self._masks(q, f).detach() >= 0  # sigmoid >= 0.5
                allowed = allowed | ~allowed.any(-1, keepdim=True)  # an empty mask attends everywhere
            q = layer(q, f, allowed)
        all_masks = self._masks(q, f)  # [S, Q, V]

        # 4. query-sentence alignment
        if cfg.use_qsa:
            s_emb = self.qsa_sentence(sentence.float())
            query_logits = torch.einsum("sqd,sd->sq", self.qsa_query(q), s_emb) / math.sqrt(cfg.dim)
        else:
            query_logits = torch.zeros(s, cfg.num_queries, device=q.device, dtype=q.dtype)
        scores = query_logits.softmax(dim=1)
        best = query_logits.argmax(dim=1)
        if cfg.select == "argmax" and cfg.use_qsa and not self.training:
            mask_logits = all_masks[torch.arange(s, device=best.device), best]
        else:
            mask_logits = torch.einsum("sq,sqv->sv", scores, all_masks)
        return {"mask_logits": mask_logits, "all_mask_logits": all_masks, "query_logits": query_logits,
                "query_scores": scores, "best_query": best, "point_embed": f}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
