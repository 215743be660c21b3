"""Mean-shift clustering of point embeddings (scikit-learn's ``MeanShift`` semantics).

One algorithm, three implementations behind :func:`mean_shift`:

* ``"cpp"``: the C++/OpenMP kernel of ``mtml._meanshift_ext`` (built from ``cuda_ext/``);
* ``"cuda"``: the CUDA kernel of the same extension (when it was compiled with CUDA);
* ``"torch"``: the PyTorch reference below, vectorised and chunked, CPU or GPU.

Algorithm (sklearn ``MeanShift(bandwidth, seeds, bin_seeding, cluster_all=True)``):

1. every seed (default: every point; ``seeds="bins"``: one per occupied bandwidth-sized bin) moves
   to the mean of the points within ``bandwidth`` of it (flat kernel, distance ``<=``), or to the
   gaussian-weighted mean (weights ``exp(-d^2 / (2 bw^2))``) of the points within ``3 bandwidth``,
   until it moves by at most ``tol * bandwidth`` or ``max_iter`` is reached (at most
   ``max_iter + 1`` updates, as sklearn counts them);
2. the intensity of a converged seed is the number of points within ``bandwidth`` of the last
   centre at which the kernel was evaluated; seeds whose kernel support became empty are dropped;
3. identical modes are merged (sklearn keys a dict by the mode), the modes are sorted by
   ``(intensity, mode)`` descending and a mode is kept unless it lies within ``bandwidth`` of an
   already kept one;
4. every point is labelled with its nearest kept mode (ties: the lowest index).

Neighbours are found with a spatial hash: cells of edge slightly above the kernel radius along up
to four "hashed" coordinates (those along which the data spans the most cells), so a query only
visits the 3^h cells around its own; the remaining coordinates are filtered by the exact distance.
When no coordinate spans enough cells to prune anything, everything is one cell (tiled brute
force). Memory is O(N + number of seeds): no N x N (or seeds x N) matrix is ever formed.

The three implementations perform the same float32 operations in the same order (squared
distances summed over dimensions in order, no fused multiply-adds, coordinate sums in float64), so
they agree label for label except for float ties.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:  # compiled from cuda_ext/ by setup.py
    from mtml import _meanshift_ext as _ext
except Exception:  # not built, or built against another torch
    _ext = None

__all__ = ["mean_shift", "extension_available"]

KERNELS = {"flat": 0, "gaussian": 1}
BACKENDS = ("auto", "torch", "cpp", "cuda")

_FLT_MAX = float(np.finfo(np.float32).max)
_CELL_MARGIN = 1e-4  # cell edge = radius * (1 + margin): floating-point slack for the cell cover
_MAX_HASH_DIMS = 4  # the kernels support at most 4 (3^3 = 27 cell rows per query)
_MIN_EXTENT = 4  # a coordinate spanning fewer cells than this prunes (almost) nothing
_MAX_KEY_SPACE = 1 << 62
_ELEM_BUDGET = 1 << 23  # elements per temporary tensor of the PyTorch reference
_NMS_BLOCK = 2048

_warned: set[str] = set()  # warnings already given (each is given once per process)


def extension_available(device: str | torch.device = "cpu") -> bool:
    """Whether the compiled kernel can run on ``device`` ("cpu" or a CUDA device)."""
    if _ext is None:
        return False
    dev = torch.device(device)
    if dev.type == "cpu":
        return True
    return dev.type == "cuda" and bool(_ext.has_cuda())


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Plan: bandwidth-derived constants and the spatial hash layout, shared by every implementation
# ---------------------------------------------------------------------------------------------


def _f32(v: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(v))


@dataclass(frozen=True)
class _Plan:
    D: int
    dims: tuple[int, ...]  # hashed coordinates, the last one has key stride 1
    lo: tuple[int, ...]  # smallest occupied cell coordinate per hashed coordinate
    extent: tuple[int, ...]  # cells per hashed coordinate
    stride: tuple[int, ...]
    cell: float
    r2: float  # kernel support radius^2 (float32 value)
    bw2: float  # bandwidth^2 (float32 value)
    inv_two_bw2: float
    tol2: float
    kernel: int
    max_iter: int
    bw: float  # bandwidth as float32

    @property
    def h(self) -> int:
        return len(self.dims)

    def to_ext(self) -> Any:
        return _ext.Plan(
            D=self.D, dims=list(self.dims), lo=list(self.lo), extent=list(self.extent),
            cell=self.cell, r2=self.r2, bw2=self.bw2, inv_two_bw2=self.inv_two_bw2,
            tol2=self.tol2, kernel=self.kernel, max_iter=self.max_iter,
        )


def _make_plan(x: torch.Tensor, bandwidth: float, kernel: int, max_iter: int, tol: float) -> _Plan:
    N, D = x.shape
    bw = _f32(min(float(bandwidth), _FLT_MAX))
    if not bw > 0:
        raise ValueError(f"mean_shift: bandwidth={bandwidth!r} is 0 in float32")
    radius = bw if kernel == KERNELS["flat"] else 3.0 * bw
    cell = radius * (1.0 + _CELL_MARGIN)
    mins = x.amin(dim=0).tolist()
    maxs = x.amax(dim=0).tolist()
    lo = [math.floor(v / cell) for v in mins]
    extent = [math.floor(v / cell) - l + 1 for v, l in zip(maxs, lo)]
    # hash the coordinates spanning the most cells (ties: lower index), while the key fits int64
    dims: list[int] = []
    space = 1
    for j in sorted(range(D), key=lambda j: (-extent[j], j)):
        if len(dims) == _MAX_HASH_DIMS or extent[j] < _MIN_EXTENT:
            break
        if space * extent[j] > _MAX_KEY_SPACE:
            continue
        dims.append(j)
        space *= extent[j]
    ext = [extent[j] for j in dims]
    stride = [1] * len(dims)
    for j in range(len(dims) - 2, -1, -1):
        stride[j] = stride[j + 1] * ext[j + 1]
    return _Plan(
        D=D, dims=tuple(dims), lo=tuple(lo[j] for j in dims), extent=tuple(ext),
        stride=tuple(stride), cell=cell, r2=_f32(radius * radius), bw2=_f32(bw * bw),
        inv_two_bw2=1.0 / (2.0 * bw * bw), tol2=(tol * bw) ** 2, kernel=kernel,
        max_iter=max_iter, bw=bw,
    )


# ---------------------------------------------------------------------------------------------
# PyTorch reference
# ---------------------------------------------------------------------------------------------


def _cell_coords(plan: _Plan, pts: torch.Tensor, items: bool) -> torch.Tensor:
    """[M, h] int64 cell coordinates relative to plan.lo (same formula as ms::cell_coord)."""
    cell = torch.tensor(plan.cell, dtype=torch.float64, device=pts.device)  # not a CPU scalar:
    cols = []  # CUDA would turn division by a CPU scalar into a multiplication by its inverse
    for j, d in enumerate(plan.dims):
        rel = torch.floor(pts[:, d].double() / cell) - plan.lo[j]
        if items:
            rel = rel.clamp(0, plan.extent[j] - 1)
        else:
            rel = rel.clamp(-2, plan.extent[j] + 1)
        cols.append(rel.long())
    if not cols:
        return torch.zeros((pts.shape[0], 0), dtype=torch.long, device=pts.device)
    return torch.stack(cols, dim=1)


def _keys(plan: _Plan, coords: torch.Tensor) -> torch.Tensor:
    key = torch.zeros(coords.shape[0], dtype=torch.long, device=coords.device)
    for j in range(plan.h):
        key += coords[:, j] * plan.stride[j]
    return key


class _Grid:
    """Items sorted by cell key: float32 columns, float64 rows, keys and the sorting permutation."""

    def __init__(self, plan: _Plan, pts: torch.Tensor):
        keys = _keys(plan, _cell_coords(plan, pts, items=True))
        self.keys, self.perm = torch.sort(keys, stable=True)
        self.pts = pts[self.perm].contiguous()
        self.cols = [self.pts[:, d].contiguous() for d in range(pts.shape[1])]
        self._pts64: torch.Tensor | None = None
        self.n = pts.shape[0]

    @property
    def pts64(self) -> torch.Tensor:
        if self._pts64 is None:
            self._pts64 = self.pts.double()
        return self._pts64


def _rows(plan: _Plan) -> int:
    return 3 ** (plan.h - 1) if plan.h > 0 else 1


def _query_ranges(plan: _Plan, grid: _Grid, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, rows] ranges [beg, end) of grid items in the 3^h cells around each query cell."""
    M, dev = q.shape[0], q.device
    if plan.h == 0:
        beg = torch.zeros((M, 1), dtype=torch.long, device=dev)
        return beg, torch.full((M, 1), grid.n, dtype=torch.long, device=dev)
    h = plan.h
    offs = torch.tensor(list(itertools.product((-1, 0, 1), repeat=h - 1)), dtype=torch.long,
                        device=dev).reshape(3 ** (h - 1), h - 1)
    lead = q[:, None, : h - 1] + offs[None]  # [M, rows, h-1]
    ext_lead = torch.tensor(plan.extent[: h - 1], dtype=torch.long, device=dev)
    stride_lead = torch.tensor(plan.stride[: h - 1], dtype=torch.long, device=dev)
    valid = ((lead >= 0) & (lead < ext_lead)).all(dim=-1)
    base = (lead * stride_lead).sum(dim=-1)
    a = (q[:, h - 1] - 1).clamp(min=0)
    b = (q[:, h - 1] + 1).clamp(max=plan.extent[h - 1] - 1)
    valid &= (a <= b)[:, None]
    klo = (base + a[:, None]).contiguous()
    khi = (base + b[:, None] + 1).contiguous()
    beg = torch.searchsorted(grid.keys, klo)
    end = torch.searchsorted(grid.keys, khi)
    return beg, torch.where(valid, end, beg)


def _pairs(beg: torch.Tensor, end: torch.Tensor, budget: int):
    """Yield (query index, item index) tensors covering every item of every range, ~budget at a time."""
    M, R = beg.shape
    dev = beg.device
    lens = (end - beg).reshape(-1)
    qid = torch.arange(M, device=dev).repeat_interleave(R)
    start = beg.reshape(-1)
    keep = lens > 0
    lens, qid, start = lens[keep], qid[keep], start[keep]
    if lens.numel() == 0:
        return
    if int(lens.max()) > budget:  # split long ranges into pieces of at most `budget` items
        npieces = (lens + budget - 1) // budget
        rep = torch.repeat_interleave(torch.arange(lens.numel(), device=dev), npieces)
        first = torch.cumsum(npieces, 0) - npieces
        k = torch.arange(rep.numel(), device=dev) - first[rep]
        start = start[rep] + k * budget
        lens = torch.minimum(lens[rep] - k * budget, torch.full_like(k, budget))
        qid = qid[rep]
    chunk = (torch.cumsum(lens, 0) - lens) // budget
    _, counts = torch.unique_consecutive(chunk, return_counts=True)
    s = 0
    for c in counts.tolist():
        l, qs, st = lens[s : s + c], qid[s : s + c], start[s : s + c]
        s += c
        total = int(l.sum())
        off = torch.cumsum(l, 0) - l
        qi = torch.repeat_interleave(qs, l, output_size=total)
        pi = torch.repeat_interleave(st - off, l, output_size=total) + torch.arange(total, device=dev)
        yield qi, pi


def _sq_dist(cols: list[torch.Tensor], pi: torch.Tensor, q: torch.Tensor, qi: torch.Tensor) -> torch.Tensor:
    """float32 squared distances between items cols[:, pi] and queries q[qi], summed in dim order."""
    s = None
    for d, col in enumerate(cols):
        t = col[pi] - q[:, d][qi]
        s = t * t if s is None else s + t * t
    return s


def _pair_budget(D: int) -> int:
    return max(1 << 12, _ELEM_BUDGET // (D + 2))


def _query_block(plan: _Plan) -> int:
    return max(1, (1 << 20) // _rows(plan))


def _kernel_sums(plan: _Plan, grid: _Grid, m: torch.Tensor):
    M, D = m.shape
    dev = m.device
    q = _cell_coords(plan, m, items=False)
    beg, end = _query_ranges(plan, grid, q)
    acc = torch.zeros((M, D), dtype=torch.float64, device=dev)
    wsum = torch.zeros(M, dtype=torch.float64, device=dev)
    nsup = torch.zeros(M, dtype=torch.long, device=dev)
    nbw = torch.zeros(M, dtype=torch.long, device=dev)
    for qi, pi in _pairs(beg, end, _pair_budget(D)):
        d2 = _sq_dist(grid.cols, pi, m, qi)
        ok = d2 <= plan.r2
        qi, pi, d2 = qi[ok], pi[ok], d2[ok]
        nsup += torch.bincount(qi, minlength=M)
        if plan.kernel == KERNELS["flat"]:
            acc.index_add_(0, qi, grid.pts64[pi])
        else:
            w = torch.exp(-d2.double() * plan.inv_two_bw2)
            wsum.index_add_(0, qi, w)
            acc.index_add_(0, qi, grid.pts64[pi] * w[:, None])
            nbw += torch.bincount(qi[d2 <= plan.bw2], minlength=M)
    if plan.kernel == KERNELS["flat"]:
        wsum = nsup.double()
        nbw = nsup
    return acc, wsum, nsup, nbw


def _shift_torch(plan: _Plan, grid: _Grid, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Modes [S, D] and intensities [S] (0: seed dropped) of every seed."""
    S, D = seeds.shape
    dev = seeds.device
    modes = seeds.clone()
    counts = torch.zeros(S, dtype=torch.long, device=dev)
    active = torch.arange(S, device=dev)
    for it in range(plan.max_iter + 1):
        if active.numel() == 0:
            break
        still = []
        for blk in active.split(_query_block(plan)):
            m = modes[blk]
            acc, wsum, nsup, nbw = _kernel_sums(plan, grid, m)
            empty = nsup == 0
            new = (acc / wsum[:, None]).float() + 0.0  # + 0.0 turns -0.0 into +0.0
            s2 = torch.zeros(m.shape[0], dtype=torch.float64, device=dev)
            for d in range(D):
                dd = new[:, d].double() - m[:, d].double()
                s2 = s2 + dd * dd
            done = empty | (s2 <= plan.tol2) | (it >= plan.max_iter)
            upd = ~empty
            modes[blk[upd]] = new[upd]
            counts[blk[upd]] = nbw[upd]
            counts[blk[empty]] = 0
            still.append(blk[~done])
        active = torch.cat(still)
    return modes, counts


def _nms_torch(plan: _Plan, modes: torch.Tensor) -> torch.Tensor:
    """Greedy suppression in order: keep a mode unless within bandwidth of an earlier kept one."""
    G, D = modes.shape
    dev = modes.device
    grid = _Grid(plan, modes)
    status = torch.zeros(G, dtype=torch.int8, device=dev)  # 0 undecided, 1 kept, 2 suppressed
    for b0 in range(0, G, _NMS_BLOCK):
        b1 = min(G, b0 + _NMS_BLOCK)
        nb = b1 - b0
        qm = modes[b0:b1]
        beg, end = _query_ranges(plan, grid, _cell_coords(plan, qm, items=False))
        local = torch.zeros(nb, dtype=torch.int8, device=dev)
        src, dst = [], []
        for qi, pi in _pairs(beg, end, _pair_budget(D)):
            j = grid.perm[pi]
            earlier = j < qi + b0
            qi, pi, j = qi[earlier], pi[earlier], j[earlier]
            close = _sq_dist(grid.cols, pi, qm, qi) <= plan.bw2
            qi, j = qi[close], j[close]
            before = j < b0
            by_kept = before & (status[j.clamp(max=max(b0 - 1, 0))] == 1)
            local[qi[by_kept]] = 2
            inside = ~before
            src.append(j[inside] - b0)
            dst.append(qi[inside])
        src_t = torch.cat(src) if src else torch.zeros(0, dtype=torch.long, device=dev)
        dst_t = torch.cat(dst) if dst else torch.zeros(0, dtype=torch.long, device=dev)
        for _ in range(32):  # each round decides at least the first undecided mode
            und = local == 0
            if not bool(und.any()):
                break
            s_stat = local[src_t]
            kept_pred = torch.zeros(nb, dtype=torch.bool, device=dev)
            kept_pred[dst_t[s_stat == 1]] = True
            und_pred = torch.zeros(nb, dtype=torch.bool, device=dev)
            und_pred[dst_t[s_stat == 0]] = True
            local[und & kept_pred] = 2
            local[und & ~kept_pred & ~und_pred] = 1
        else:
            if bool((local == 0).any()):  # long suppression chains: finish sequentially
                loc = local.cpu().numpy()
                s_np, d_np = src_t.cpu().numpy(), dst_t.cpu().numpy()
                order = np.argsort(d_np, kind="stable")
                s_np, d_np = s_np[order], d_np[order]
                bounds = np.searchsorted(d_np, np.arange(nb + 1))
                for i in np.flatnonzero(loc == 0):
                    preds = s_np[bounds[i] : bounds[i + 1]]
                    loc[i] = 2 if (loc[preds] == 1).any() else 1
                local = torch.from_numpy(loc).to(dev)
        status[b0:b1] = local
    return status == 1


def _merge_torch(plan: _Plan, modes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """sklearn's post-processing of the converged seeds: the kept modes [K, D], strongest first."""
    idx = torch.nonzero(counts > 0).flatten()
    if idx.numel() == 0:
        return modes.new_zeros((0, modes.shape[1]))
    uniq, inv = torch.unique(modes[idx], dim=0, return_inverse=True)  # rows ascending
    pos = torch.arange(idx.numel(), device=modes.device)
    last = torch.full((uniq.shape[0],), -1, dtype=torch.long, device=modes.device)
    last = last.scatter_reduce(0, inv, pos, reduce="amax")  # sklearn keeps the last intensity
    intensity = counts[idx][last]
    uniq, intensity = uniq.flip(0), intensity.flip(0)  # modes descending
    order = torch.sort(intensity, descending=True, stable=True).indices
    ranked = uniq[order].contiguous()
    return ranked[_nms_torch(plan, ranked)]


def _label_torch(plan: _Plan, x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    N, D = x.shape
    K = kept.shape[0]
    dev = x.device
    grid = _Grid(plan, kept)
    labels = torch.empty(N, dtype=torch.long, device=dev)
    inf = float("inf")
    for s0 in range(0, N, _query_block(plan)):
        xb = x[s0 : s0 + _query_block(plan)]
        M = xb.shape[0]
        beg, end = _query_ranges(plan, grid, _cell_coords(plan, xb, items=False))
        best = torch.full((M,), inf, dtype=torch.float32, device=dev)
        found = torch.zeros(M, dtype=torch.bool, device=dev)
        for qi, pi in _pairs(beg, end, _pair_budget(D)):
            d2 = _sq_dist(grid.cols, pi, xb, qi)
            best.scatter_reduce_(0, qi, d2, reduce="amin")
            found[qi] = True
        lab = torch.full((M,), K, dtype=torch.long, device=dev)
        for qi, pi in _pairs(beg, end, _pair_budget(D)):
            d2 = _sq_dist(grid.cols, pi, xb, qi)
            tie = d2 == best[qi]
            lab.scatter_reduce_(0, qi[tie], grid.perm[pi[tie]], reduce="amin")
        resolved = found & ((best <= plan.r2) | (plan.h == 0))
        rest = torch.nonzero(~resolved).flatten()
        tile = max(1, _ELEM_BUDGET // max(K, 1))
        for r0 in range(0, rest.numel(), tile):  # nearest mode may lie outside the 3^h cells
            ridx = rest[r0 : r0 + tile]
            xr = xb[ridx]
            d2 = None
            for d in range(D):
                t = kept[None, :, d] - xr[:, None, d]
                d2 = t * t if d2 is None else d2 + t * t
            lab[ridx] = torch.argmin(d2, dim=1)
        labels[s0 : s0 + M] = lab
    return labels


def _bin_seeds_torch(x: torch.Tensor, bw: float) -> torch.Tensor:
    """sklearn's get_bin_seeds(x, bw, min_bin_freq=1) in first-occurrence order (float32)."""
    bw_t = torch.tensor(bw, dtype=torch.float32, device=x.device)
    rounded = torch.round(x / bw_t) + 0.0
    uniq, inv = torch.unique(rounded, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), x.shape[0], dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, inv, torch.arange(x.shape[0], device=x.device), reduce="amin")
    return uniq[torch.argsort(first)] * bw_t


def _mean_shift_torch(plan: _Plan, x: torch.Tensor, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(seeds, str):
        seeds = _bin_seeds_torch(x, plan.bw)
        if seeds.shape[0] == x.shape[0]:  # sklearn: binning failed, seed with the points
            seeds = x
    elif seeds is None:
        seeds = x
    grid = _Grid(plan, x)
    modes, counts = _shift_torch(plan, grid, seeds)
    del grid
    kept = _merge_torch(plan, modes, counts)
    if kept.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=x.device), kept
    return _label_torch(plan, x, kept), kept


# ---------------------------------------------------------------------------------------------
# compiled kernels
# ---------------------------------------------------------------------------------------------


def _mean_shift_cpp(plan: _Plan, x: torch.Tensor, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(seeds, str):
        seeds = _ext.bin_seeds(x, plan.bw)
        if seeds.shape[0] == x.shape[0]:
            seeds = x
    elif seeds is None:
        seeds = x
    return _ext.mean_shift_cpu(x, seeds, plan.to_ext())


def _mean_shift_cuda(plan: _Plan, x: torch.Tensor, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(seeds, str):
        seeds = _bin_seeds_torch(x, plan.bw)
        if seeds.shape[0] == x.shape[0]:
            seeds = x
    elif seeds is None:
        seeds = x
    ep = plan.to_ext()
    stream = torch.cuda.current_stream(x.device).cuda_stream
    keys, perm = torch.sort(_ext.cuda_cell_keys(x, ep, stream), stable=True)
    pts = x[perm].contiguous()
    # seeds sorted by cell so that the threads of a warp visit the same cells
    sorder = torch.sort(_ext.cuda_cell_keys(seeds, ep, stream), stable=True).indices
    m_sorted, c_sorted = _ext.cuda_shift(pts, keys, seeds[sorder].contiguous(), ep, stream)
    modes = torch.empty_like(m_sorted)
    modes[sorder] = m_sorted
    counts = torch.empty_like(c_sorted)
    counts[sorder] = c_sorted
    del pts, keys, perm
    kept = _ext.merge_modes(modes.cpu(), counts.cpu(), ep).to(x.device)
    if kept.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=x.device), kept
    mkeys, morder = torch.sort(_ext.cuda_cell_keys(kept, ep, stream), stable=True)
    labels = _ext.cuda_label(x, kept[morder].contiguous(), mkeys, morder.contiguous(), kept, ep, stream)
    return labels, kept


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


def _as_points(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32)))
    if t.dim() != 2:
        raise ValueError(f"mean_shift: {name} must be a 2-D [N, D] array, got shape {tuple(t.shape)}")
    if t.dtype != torch.float32:
        if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32,
                                                          torch.int64, torch.uint8, torch.bool)):
            raise ValueError(f"mean_shift: {name} has unsupported dtype {t.dtype}")
        t = t.float()
    return t.contiguous()


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "torch":
        return "torch"
    if backend == "cpp":
        if device.type != "cpu":
            raise ValueError(f"mean_shift: backend='cpp' needs a CPU tensor, x is on {device}")
        if _ext is None:
            raise RuntimeError("mean_shift: backend='cpp' requested but mtml._meanshift_ext is not "
                               "built (reinstall with `pip install --no-build-isolation -e .`)")
        return "cpp"
    if backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"mean_shift: backend='cuda' needs a CUDA tensor, x is on {device}")
        if _ext is None or not _ext.has_cuda():
            raise RuntimeError("mean_shift: backend='cuda' requested but mtml._meanshift_ext was "
                               "built without its CUDA kernel")
        return "cuda"
    # auto
    if device.type == "cpu":
        if _ext is not None:
            return "cpp"
        _warn_once("no-ext", "mtml: the compiled mean-shift kernel (mtml._meanshift_ext) is not "
                   "available; using the slower PyTorch mean-shift")
        return "torch"
    if device.type == "cuda":
        if _ext is not None and _ext.has_cuda():
            return "cuda"
        _warn_once("no-cuda-ext", "mtml: mtml._meanshift_ext has no CUDA kernel; using the "
                   "PyTorch mean-shift on the GPU")
    return "torch"


def mean_shift(
    x,
    bandwidth: float,
    *,
    kernel: str = "flat",
    seeds=None,
    max_iter: int = 50,
    tol: float = 1e-3,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-shift clustering with scikit-learn ``MeanShift`` semantics (``cluster_all=True``).

    Args:
        x: float32 points [N, D] (torch tensor on CPU or GPU, or a numpy array).
        bandwidth: kernel bandwidth (> 0). Flat kernel: points within distance ``<= bandwidth``;
            gaussian: weights ``exp(-d^2 / (2 bandwidth^2))`` over points within ``3 bandwidth``.
        kernel: ``"flat"`` (sklearn's) or ``"gaussian"``.
        seeds: ``None`` (every point is a seed, sklearn ``bin_seeding=False``), ``"bins"`` (one
            seed per occupied bandwidth-sized bin, sklearn ``bin_seeding=True, min_bin_freq=1``)
            or explicit starting points [S, D].
        max_iter: at most ``max_iter + 1`` mean updates per seed (sklearn counts them so).
        tol: a seed has converged once it moves by at most ``tol * bandwidth``.
        backend: ``"auto"`` (compiled kernel for x's device if built, else PyTorch, warning once),
            ``"torch"``, ``"cpp"`` (CPU kernel) or ``"cuda"`` (CUDA kernel).

    Returns:
        ``(labels, modes)``: int64 [N] index of each point's mode, float32 [K, D] modes sorted by
        decreasing intensity; both on x's device (CPU for numpy input).

    Raises:
        ValueError: bad arguments, NaN/inf in x or seeds, or no seed with a point within reach.
    """
    if kernel not in KERNELS:
        raise ValueError(f"mean_shift: kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    if backend not in BACKENDS:
        raise ValueError(f"mean_shift: backend must be one of {BACKENDS}, got {backend!r}")
    try:
        bw = float(bandwidth)
    except (TypeError, ValueError):
        raise ValueError(f"mean_shift: bandwidth must be a number, got {bandwidth!r}") from None
    if math.isnan(bw) or bw <= 0:
        raise ValueError(f"mean_shift: bandwidth must be > 0, got {bandwidth!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"mean_shift: max_iter must be an integer >= 0, got {max_iter!r}")
    tol = float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"mean_shift: tol must be finite and >= 0, got {tol!r}")

    x = _as_points(x, "x")
    N, D = x.shape
    if D == 0:
        raise ValueError("mean_shift: x must have at least one column")
    if N > 0 and not bool(torch.isfinite(x).all()):
        raise ValueError("mean_shift: x contains NaN or infinite values (as float32)")
    if isinstance(seeds, str):
        if seeds != "bins":
            raise ValueError(f"mean_shift: seeds must be None, 'bins' or an [S, D] array, got {seeds!r}")
    elif seeds is not None:
        seeds = _as_points(seeds, "seeds").to(x.device)
        if seeds.shape[1] != D:
            raise ValueError(f"mean_shift: seeds have {seeds.shape[1]} columns, x has {D}")
        if seeds.shape[0] > 0 and not bool(torch.isfinite(seeds).all()):
            raise ValueError("mean_shift: seeds contain NaN or infinite values (as float32)")
    if N == 0:
        return (torch.empty(0, dtype=torch.long, device=x.device),
                torch.empty((0, D), dtype=torch.float32, device=x.device))

    impl = _resolve_backend(backend, x.device)
    plan = _make_plan(x, bw, KERNELS[kernel], int(max_iter), tol)
    if isinstance(seeds, torch.Tensor) and seeds.shape[0] == 0:
        labels, modes = torch.empty(0, dtype=torch.long), x.new_zeros((0, D))
    elif impl == "cpp":
        labels, modes = _mean_shift_cpp(plan, x, seeds)
    elif impl == "cuda":
        labels, modes = _mean_shift_cuda(plan, x, seeds)
    else:
        labels, modes = _mean_shift_torch(plan, x, seeds)
    if modes.shape[0] == 0:
        raise ValueError(f"mean_shift: no point was within bandwidth={bandwidth!r} of any seed; "
                         "try other seeds or a larger bandwidth")
    return labels.to(x.device), modes.to(x.device)
