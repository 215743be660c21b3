"""Mean-shift benchmark: mtml's C++ kernel and PyTorch reference vs scikit-learn's MeanShift.

Data: "embedding-like" clusters, ~N/500 gaussian clusters whose centres are >= 3 apart, with
per-coordinate std 0.15 at D=4 and the same radial spread (0.15 * sqrt(4/D) per coordinate) at
other D, as a metric-learning embedding pulled within a margin would look; bandwidth 0.6.

Methods (same run, same data):
  mtml-cpp       mean_shift(x, 0.6, seeds="bins", backend="cpp")      C++/OpenMP kernel
  mtml-cpp-all   mean_shift(x, 0.6, seeds=None, backend="cpp")        every point a seed
  mtml-torch     mean_shift(x, 0.6, seeds="bins", backend="torch")    PyTorch reference
  sklearn-bins   MeanShift(bandwidth=0.6, bin_seeding=True,  n_jobs=-1)
  sklearn-all    MeanShift(bandwidth=0.6, bin_seeding=False, n_jobs=-1)

Run (default cells, a few minutes):
    OMP_WAIT_POLICY=PASSIVE python -m pytest benchmarks/bench_meanshift.py -q -p no:cacheprovider \
        --benchmark-columns=mean,min,max,rounds
(OMP_WAIT_POLICY=PASSIVE: on a machine shared with other jobs, OpenMP threads that spin while
waiting slow everything down; it changes nothing on an idle machine.)
MTML_BENCH_FULL=1 adds the slow cells (mtml at 1M x 16, the PyTorch reference at 1M,
sklearn-all at 100k x 4 and sklearn-bins at 100k x 16). Cells that would take many minutes are
skipped with their reason. After the run a table (N, D, method, mean time, speedup over
scikit-learn's fastest setting, clusters, ARI vs ground truth) is printed and written to
$MTML_BENCH_TABLE (default .benchmarks/meanshift_table.md).
"""

from __future__ import annotations

import functools
import os
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from mtml.cluster import meanshift as msm

FULL = os.environ.get("MTML_BENCH_FULL", "") == "1"
BANDWIDTH = 0.6
SIZES = [10_000, 100_000, 1_000_000]
DIMS = [4, 16]
METHODS = ["mtml-cpp", "mtml-cpp-all", "mtml-torch", "sklearn-bins", "sklearn-all"]
RESULTS: dict[tuple[int, int, str], dict] = {}


@functools.lru_cache(maxsize=2)
def embedding_data(n: int, D: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """~n/500 gaussian clusters, centres >= 3 apart (dart throwing in a growing box)."""
    rng = np.random.default_rng(seed)
    k = max(1, n // 500)
    gap = 3.0
    side = gap * (4.0 * k) ** (1.0 / D)
    centres = np.empty((0, D))
    while len(centres) < k:
        for c in rng.uniform(0, side, (4 * k, D)):
            if len(centres) == k:
                break
            if len(centres) == 0 or np.min(np.sum((centres - c) ** 2, axis=1)) >= gap * gap:
                centres = np.vstack([centres, c])
        side *= 1.1
    truth = rng.integers(0, k, n)
    std = 0.15 * np.sqrt(4.0 / D)
    x = centres[truth] + rng.normal(0.0, std, (n, D))
    return x.astype(np.float32), truth


def skip_reason(method: str, n: int, D: int) -> str | None:
    if method.startswith("mtml-cpp") and msm._ext is None:
        return "mtml._meanshift_ext is not built"
    if method == "mtml-cpp-all" and n >= 1_000_000 and D == 16 and not FULL:
        return "1M seeds in 16-D: ~1 min (MTML_BENCH_FULL=1 runs it)"
    if method.startswith("sklearn") and n >= 1_000_000:
        return "scikit-learn at 1M points takes many minutes (not run)"
    if method == "sklearn-all" and n >= 100_000:
        if D == 4 and FULL:
            return None
        return "sklearn bin_seeding=False: one seed per point, ~10 min at 100k (MTML_BENCH_FULL=1 runs 100k x 4)"
    if method == "sklearn-bins" and n >= 100_000 and D == 16 and not FULL:
        return "sklearn bin_seeding=True in 16-D: ~20k seeds, minutes (MTML_BENCH_FULL=1 runs it)"
    if method == "mtml-torch" and n >= 1_000_000 and not FULL:
        return "PyTorch reference at 1M: tens of seconds per round (MTML_BENCH_FULL=1 runs it)"
    if method == "mtml-cpp" and n >= 1_000_000 and D == 16 and not FULL:
        return "1M x 16 takes ~20 s per round (MTML_BENCH_FULL=1 runs it)"
    return None


def rounds_for(method: str, n: int, D: int) -> tuple[int, int]:
    """(rounds, warmup rounds)"""
    if method == "mtml-cpp":
        if n >= 1_000_000:
            return (3, 1) if D <= 4 else (1, 0)
        return 5, 1
    if method == "mtml-cpp-all":
        return (3, 0) if n < 1_000_000 else (1, 0)
    if method == "mtml-torch":
        return (3, 0) if n <= 10_000 else (1, 0)
    return 1, 0


def run_method(method: str, x: np.ndarray) -> np.ndarray:
    if method == "mtml-cpp":
        return msm.mean_shift(torch.from_numpy(x), BANDWIDTH, seeds="bins", backend="cpp")[0].numpy()
    if method == "mtml-cpp-all":
        return msm.mean_shift(torch.from_numpy(x), BANDWIDTH, seeds=None, backend="cpp")[0].numpy()
    if method == "mtml-torch":
        return msm.mean_shift(torch.from_numpy(x), BANDWIDTH, seeds="bins", backend="torch")[0].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Binning data failed" in high D
        model = MeanShift(bandwidth=BANDWIDTH, bin_seeding=method == "sklearn-bins", n_jobs=-1)
        return model.fit(x).labels_


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    if not RESULTS:
        return
    lines = [
        "| N | D | method | mean time (s) | speedup vs fastest sklearn | clusters | ARI vs truth |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        for D in DIMS:
            sk = [RESULTS[(n, D, m)]["mean"] for m in ("sklearn-bins", "sklearn-all") if (n, D, m) in RESULTS]
            best = min(sk) if sk else None
            for m in METHODS:
                r = RESULTS.get((n, D, m))
                if r is None:
                    continue
                ratio = f"{best / r['mean']:.1f}x" if best else "n/a"
                lines.append(f"| {n:,} | {D} | {m} | {r['mean']:.3f} | {ratio} | {r['clusters']} | {r['ari']:.3f} |")
    table = "\n".join(lines)
    path = os.environ.get("MTML_BENCH_TABLE", os.path.join(".benchmarks", "meanshift_table.md"))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(table + "\n")
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        tr.write_line(f"mean-shift benchmark (torch threads: {torch.get_num_threads()}), written to {path}:")
        for line in lines:
            tr.write_line(line)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("n", SIZES)
def test_meanshift(benchmark, n, D, method):
    reason = skip_reason(method, n, D)
    if reason:
        pytest.skip(reason)
    x, truth = embedding_data(n, D)
    rounds, warmup = rounds_for(method, n, D)
    benchmark.group = f"meanshift N={n} D={D}"
    benchmark.extra_info.update(n=n, D=D, method=method)
    labels = benchmark.pedantic(run_method, args=(method, x), rounds=rounds, iterations=1,
                                warmup_rounds=warmup)
    RESULTS[(n, D, method)] = dict(
        mean=benchmark.stats.stats.mean,
        clusters=int(labels.max()) + 1,
        ari=adjusted_rand_score(truth, labels),
    )


def test_cpp_at_least_10x_faster_than_sklearn_100k_4d():
    """The must-show comparison, in the same run: 100k x 4, mtml's C++ kernel vs sklearn's fastest."""
    if msm._ext is None:
        pytest.skip("mtml._meanshift_ext is not built")
    n, D = 100_000, 4
    x, _ = embedding_data(n, D)
    cpp = RESULTS.get((n, D, "mtml-cpp"), {}).get("mean")
    if cpp is None:
        run_method("mtml-cpp", x)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run_method("mtml-cpp", x)
            times.append(time.perf_counter() - t0)
        cpp = float(np.mean(times))
    sk = [RESULTS[(n, D, m)]["mean"] for m in ("sklearn-bins", "sklearn-all") if (n, D, m) in RESULTS]
    if not sk:
        t0 = time.perf_counter()
        run_method("sklearn-bins", x)
        sk = [time.perf_counter() - t0]
    assert min(sk) / cpp >= 10.0, f"C++ {cpp:.3f}s vs sklearn {min(sk):.3f}s"
