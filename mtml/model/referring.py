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

Superpoints (``superpoints``): LESS runs on superpoints, an over-segmentation whose segments are each part of one
object, not on single points. Here the superpoints are the instances the frozen MTML heads find, plus one segment
per semantic label for the rest (``mtml.predict.infer.referring_superpoints``). Step 1 then pools the voxel features of each
superpoint (mean) and appends its geometry (extent, bottom and top height, log voxel count: ``pool_superpoints``);
steps 2-4 run on the P superpoints, and every voxel takes its superpoint's mask logit and features. After step 2,
``context_layers`` transformer layers run over each description's sentence-aware superpoints together with its
words, so that superpoints attend to each other and back to the words, layer after layer (relations such as "left
of the pillar" need the object to find the pillar first, then compare positions).

Cost: the only quadratic terms are V x L (PWCA) and V x Q (decoder cross-attention and masks); nothing is V x V
(the context layers are (P + L) x (P + L), over superpoints and words only). The voxel-side work that does not depend on the description
(step 1) is done once for all S descriptions.
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

    ``superpoints``: run on superpoints (module docstring; ``forward`` then needs their ids); ``context_layers``:
    self-attention layers among the superpoints (needs ``superpoints``); ``sentence_queries``: the learned queries
    start from ``queries + Linear(sentence)``, so each query knows what it looks for before its first layer;
    ``fusion_ffn``: a residual FFN after PWCA, so that a voxel's own features and the words it attended to combine
    non-linearly ("a pillar" and "the sentence asks for a pillar"), which a sum alone cannot express.
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
    superpoints: bool = False
    context_layers: int = 0
    sentence_queries: bool = False
    fusion_ffn: bool = False

    def __post_init__(self):
        if self.context_layers and not self.superpoints:
            raise ValueError("referring head: context_layers attend among superpoints; set superpoints: true")
        if self.dim % self.num_heads:
            raise ValueError(f"referring head: dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.select not in ("weighted", "argmax"):
            raise ValueError(f"referring head: select must be 'weighted' or 'argmax', got {self.select!r}")
        if min(self.dim, self.num_queries, self.text_dim) < 1 or self.num_layers < 0 or self.pos_frequencies < 0:
            raise ValueError("referring head: dim, num_queries, text_dim must be positive, num_layers >= 0")


GEOMETRY_CHANNELS = 6  # per superpoint: extent x, y, z; bottom and top height; log voxel count


def pool_superpoints(voxel_feats: torch.Tensor, xyz: torch.Tensor, superpoints: torch.Tensor) -> tuple:
    """Voxel features [V, C], voxel centres [V, 3] (metres) and superpoint ids int64 [V] in [0, P) ->
    (superpoint features [P, C + GEOMETRY_CHANNELS], superpoint centres [P, 3] metres).

    Features are the mean over the superpoint's voxels followed by its geometry: the extent of its voxel centres
    along x, y, z, the height of its lowest and highest voxel centre above the scene's lowest one (metres) and the
    log of its voxel count. Centres are the mean voxel centre. Every id in [0, P) must have a voxel.
    """
    p = int(superpoints.max()) + 1
    feats, xyz = voxel_feats.float(), xyz.float()
    counts = torch.bincount(superpoints, minlength=p).to(feats.dtype)
    if not bool((counts > 0).all()):
        raise ValueError("referring head: superpoint ids must cover 0 .. P-1 with no gap")
    mean = torch.zeros(p, feats.shape[1], dtype=feats.dtype, device=feats.device).index_add_(0, superpoints, feats)
    centres = torch.zeros(p, 3, dtype=xyz.dtype, device=xyz.device).index_add_(0, superpoints, xyz) / counts[:, None]
    index = superpoints[:, None].expand(-1, 3)
    lo = torch.full((p, 3), math.inf, dtype=xyz.dtype, device=xyz.device).scatter_reduce(0, index, xyz, "amin")
    hi = torch.full((p, 3), -math.inf, dtype=xyz.dtype, device=xyz.device).scatter_reduce(0, index, xyz, "amax")
    floor = xyz[:, 2].min()
    geometry = torch.cat([hi - lo, lo[:, 2:] - floor, hi[:, 2:] - floor, counts.log()[:, None]], dim=1)
    return torch.cat([mean / counts[:, None], geometry], dim=1), centres


def fourier_positions(xyz: torch.Tensor, num_frequencies: int, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Centres [V, 3] (metres) -> position features float [V, 3 + 6 * num_frequencies].

    Coordinates are first normalised isotropically to [-1, 1] over the scene's bounding box (of ``reference`` [R, 3]
    when given, e.g. the voxels of the scene whose superpoint centres ``xyz`` are; centre at 0, the longest side
    spanning [-1, 1]); the features are ``x`` (3 columns), then for each coordinate c in x, y, z
    ``sin(2^k pi c)`` for k = 0 .. F-1 followed by ``cos(2^k pi c)`` for k = 0 .. F-1 (6 F columns; the cosines are
    computed as sines with a pi/2 phase, in one call).
    """
    xyz = xyz.float()
    box = xyz if reference is None else reference.float()
    lo, hi = box.amin(0), box.amax(0)
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
    semantic head's class probabilities).

    forward(voxel_feats [V, C_in] float, xyz [V, 3] float metres, words [L, text_dim] or [S, L, text_dim],
    word_mask bool [L] or [S, L] (True = real token; each description needs at least one), sentence [text_dim] or
    [S, text_dim], superpoints int64 [V] ids in [0, P) (needed with ``cfg.superpoints``, else ignored)) -> dict,
    always with a leading S (S = 1 for unbatched input), per voxel also on superpoints:

    * ``mask_logits`` [S, V]: the final mask per description (sigmoid > 0.5 = referred voxel);
    * ``all_mask_logits`` [S, Q, V]: every query's mask;
    * ``query_logits`` [S, Q] and ``query_scores`` [S, Q]: QSA similarities before / after the softmax over queries
      (uniform scores without QSA);
    * ``best_query`` int64 [S]: the query most similar to the sentence;
    * ``point_embed`` [S, V, dim]: the sentence-aware voxel features f (input of L_p2p, as in the authors' code);
    * on superpoints also ``superpoints`` (the ids given), ``superpoint_mask_logits`` [S, P] and ``superpoint_embed``
      [S, P, dim], which the loss reads (``mtml.losses.referring.referring_loss``).
    """

    def __init__(self, in_channels: int, cfg: ReferringConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ReferringConfig()
        self.in_channels = int(in_channels)
        d = cfg.dim
        pos_ch = 3 + 6 * cfg.pos_frequencies if cfg.pos_encoding else 0
        self.feat_channels = self.in_channels + (GEOMETRY_CHANNELS if cfg.superpoints else 0)
        self.voxel_in = nn.Linear(self.feat_channels + pos_ch, d)
        self.context = None
        if cfg.context_layers:
            layer = nn.TransformerEncoderLayer(d, cfg.num_heads, 4 * d, dropout=0.0, batch_first=True)
            self.context = nn.TransformerEncoder(layer, cfg.context_layers, enable_nested_tensor=False)
            self.context_words = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d))
        if cfg.use_pwca:
            self.text_norm = nn.LayerNorm(cfg.text_dim)
            # single-head attention voxel -> words: scores <v0, K w>, values O V w (query/output maps folded in)
            self.word_key = nn.Linear(cfg.text_dim, d)
            self.word_value = _mlp(cfg.text_dim, d, d)
        else:
            self.sentence_in = _mlp(cfg.text_dim, d, d)
        self.fuse_norm = nn.LayerNorm(d)
        if cfg.fusion_ffn:
            self.fuse_ffn = _mlp(d, d, 2 * d)
            self.fuse_ffn_norm = nn.LayerNorm(d)
        if cfg.sentence_queries:
            self.sentence_query = nn.Linear(cfg.text_dim, d)
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
                sentence: torch.Tensor, superpoints: torch.Tensor | None = None) -> dict:
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

        # 1. voxel (or superpoint) projection, shared by all descriptions
        elements, centres = voxel_feats.float(), xyz
        if cfg.superpoints:
            if superpoints is None or superpoints.shape != (voxel_feats.shape[0],):
                raise ValueError("referring head: this head runs on superpoints; pass superpoints int64 [V]")
            elements, centres = pool_superpoints(voxel_feats, xyz, superpoints)
        w_in = self.voxel_in.weight
        v0 = torch.addmm(self.voxel_in.bias, elements, w_in[:, : self.feat_channels].T)  # [V or P, d]
        if cfg.pos_encoding:  # the same linear map on [features, positions], without concatenating them
            v0 = v0.addmm_(fourier_positions(centres, cfg.pos_frequencies, reference=xyz),
                           w_in[:, self.feat_channels:].T)

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
        if cfg.fusion_ffn:
            f = self.fuse_ffn_norm(f + self.fuse_ffn(f))
        if self.context is not None:  # sentence-aware superpoints attend to each other and to the words
            tokens = torch.cat([f, self.context_words(words.float())], dim=1)  # [S, P + L, d]
            padding = torch.cat([torch.zeros_like(word_mask[:, :1]).expand(-1, f.shape[1]), ~word_mask.bool()], dim=1)
            f = self.context(tokens, src_key_padding_mask=padding)[:, : f.shape[1]]

        # 3. query mask predictor
        if cfg.sentence_queries:
            q = self.query_norm(self.queries + self.sentence_query(sentence.float())[:, None, :])
        else:
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
        extra = {}
        if cfg.superpoints:  # every voxel takes its superpoint's values
            extra = {"superpoints": superpoints, "superpoint_mask_logits": mask_logits, "superpoint_embed": f}
            mask_logits, all_masks, f = mask_logits[:, superpoints], all_masks[:, :, superpoints], f[:, superpoints]
        return {"mask_logits": mask_logits, "all_mask_logits": all_masks, "query_logits": query_logits,
                "query_scores": scores, "best_query": best, "point_embed": f, **extra}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
