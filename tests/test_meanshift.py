"""Tests of mtml.cluster.meanshift: the PyTorch reference, the C++ kernel and the CUDA kernel agree
with each other and with scikit-learn's MeanShift; edge cases; fallback without the extension;
the CUDA source compiles with nvcc."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift
from sklearn.cluster._mean_shift import get_bin_seeds
from sklearn.metrics import adjusted_rand_score

from mtml.cluster import meanshift as msm
from mtml.cluster.meanshift import mean_shift

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_EXT = os.path.join(ROOT, "cuda_ext")

needs_ext = pytest.mark.skipif(msm._ext is None, reason="mtml._meanshift_ext is not built")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU available")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Many small torch ops: with 2+ threads they crawl on a loaded machine (spin-waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n, D, k, *, std=0.15, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-1, 1, (k, D)) * scale * k ** (1.0 / D)
    truth = rng.integers(0, k, n)
    return (centres[truth] + rng.normal(0, std, (n, D))).astype(np.float32), truth


def embedding_like(n=2400, seed=1):
    """4-D embedding clusters of realistic spread (0.15 per dim) incl. close pairs (1.2 and 1.5
    apart, i.e. 2-2.5 bandwidths of 0.6), plus a few stray points between clusters."""
    rng = np.random.default_rng(seed)
    centres = [rng.uniform(-4, 4, 4) for _ in range(6)]
    pair_dirs = rng.normal(size=(2, 4))
    pair_dirs /= np.linalg.norm(pair_dirs, axis=1, keepdims=True)
    centres += [centres[0] + 1.2 * pair_dirs[0], centres[1] + 1.5 * pair_dirs[1]]
    centres = np.array(centres)
    truth = rng.integers(0, len(centres), n)
    x = centres[truth] + rng.normal(0, 0.15, (n, 4))
    x[:10] = rng.uniform(-4, 4, (10, 4))  # strays
    return x.astype(np.float32), truth


def brute_nearest(x, modes):
    d2 = ((x[:, None, :].double() - modes[None, :, :].double()) ** 2).sum(-1)
    return d2.argmin(1)


# ----------------------------------------------------------------------------------------------
# implementations agree
# ----------------------------------------------------------------------------------------------


@needs_ext
@pytest.mark.parametrize("kernel", ["flat", "gaussian"])
@pytest.mark.parametrize("seeds", [None, "bins"])
@pytest.mark.parametrize("D", [2, 4, 8])
def test_cpp_matches_torch(kernel, seeds, D):
    x, _ = blobs(1200, D, 6, seed=D)
    xt = torch.from_numpy(x)
    l_cpp, m_cpp = mean_shift(xt, 0.6, kernel=kernel, seeds=seeds, backend="cpp")
    l_ref, m_ref = mean_shift(xt, 0.6, kernel=kernel, seeds=seeds, backend="torch")
    assert torch.equal(m_cpp, m_ref)
    assert torch.equal(l_cpp, l_ref)
    assert l_cpp.dtype == torch.int64 and m_cpp.dtype == torch.float32


@needs_ext
def test_cpp_kernel_thread_count_does_not_change_results():
    x, _ = blobs(4000, 4, 8, seed=10)
    xt = torch.from_numpy(x)
    torch.set_num_threads(1)
    try:
        one = mean_shift(xt, 0.6, backend="cpp")
        torch.set_num_threads(3)
        three = mean_shift(xt, 0.6, backend="cpp")
    finally:
        torch.set_num_threads(1)
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])


@needs_ext
@pytest.mark.parametrize("max_iter", [0, 2])
def test_cpp_matches_torch_unconverged_and_explicit_seeds(max_iter):
    # few iterations: many distinct modes, so dedupe, ordering and suppression all matter
    x, _ = blobs(800, 3, 5, std=0.4, seed=7)
    rng = np.random.default_rng(3)
    seeds = torch.from_numpy(np.concatenate([x[:300], rng.normal(0, 8, (50, 3)).astype(np.float32)]))
    for s in (None, seeds):
        a = mean_shift(x, 0.5, seeds=s, max_iter=max_iter, backend="cpp")
        b = mean_shift(x, 0.5, seeds=s, max_iter=max_iter, backend="torch")
        assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


@needs_ext
def test_cpp_merge_matches_torch_merge():
    rng = np.random.default_rng(5)
    modes = rng.normal(0, 2, (3000, 3)).astype(np.float32)
    modes[1000:1500] = modes[:500]  # identical modes (deduped) with other intensities
    counts = rng.integers(0, 6, 3000)
    x = torch.from_numpy(modes)
    plan = msm._make_plan(x, 0.7, 0, 50, 1e-3)
    mt, ct = torch.from_numpy(modes), torch.from_numpy(counts).long()
    kept_cpp = msm._ext.merge_modes(mt, ct, plan.to_ext())
    kept_ref = msm._merge_torch(plan, mt, ct)
    assert torch.equal(kept_cpp, kept_ref)


def test_torch_suppression_long_chains():
    # modes on a line 0.9 bandwidth apart, strongest first: a chain of dependent decisions longer
    # than the vectorised rounds (exercises the sequential finish) and than one block
    G = 2 * msm._NMS_BLOCK + 100
    modes = torch.zeros((G, 2))
    modes[:, 0] = torch.arange(G, dtype=torch.float32) * 0.9
    plan = msm._make_plan(modes, 1.0, 0, 50, 1e-3)
    keep = msm._nms_torch(plan, modes)
    expected = torch.zeros(G, dtype=torch.bool)
    expected[::2] = True  # greedy in order keeps every other one
    assert torch.equal(keep, expected)


@needs_ext
@pytest.mark.parametrize("seeds", [None, "bins"])
def test_cuda_path_glue_with_cpu_stand_ins(monkeypatch, seeds):
    """Runs the CUDA back end's Python side (hash keys, seed ordering and un-ordering, host merge,
    labelling call) with CPU stand-ins for the three CUDA entry points; where a GPU exists,
    test_cuda_matches_cpp checks the real kernels."""
    real = msm._ext

    class StandIn:
        Plan = real.Plan
        merge_modes = staticmethod(real.merge_modes)

        @staticmethod
        def cuda_cell_keys(x, plan, stream):
            return real.cell_keys_cpu(x, plan)

        @staticmethod
        def cuda_shift(points_sorted, keys_sorted, seeds_, plan, stream):
            assert torch.equal(keys_sorted, real.cell_keys_cpu(points_sorted, plan))
            assert bool((keys_sorted[1:] >= keys_sorted[:-1]).all())
            return real.shift_cpu(points_sorted, seeds_, plan)

        @staticmethod
        def cuda_label(x, modes_sorted, keys_sorted, order, modes, plan, stream):
            assert torch.equal(modes[order], modes_sorted)
            return real.label_cpu(x, modes, plan)

    class FakeStream:
        cuda_stream = 0

    x, _ = blobs(1500, 3, 6, std=0.3, seed=13)
    xt = torch.from_numpy(x)
    expected = mean_shift(xt, 0.6, seeds=seeds, max_iter=3, backend="cpp")
    monkeypatch.setattr(msm, "_ext", StandIn)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    plan = msm._make_plan(xt, 0.6, msm.KERNELS["flat"], 3, 1e-3)
    labels, modes = msm._mean_shift_cuda(plan, xt, seeds)
    assert torch.equal(modes, expected[1]) and torch.equal(labels, expected[0])


@needs_gpu
@needs_ext
@pytest.mark.skipif(msm._ext is None or not msm._ext.has_cuda(), reason="extension built without CUDA")
@pytest.mark.parametrize("kernel", ["flat", "gaussian"])
@pytest.mark.parametrize("seeds", [None, "bins"])
def test_cuda_matches_cpp(kernel, seeds):
    x, _ = blobs(5000, 4, 10, seed=11)
    xc = torch.from_numpy(x)
    l_cpp, m_cpp = mean_shift(xc, 0.6, kernel=kernel, seeds=seeds, backend="cpp")
    l_gpu, m_gpu = mean_shift(xc.cuda(), 0.6, kernel=kernel, seeds=seeds, backend="cuda")
    assert l_gpu.is_cuda and m_gpu.is_cuda
    assert torch.equal(m_gpu.cpu(), m_cpp)
    assert torch.equal(l_gpu.cpu(), l_cpp)
    l_ref, m_ref = mean_shift(xc.cuda(), 0.6, kernel=kernel, seeds=seeds, backend="torch")
    assert torch.equal(m_ref.cpu(), m_cpp) and torch.equal(l_ref.cpu(), l_cpp)


@needs_gpu
@needs_ext
@pytest.mark.skipif(msm._ext is None or not msm._ext.has_cuda(), reason="extension built without CUDA")
def test_cuda_high_dim_scratch_path():
    x, _ = blobs(3000, 20, 5, seed=12)  # D > 16 uses the global-scratch kernel
    a = mean_shift(torch.from_numpy(x), 0.8, backend="cpp")
    b = mean_shift(torch.from_numpy(x).cuda(), 0.8, backend="cuda")
    assert torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())


# ----------------------------------------------------------------------------------------------
# agreement with scikit-learn
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_sklearn_agreement_blobs(backend):
    x, _ = blobs(1500, 3, 8, seed=2)
    sk = MeanShift(bandwidth=0.6, bin_seeding=False).fit(x)
    labels, modes = mean_shift(x, 0.6, backend=backend)
    assert adjusted_rand_score(sk.labels_, labels.numpy()) >= 0.99
    assert modes.shape == sk.cluster_centers_.shape
    np.testing.assert_allclose(modes.numpy(), sk.cluster_centers_, atol=1e-4)


def test_sklearn_agreement_embedding_like():
    x, truth = embedding_like()
    for bin_seeding in (False, True):
        sk = MeanShift(bandwidth=0.6, bin_seeding=bin_seeding).fit(x)
        labels, modes = mean_shift(x, 0.6, seeds="bins" if bin_seeding else None)
        assert adjusted_rand_score(sk.labels_, labels.numpy()) >= 0.99
        assert modes.shape == sk.cluster_centers_.shape
        np.testing.assert_allclose(modes.numpy(), sk.cluster_centers_, atol=1e-4)
    assert adjusted_rand_score(truth[10:], labels.numpy()[10:]) >= 0.99  # close pairs separated


def test_gaussian_kernel_clusters():
    # a gaussian of bandwidth 0.6 smooths the clusters 1.2 apart into one mode; 0.3 does not
    x, truth = embedding_like()
    labels, modes = mean_shift(x, 0.3, kernel="gaussian")
    assert adjusted_rand_score(truth[10:], labels.numpy()[10:]) >= 0.99


def test_bin_seeds_match_sklearn():
    x, _ = blobs(3000, 3, 6, seed=4)
    expected = get_bin_seeds(x, 0.6)
    got_ref = msm._bin_seeds_torch(torch.from_numpy(x), msm._f32(0.6))
    np.testing.assert_array_equal(got_ref.numpy(), expected)
    if msm._ext is not None:
        np.testing.assert_array_equal(msm._ext.bin_seeds(torch.from_numpy(x), msm._f32(0.6)).numpy(), expected)


def test_labels_are_nearest_modes_including_far_points():
    # seeds only at two clusters: the far-away points have no mode within the bandwidth, so the
    # labelling must fall back from the neighbouring cells to a full search
    x, _ = blobs(600, 2, 2, seed=9)
    far = np.array([[40.0, 40.0], [-35.0, 3.0], [0.0, -50.0]], dtype=np.float32)
    x = np.concatenate([x, far])
    seeds = x[:20]
    for backend in ["auto", "torch"]:
        labels, modes = mean_shift(x, 0.5, seeds=seeds, backend=backend)
        assert torch.equal(labels, brute_nearest(torch.from_numpy(x), modes))


# ----------------------------------------------------------------------------------------------
# edge cases
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_empty_input(backend):
    labels, modes = mean_shift(torch.zeros((0, 3)), 1.0, backend=backend)
    assert labels.shape == (0,) and labels.dtype == torch.int64
    assert modes.shape == (0, 3) and modes.dtype == torch.float32


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("seeds", [None, "bins"])
def test_single_point(backend, seeds):
    labels, modes = mean_shift(torch.tensor([[1.5, -2.0]]), 0.3, seeds=seeds, backend=backend)
    assert labels.tolist() == [0]
    assert modes.tolist() == [[1.5, -2.0]]


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_duplicate_points(backend):
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]], dtype=np.float32), [30, 10], axis=0)
    labels, modes = mean_shift(x, 1.0, backend=backend)
    assert modes.tolist() == [[0.0, 0.0], [5.0, 5.0]]  # strongest first
    assert labels.tolist() == [0] * 30 + [1] * 10


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_one_dimensional(backend):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, 100), rng.normal(3, 0.1, 60), rng.normal(9, 0.1, 40)])
    x = x.astype(np.float32)[:, None]
    sk = MeanShift(bandwidth=0.5).fit(x)
    labels, modes = mean_shift(x, 0.5, backend=backend)
    assert adjusted_rand_score(sk.labels_, labels.numpy()) == 1.0
    np.testing.assert_allclose(modes.numpy(), sk.cluster_centers_, atol=1e-5)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("bw", [1e4, 1e30, float("inf")])
def test_huge_bandwidth_one_cluster(backend, bw):
    x, _ = blobs(300, 3, 4, seed=5)
    labels, modes = mean_shift(x, bw, backend=backend)
    assert modes.shape == (1, 3)
    assert (labels == 0).all()
    np.testing.assert_allclose(modes[0].numpy(), x.mean(0), atol=1e-4)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_invalid_inputs(backend):
    x = torch.randn(50, 3)
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[7, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            mean_shift(y, 1.0, backend=backend)
    for bw in (0.0, -1.0, float("nan"), 1e-50):
        with pytest.raises(ValueError, match="bandwidth"):
            mean_shift(x, bw, backend=backend)
    with pytest.raises(ValueError, match="kernel"):
        mean_shift(x, 1.0, kernel="epanechnikov", backend=backend)
    with pytest.raises(ValueError, match="2-D"):
        mean_shift(torch.randn(10), 1.0, backend=backend)
    with pytest.raises(ValueError, match="seeds"):
        mean_shift(x, 1.0, seeds=torch.randn(4, 2), backend=backend)
    with pytest.raises(ValueError, match="no point was within"):
        mean_shift(x, 0.1, seeds=torch.full((3, 3), 1e3), backend=backend)
    with pytest.raises(ValueError, match="backend"):
        mean_shift(x, 1.0, backend="opencl")


def test_numpy_input_returns_tensors():
    x, _ = blobs(200, 2, 3, seed=6)
    labels, modes = mean_shift(x.astype(np.float64), 0.6)
    assert isinstance(labels, torch.Tensor) and labels.device.type == "cpu"
    assert modes.dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# fallback without the extension
# ----------------------------------------------------------------------------------------------


def test_fallback_warns_once_and_matches(monkeypatch):
    x, _ = blobs(800, 4, 5, seed=8)
    expected = mean_shift(x, 0.6, seeds="bins")
    monkeypatch.setattr(msm, "_ext", None)
    monkeypatch.setattr(msm, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = mean_shift(x, 0.6, seeds="bins")
        second = mean_shift(x, 0.6, seeds="bins")
    relevant = [w for w in caught if "mean-shift" in str(w.message)]
    assert len(relevant) == 1 and "\n" not in str(relevant[0].message)
    assert not msm.extension_available()
    for got in (first, second):
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    with pytest.raises(RuntimeError, match="not built"):
        mean_shift(x, 0.6, backend="cpp")


# ----------------------------------------------------------------------------------------------
# the CUDA source compiles
# ----------------------------------------------------------------------------------------------


def _nvcc():
    sys.path.insert(0, CUDA_EXT)
    try:
        from build_ext import find_cuda_home
    finally:
        sys.path.remove(CUDA_EXT)
    home = find_cuda_home()
    return os.path.join(home, "bin", "nvcc") if home else None


def test_cuda_kernel_compiles_with_nvcc(tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    cmd = [nvcc, "-c", os.path.join(CUDA_EXT, "meanshift_cuda.cu"), "-o", str(tmp_path / "ms.o"),
           "-std=c++17", "-O3", "--fmad=false", "-I", CUDA_EXT, "-Xcompiler", "-fPIC",
           "-gencode=arch=compute_80,code=sm_80", "-Werror", "all-warnings"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ms.o").stat().st_size > 0


@pytest.mark.slow
def test_cuda_enabled_extension_builds_and_imports(tmp_path):
    """MTML_FORCE_CUDA=1 build of the whole extension (C++ bindings + .cu + link) and import."""
    if _nvcc() is None:
        pytest.skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    env = dict(os.environ, MTML_FORCE_CUDA="1")
    env.pop("MTML_NO_EXT", None)
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "CUDA mean-shift kernel failed" not in build.stderr, build.stderr[-3000:]
    probe = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]);"
        "import importlib; ext = importlib.import_module('mtml._meanshift_ext');"
        "assert ext.has_cuda() and hasattr(ext, 'cuda_shift');"
        "x = torch.randn(10, 3);"
        "print('ok')"
    )
    # import the freshly built module, not the installed one: put its mtml/ first on the path
    lib = str(tmp_path / "lib")
    shutil.copytree(os.path.join(ROOT, "mtml"), os.path.join(lib, "mtml"), dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    run = subprocess.run([sys.executable, "-c", probe, lib], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
