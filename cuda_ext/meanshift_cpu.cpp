// mtml._meanshift_ext: mean-shift clustering, C++ CPU kernel (OpenMP over seeds) and, when built
// with -DMTML_WITH_CUDA, the bindings of the CUDA kernel (meanshift_cuda.cu).
//
// The algorithm is mtml.cluster.meanshift's (sklearn's MeanShift): each seed climbs to a mode
// using a spatial hash of kernel-radius cells; converged seeds are deduplicated, sorted by
// intensity, merged greedily within one bandwidth and every point gets its nearest kept mode.
// The per-seed and per-point code lives in meanshift_common.h, shared with the CUDA kernel.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "meanshift_common.h"
#ifdef MTML_WITH_CUDA
#include "meanshift_cuda.h"
#endif

namespace py = pybind11;

namespace {

constexpr int64_t kMaxKeySpace = int64_t(1) << 62;

ms::Plan make_plan(int64_t D, const std::vector<int64_t>& dims, const std::vector<int64_t>& lo,
                   const std::vector<int64_t>& extent, double cell, double r2, double bw2,
                   double inv_two_bw2, double tol2, int64_t kernel, int64_t max_iter) {
  TORCH_CHECK(D >= 1, "mean_shift plan: D must be >= 1");
  const size_t h = dims.size();
  TORCH_CHECK(h <= (size_t)ms::kMaxHashDims, "mean_shift plan: at most ", ms::kMaxHashDims,
              " hashed dimensions");
  TORCH_CHECK(lo.size() == h && extent.size() == h, "mean_shift plan: dims/lo/extent sizes differ");
  TORCH_CHECK(cell > 0, "mean_shift plan: cell must be > 0");
  TORCH_CHECK(kernel == ms::kFlat || kernel == ms::kGaussian, "mean_shift plan: unknown kernel");
  TORCH_CHECK(max_iter >= 0, "mean_shift plan: max_iter must be >= 0");
  ms::Plan p;
  std::memset(&p, 0, sizeof(p));
  p.D = (int)D;
  p.h = (int)h;
  int64_t space = 1;
  for (size_t j = 0; j < h; ++j) {
    TORCH_CHECK(dims[j] >= 0 && dims[j] < D, "mean_shift plan: hashed dim out of range");
    TORCH_CHECK(extent[j] >= 1, "mean_shift plan: extent must be >= 1");
    TORCH_CHECK(space <= kMaxKeySpace / extent[j], "mean_shift plan: key space overflows int64");
    space *= extent[j];
    p.dims[j] = (int)dims[j];
    p.lo[j] = lo[j];
    p.extent[j] = extent[j];
  }
  int64_t s = 1;
  for (int j = (int)h - 1; j >= 0; --j) {
    p.stride[j] = s;
    s *= p.extent[j];
  }
  p.cell = cell;
  p.r2 = (float)r2;
  p.bw2 = (float)bw2;
  p.inv_two_bw2 = inv_two_bw2;
  p.tol2 = tol2;
  p.kernel = (int)kernel;
  p.max_iter = (int)max_iter;
  return p;
}

int64_t key_space(const ms::Plan& p) {
  int64_t s = 1;
  for (int j = 0; j < p.h; ++j) s *= p.extent[j];
  return s;
}

void check_points(const torch::Tensor& t, const char* what, int64_t D) {
  TORCH_CHECK(t.dim() == 2, what, " must be a 2-D tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, what, " must be float32");
  TORCH_CHECK(t.size(1) == D, what, " has ", t.size(1), " columns, the plan says ", D);
}

int num_threads() { return std::max(1, at::get_num_threads()); }

// Items (points or modes) sorted by cell key, with the dense key -> position table when the key
// space is small enough.
struct SortedGrid {
  std::vector<float> pts;
  std::vector<int64_t> keys, perm;
  std::vector<int32_t> prefix;
  int64_t n = 0;
  ms::GridView view() const {
    return ms::GridView{pts.data(), keys.data(), prefix.empty() ? nullptr : prefix.data(), n};
  }
};

SortedGrid build_grid(const ms::Plan& p, const float* x, int64_t n, bool allow_dense, int nt) {
  const int D = p.D;
  SortedGrid g;
  g.n = n;
  std::vector<int64_t> key(n);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) key[i] = ms::item_key(p, x + i * D);
  g.perm.resize(n);
  // Dense key -> position table (2 lookups per row of cells instead of 2 binary searches) when
  // the key space is at most max(4M, 16 n) entries (int32: <= 64 MB for a million points).
  const int64_t P = key_space(p);
  const bool dense = allow_dense && n < INT32_MAX && P <= std::max<int64_t>(int64_t(1) << 22, 16 * n);
  if (dense) {  // stable counting sort; prefix ends up as prefix[k] = #items with key < k
    g.prefix.assign(P + 1, 0);
    for (int64_t i = 0; i < n; ++i) ++g.prefix[key[i] + 1];
    for (int64_t k = 0; k < P; ++k) g.prefix[k + 1] += g.prefix[k];
    for (int64_t i = 0; i < n; ++i) g.perm[g.prefix[key[i]]++] = i;
    // prefix[k] now holds the end of cell k: shift right by one
    for (int64_t k = P; k > 0; --k) g.prefix[k] = g.prefix[k - 1];
    g.prefix[0] = 0;
  } else {
    std::iota(g.perm.begin(), g.perm.end(), int64_t(0));
    std::stable_sort(g.perm.begin(), g.perm.end(),
                     [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  }
  g.keys.resize(n);
  g.pts.resize((size_t)n * D);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t src = g.perm[i];
    g.keys[i] = key[src];
    std::memcpy(g.pts.data() + (size_t)i * D, x + (size_t)src * D, sizeof(float) * D);
  }
  return g;
}

void shift_all(const ms::Plan& p, const ms::GridView& g, const float* seeds, int64_t S,
               float* modes, int64_t* counts, int nt) {
  const int D = p.D;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> nm(D);
    std::vector<double> acc(D);
    int64_t beg[ms::kMaxRows], end[ms::kMaxRows];
#pragma omp for schedule(dynamic, 16)
    for (int64_t s = 0; s < S; ++s) {
      float* m = modes + s * D;
      std::memcpy(m, seeds + s * D, sizeof(float) * D);
      counts[s] = ms::shift_seed(p, g, m, nm.data(), acc.data(), beg, end);
    }
  }
}

bool lex_less(const float* a, const float* b, int D) {
  for (int d = 0; d < D; ++d) {
    if (a[d] < b[d]) return true;
    if (b[d] < a[d]) return false;
  }
  return false;
}

// sklearn's post-processing: dedupe identical modes (dict keyed by the mode: first seed's key,
// last seed's intensity), sort by (intensity, mode) descending, keep a mode unless it lies within
// one bandwidth of an already kept (stronger) mode. Returns the kept modes [K, D].
std::vector<float> merge_impl(const ms::Plan& p, const float* modes, const int64_t* counts,
                              int64_t S) {
  const int D = p.D;
  std::vector<int64_t> idx;
  idx.reserve(S);
  for (int64_t s = 0; s < S; ++s)
    if (counts[s] > 0) idx.push_back(s);
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
    const float *ma = modes + a * D, *mb = modes + b * D;
    if (lex_less(ma, mb, D)) return true;
    if (lex_less(mb, ma, D)) return false;
    return a < b;
  });
  struct Group {
    int64_t rep;
    int64_t intensity;
  };
  std::vector<Group> groups;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i + 1;
    while (j < idx.size() && !lex_less(modes + idx[i] * D, modes + idx[j] * D, D)) ++j;
    groups.push_back(Group{idx[i], counts[idx[j - 1]]});
    i = j;
  }
  std::sort(groups.begin(), groups.end(), [&](const Group& a, const Group& b) {
    if (a.intensity != b.intensity) return a.intensity > b.intensity;
    return lex_less(modes + b.rep * D, modes + a.rep * D, D);
  });
  const int64_t G = (int64_t)groups.size();
  std::vector<float> sorted((size_t)G * D);
  for (int64_t i = 0; i < G; ++i)
    std::memcpy(sorted.data() + i * D, modes + groups[i].rep * D, sizeof(float) * D);
  SortedGrid mg = build_grid(p, sorted.data(), G, /*allow_dense=*/false, 1);
  const ms::GridView mv = mg.view();
  std::vector<char> suppressed(G, 0);
  std::vector<float> kept;
  int64_t beg[ms::kMaxRows], end[ms::kMaxRows], q[ms::kMaxHashDims];
  for (int64_t i = 0; i < G; ++i) {
    if (suppressed[i]) continue;
    const float* mi = sorted.data() + i * D;
    kept.insert(kept.end(), mi, mi + D);
    for (int j = 0; j < p.h; ++j) q[j] = ms::cell_coord(p, j, mi[p.dims[j]]);
    const int nr = ms::query_ranges(p, mv, q, beg, end);
    for (int r = 0; r < nr; ++r) {
      for (int64_t t = beg[r]; t < end[r]; ++t) {
        const int64_t j = mg.perm[t];
        if (j <= i || suppressed[j]) continue;
        if (ms::sq_dist(mv.pts + t * D, mi, D, p.bw2) <= p.bw2) suppressed[j] = 1;
      }
    }
  }
  return kept;
}

torch::Tensor to_tensor(const std::vector<float>& v, int64_t D) {
  const int64_t K = (int64_t)v.size() / D;
  auto t = torch::empty({K, D}, torch::kFloat32);
  if (K > 0) std::memcpy(t.data_ptr<float>(), v.data(), sizeof(float) * v.size());
  return t;
}

// Labels of the points of grid g (written in original order) given the kept modes.
void label_impl(const ms::Plan& p, const SortedGrid& g, const std::vector<float>& kept,
                int64_t* labels, int nt) {
  const int D = p.D;
  const int64_t K = (int64_t)kept.size() / D;
  if (K == 0) {
    std::fill(labels, labels + g.n, int64_t(-1));
    return;
  }
  SortedGrid mg = build_grid(p, kept.data(), K, /*allow_dense=*/false, 1);
  const ms::GridView mv = mg.view();
  std::vector<int64_t> runs;  // start of each occupied cell in g
  for (int64_t i = 0; i < g.n; ++i)
    if (i == 0 || g.keys[i] != g.keys[i - 1]) runs.push_back(i);
  runs.push_back(g.n);
  const int64_t R = (int64_t)runs.size() - 1;
#pragma omp parallel num_threads(nt)
  {
    int64_t beg[ms::kMaxRows], end[ms::kMaxRows], q[ms::kMaxHashDims];
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < R; ++r) {
      const float* first = g.pts.data() + runs[r] * D;
      for (int j = 0; j < p.h; ++j) q[j] = ms::cell_coord(p, j, first[p.dims[j]]);
      const int nr = ms::query_ranges(p, mv, q, beg, end);
      for (int64_t i = runs[r]; i < runs[r + 1]; ++i)
        labels[g.perm[i]] = ms::nearest_in_ranges(p, mv, mg.perm.data(), kept.data(), K,
                                                  g.pts.data() + i * D, nr, beg, end);
    }
  }
}

// ---- Python entry points ---------------------------------------------------------------------

std::tuple<torch::Tensor, torch::Tensor> mean_shift_cpu(torch::Tensor x, torch::Tensor seeds,
                                                        const ms::Plan& p) {
  TORCH_CHECK(x.device().is_cpu() && seeds.device().is_cpu(), "mean_shift_cpu: CPU tensors only");
  check_points(x, "x", p.D);
  check_points(seeds, "seeds", p.D);
  x = x.contiguous();
  seeds = seeds.contiguous();
  const int64_t N = x.size(0), S = seeds.size(0);
  auto labels = torch::empty({N}, torch::kInt64);
  std::vector<float> kept;
  {
    py::gil_scoped_release nogil;
    const int nt = num_threads();
    SortedGrid g = build_grid(p, x.data_ptr<float>(), N, true, nt);
    std::vector<float> modes((size_t)S * p.D);
    std::vector<int64_t> counts(S);
    shift_all(p, g.view(), seeds.data_ptr<float>(), S, modes.data(), counts.data(), nt);
    kept = merge_impl(p, modes.data(), counts.data(), S);
    label_impl(p, g, kept, labels.data_ptr<int64_t>(), nt);
  }
  return {labels, to_tensor(kept, p.D)};
}

std::tuple<torch::Tensor, torch::Tensor> shift_cpu(torch::Tensor x, torch::Tensor seeds,
                                                   const ms::Plan& p) {
  TORCH_CHECK(x.device().is_cpu() && seeds.device().is_cpu(), "shift_cpu: CPU tensors only");
  check_points(x, "x", p.D);
  check_points(seeds, "seeds", p.D);
  x = x.contiguous();
  seeds = seeds.contiguous();
  const int64_t S = seeds.size(0);
  auto modes = torch::empty({S, p.D}, torch::kFloat32);
  auto counts = torch::empty({S}, torch::kInt64);
  {
    py::gil_scoped_release nogil;
    const int nt = num_threads();
    SortedGrid g = build_grid(p, x.data_ptr<float>(), x.size(0), true, nt);
    shift_all(p, g.view(), seeds.data_ptr<float>(), S, modes.data_ptr<float>(),
              counts.data_ptr<int64_t>(), nt);
  }
  return {modes, counts};
}

torch::Tensor merge_modes(torch::Tensor modes, torch::Tensor counts, const ms::Plan& p) {
  TORCH_CHECK(modes.device().is_cpu() && counts.device().is_cpu(), "merge_modes: CPU tensors");
  check_points(modes, "modes", p.D);
  TORCH_CHECK(counts.dim() == 1 && counts.size(0) == modes.size(0) &&
                  counts.scalar_type() == torch::kInt64,
              "merge_modes: counts must be int64 [S]");
  modes = modes.contiguous();
  counts = counts.contiguous();
  std::vector<float> kept;
  {
    py::gil_scoped_release nogil;
    kept = merge_impl(p, modes.data_ptr<float>(), counts.data_ptr<int64_t>(), modes.size(0));
  }
  return to_tensor(kept, p.D);
}

torch::Tensor label_cpu(torch::Tensor x, torch::Tensor kept, const ms::Plan& p) {
  TORCH_CHECK(x.device().is_cpu() && kept.device().is_cpu(), "label_cpu: CPU tensors only");
  check_points(x, "x", p.D);
  check_points(kept, "modes", p.D);
  x = x.contiguous();
  kept = kept.contiguous();
  auto labels = torch::empty({x.size(0)}, torch::kInt64);
  {
    py::gil_scoped_release nogil;
    const int nt = num_threads();
    SortedGrid g = build_grid(p, x.data_ptr<float>(), x.size(0), true, nt);
    std::vector<float> k(kept.data_ptr<float>(), kept.data_ptr<float>() + kept.numel());
    label_impl(p, g, k, labels.data_ptr<int64_t>(), nt);
  }
  return labels;
}

// Cell key (ms::item_key) of every row of x: what the CUDA path sorts the points by.
torch::Tensor cell_keys_cpu(torch::Tensor x, const ms::Plan& p) {
  TORCH_CHECK(x.device().is_cpu(), "cell_keys_cpu: CPU tensors only");
  check_points(x, "x", p.D);
  x = x.contiguous();
  const int64_t n = x.size(0);
  auto keys = torch::empty({n}, torch::kInt64);
  const float* px = x.data_ptr<float>();
  int64_t* pk = keys.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) pk[i] = ms::item_key(p, px + i * p.D);
  return keys;
}

// sklearn's get_bin_seeds(X, bw, min_bin_freq=1): one seed round(x / bw) * bw per occupied bin,
// in order of first occurrence (float32 arithmetic, round half to even, -0 == +0).
torch::Tensor bin_seeds(torch::Tensor x, double bandwidth) {
  TORCH_CHECK(x.device().is_cpu(), "bin_seeds: CPU tensors only");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "bin_seeds: float32 [N, D]");
  x = x.contiguous();
  const int64_t N = x.size(0), D = x.size(1);
  const float bw = (float)bandwidth;
  std::vector<float> r((size_t)N * D);
  std::vector<int64_t> reps;
  {
    py::gil_scoped_release nogil;
    const float* px = x.data_ptr<float>();
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < N * D; ++i) r[i] = std::nearbyint(px[i] / bw) + 0.0f;
    int64_t cap = 16;
    while (cap < 2 * N) cap <<= 1;
    std::vector<int64_t> table(cap, -1);
    for (int64_t i = 0; i < N; ++i) {
      const float* ri = r.data() + i * D;
      uint64_t hsh = 1469598103934665603ull;
      for (int64_t d = 0; d < D; ++d) {
        uint32_t bits;
        std::memcpy(&bits, ri + d, sizeof(bits));
        hsh = (hsh ^ bits) * 1099511628211ull;
        hsh ^= hsh >> 29;
      }
      uint64_t slot = hsh & (uint64_t)(cap - 1);
      while (true) {
        const int64_t e = table[slot];
        if (e < 0) {
          table[slot] = i;
          reps.push_back(i);
          break;
        }
        if (std::memcmp(r.data() + e * D, ri, sizeof(float) * D) == 0) break;
        slot = (slot + 1) & (uint64_t)(cap - 1);
      }
    }
  }
  const int64_t B = (int64_t)reps.size();
  auto out = torch::empty({B, D}, torch::kFloat32);
  float* po = out.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) po[b * D + d] = r[reps[b] * D + d] * bw;
  return out;
}

#ifdef MTML_WITH_CUDA
void check_cuda_result(int code, const char* what) {
  TORCH_CHECK(code == 0, what, " failed: ", ms_cuda_error_string(code));
}

void* as_stream(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

torch::Tensor cuda_cell_keys(torch::Tensor x, const ms::Plan& p, int64_t stream) {
  TORCH_CHECK(x.is_cuda(), "cuda_cell_keys: x must be a CUDA tensor");
  check_points(x, "x", p.D);
  x = x.contiguous();
  auto keys = torch::empty({x.size(0)}, x.options().dtype(torch::kInt64));
  check_cuda_result(ms_cuda_cell_keys(p, x.data_ptr<float>(), x.size(0), keys.data_ptr<int64_t>(),
                                      x.get_device(), as_stream(stream)),
                    "cuda_cell_keys");
  return keys;
}

std::tuple<torch::Tensor, torch::Tensor> cuda_shift(torch::Tensor pts_sorted,
                                                    torch::Tensor keys_sorted,
                                                    torch::Tensor seeds, const ms::Plan& p,
                                                    int64_t stream) {
  TORCH_CHECK(pts_sorted.is_cuda() && keys_sorted.is_cuda() && seeds.is_cuda(),
              "cuda_shift: CUDA tensors only");
  TORCH_CHECK(pts_sorted.get_device() == seeds.get_device() &&
                  keys_sorted.get_device() == seeds.get_device(),
              "cuda_shift: tensors on different devices");
  check_points(pts_sorted, "points", p.D);
  check_points(seeds, "seeds", p.D);
  TORCH_CHECK(keys_sorted.scalar_type() == torch::kInt64 && keys_sorted.dim() == 1 &&
                  keys_sorted.size(0) == pts_sorted.size(0),
              "cuda_shift: keys must be int64 [N]");
  pts_sorted = pts_sorted.contiguous();
  keys_sorted = keys_sorted.contiguous();
  seeds = seeds.contiguous();
  const int64_t S = seeds.size(0);
  auto modes = torch::empty({S, p.D}, seeds.options());
  auto counts = torch::empty({S}, seeds.options().dtype(torch::kInt64));
  torch::Tensor acc, nm;  // global scratch for dimensions too large for per-thread arrays
  if (ms_cuda_needs_scratch(p.D)) {
    acc = torch::empty({S, p.D}, seeds.options().dtype(torch::kFloat64));
    nm = torch::empty({S, p.D}, seeds.options());
  }
  ms::GridView g{pts_sorted.data_ptr<float>(), keys_sorted.data_ptr<int64_t>(), nullptr,
                 pts_sorted.size(0)};
  check_cuda_result(
      ms_cuda_shift(p, g, seeds.data_ptr<float>(), S, modes.data_ptr<float>(),
                    counts.data_ptr<int64_t>(), acc.defined() ? acc.data_ptr<double>() : nullptr,
                    nm.defined() ? nm.data_ptr<float>() : nullptr, seeds.get_device(),
                    as_stream(stream)),
      "cuda_shift");
  return {modes, counts};
}

torch::Tensor cuda_label(torch::Tensor x, torch::Tensor modes_sorted, torch::Tensor keys_sorted,
                         torch::Tensor order, torch::Tensor modes, const ms::Plan& p,
                         int64_t stream) {
  TORCH_CHECK(x.is_cuda() && modes_sorted.is_cuda() && keys_sorted.is_cuda() && order.is_cuda() &&
                  modes.is_cuda(),
              "cuda_label: CUDA tensors only");
  check_points(x, "x", p.D);
  check_points(modes, "modes", p.D);
  check_points(modes_sorted, "modes_sorted", p.D);
  const int64_t K = modes.size(0);
  TORCH_CHECK(modes_sorted.size(0) == K && keys_sorted.size(0) == K && order.size(0) == K &&
                  keys_sorted.scalar_type() == torch::kInt64 &&
                  order.scalar_type() == torch::kInt64,
              "cuda_label: inconsistent mode tensors");
  TORCH_CHECK(K > 0, "cuda_label: no modes");
  x = x.contiguous();
  modes_sorted = modes_sorted.contiguous();
  keys_sorted = keys_sorted.contiguous();
  order = order.contiguous();
  modes = modes.contiguous();
  auto labels = torch::empty({x.size(0)}, x.options().dtype(torch::kInt64));
  ms::GridView mg{modes_sorted.data_ptr<float>(), keys_sorted.data_ptr<int64_t>(), nullptr, K};
  check_cuda_result(ms_cuda_label(p, mg, order.data_ptr<int64_t>(), modes.data_ptr<float>(), K,
                                  x.data_ptr<float>(), x.size(0), labels.data_ptr<int64_t>(),
                                  x.get_device(), as_stream(stream)),
                    "cuda_label");
  return labels;
}
#endif  // MTML_WITH_CUDA

bool has_cuda() {
#ifdef MTML_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mtml mean-shift kernels (C++/OpenMP CPU kernel, optional CUDA kernel)";
  py::class_<ms::Plan>(m, "Plan")
      .def(py::init(&make_plan), py::arg("D"), py::arg("dims"), py::arg("lo"), py::arg("extent"),
           py::arg("cell"), py::arg("r2"), py::arg("bw2"), py::arg("inv_two_bw2"),
           py::arg("tol2"), py::arg("kernel"), py::arg("max_iter"))
      .def_readonly("D", &ms::Plan::D)
      .def_readonly("h", &ms::Plan::h)
      .def_readonly("cell", &ms::Plan::cell);
  m.def("mean_shift_cpu", &mean_shift_cpu, py::arg("x"), py::arg("seeds"), py::arg("plan"),
        "Full mean shift on CPU: (labels int64 [N], kept modes float32 [K, D]).");
  m.def("shift_cpu", &shift_cpu, py::arg("x"), py::arg("seeds"), py::arg("plan"),
        "Shift every seed to its mode: (modes [S, D], intensities int64 [S], 0 = dropped).");
  m.def("merge_modes", &merge_modes, py::arg("modes"), py::arg("counts"), py::arg("plan"),
        "Dedupe, sort by intensity and merge converged seeds (CPU): kept modes [K, D].");
  m.def("label_cpu", &label_cpu, py::arg("x"), py::arg("modes"), py::arg("plan"),
        "Index of the nearest mode for every point (CPU).");
  m.def("cell_keys_cpu", &cell_keys_cpu, py::arg("x"), py::arg("plan"),
        "Spatial-hash cell key of every point (CPU).");
  m.def("bin_seeds", &bin_seeds, py::arg("x"), py::arg("bandwidth"),
        "sklearn get_bin_seeds(x, bandwidth, min_bin_freq=1), first-occurrence order.");
  m.def("has_cuda", &has_cuda, "True when the CUDA kernel was compiled in.");
#ifdef MTML_WITH_CUDA
  m.def("cuda_cell_keys", &cuda_cell_keys, py::arg("x"), py::arg("plan"), py::arg("stream"));
  m.def("cuda_shift", &cuda_shift, py::arg("points_sorted"), py::arg("keys_sorted"),
        py::arg("seeds"), py::arg("plan"), py::arg("stream"));
  m.def("cuda_label", &cuda_label, py::arg("x"), py::arg("modes_sorted"), py::arg("keys_sorted"),
        py::arg("order"), py::arg("modes"), py::arg("plan"), py::arg("stream"));
#endif
}
