// Mean-shift core shared by the C++ CPU kernel (meanshift_cpu.cpp) and the CUDA kernel
// (meanshift_cuda.cu). Every function here is compiled both for the host and, under nvcc, for the
// device, so the per-seed iteration and the nearest-mode search are literally the same code on
// both back ends (and mirror mtml/cluster/meanshift.py operation by operation).
//
// Arithmetic contract (kept identical in all three implementations so they agree bit for bit
// except for the order of double-precision sums):
//   * squared distance: float32, summed over the dimensions in order, no fused multiply-add;
//   * cell coordinate of a value v along hashed dimension j: floor((double)v / cell) - lo[j];
//   * sums of point coordinates (and gaussian weights) in double, mean = (float)(sum / weight);
//   * squared shift in double, summed over the dimensions in order.
// This header includes nothing from torch so that nvcc can compile the .cu on its own.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MS_HD __host__ __device__ __forceinline__
#else
#define MS_HD inline
#endif

namespace ms {

constexpr int kMaxHashDims = 4;
constexpr int kMaxRows = 27;  // 3^(kMaxHashDims - 1): rows of cells visited per query
constexpr int kFlat = 0;
constexpr int kGaussian = 1;

// Everything a kernel needs to know about one mean-shift problem (plain data, passed by value to
// CUDA kernels).
struct Plan {
  int D;                          // point dimension
  int h;                          // number of hashed dimensions, 0 = brute force (one cell)
  int dims[kMaxHashDims];         // the hashed coordinates; dims[h-1] has stride 1 in the key
  int64_t lo[kMaxHashDims];       // smallest occupied cell coordinate per hashed dimension
  int64_t extent[kMaxHashDims];   // number of cells per hashed dimension
  int64_t stride[kMaxHashDims];   // mixed-radix key strides
  double cell;                    // cell edge, slightly larger than the kernel support radius
  float r2;                       // kernel support radius^2 (flat: bw^2, gaussian: (3 bw)^2)
  float bw2;                      // bandwidth^2: intensity, merge and "within bandwidth" radius
  double inv_two_bw2;             // 1 / (2 bw^2), gaussian weights exp(-d^2 / (2 bw^2))
  double tol2;                    // convergence when squared shift <= (tol * bw)^2
  int kernel;                     // kFlat or kGaussian
  int max_iter;                   // sklearn semantics: at most max_iter + 1 mean updates
};

// Points (or modes) sorted by cell key. prefix (host only, may be null) is the dense table
// prefix[k] = number of items with key < k, of size prod(extent) + 1 (only used when n < 2^31).
struct GridView {
  const float* pts;
  const int64_t* keys;
  const int32_t* prefix;
  int64_t n;
};

// ---- arithmetic that must not be contracted into FMAs ---------------------------------------
MS_HD float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
MS_HD float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
MS_HD float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MS_HD double d_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
MS_HD double d_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// Squared euclidean distance in float32, summed over the dimensions in order. Checks every 4
// dimensions whether the partial sum already exceeds `limit` and then returns it (partial sums
// of non-negative terms never decrease, so comparisons with limit are unaffected).
MS_HD float sq_dist(const float* a, const float* b, int D, float limit) {
  float s = 0.0f;
  int d = 0;
  for (; d + 4 <= D; d += 4) {
    const float t0 = f_sub(a[d], b[d]), t1 = f_sub(a[d + 1], b[d + 1]);
    const float t2 = f_sub(a[d + 2], b[d + 2]), t3 = f_sub(a[d + 3], b[d + 3]);
    s = f_add(s, f_mul(t0, t0));
    s = f_add(s, f_mul(t1, t1));
    s = f_add(s, f_mul(t2, t2));
    s = f_add(s, f_mul(t3, t3));
    if (s > limit) return s;
  }
  for (; d < D; ++d) {
    const float t = f_sub(a[d], b[d]);
    s = f_add(s, f_mul(t, t));
  }
  return s;
}

// ---- spatial hash ----------------------------------------------------------------------------
// Cell coordinate (relative to lo) of value v along hashed dimension j, clamped to
// [-2, extent + 1] so far-away queries cannot overflow.
MS_HD int64_t cell_coord(const Plan& p, int j, float v) {
  double rel = floor((double)v / p.cell) - (double)p.lo[j];
  if (rel < -2.0) rel = -2.0;
  const double top = (double)p.extent[j] + 1.0;
  if (rel > top) rel = top;
  return (int64_t)rel;
}

// Key of a stored item (a data point or a mode, always inside the data's bounding box).
MS_HD int64_t item_key(const Plan& p, const float* x) {
  int64_t key = 0;
  for (int j = 0; j < p.h; ++j) {
    int64_t c = cell_coord(p, j, x[p.dims[j]]);
    if (c < 0) c = 0;
    if (c > p.extent[j] - 1) c = p.extent[j] - 1;
    key += c * p.stride[j];
  }
  return key;
}

MS_HD int64_t lower_bound_key(const int64_t* keys, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < k) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Index ranges [beg, end) of the stored items in the 3^h cells around the query cell q (relative
// cell coordinates, see cell_coord). Cells adjacent along the last hashed dimension are
// consecutive in key order, so each of the 3^(h-1) rows is one range. Returns the number of
// non-empty ranges written.
MS_HD int query_ranges(const Plan& p, const GridView& g, const int64_t* q, int64_t* beg,
                       int64_t* end) {
  if (p.h == 0) {
    if (g.n == 0) return 0;
    beg[0] = 0;
    end[0] = g.n;
    return 1;
  }
  const int lead = p.h - 1;
  const int last = p.h - 1;
  int64_t a = q[last] - 1, b = q[last] + 1;
  if (a < 0) a = 0;
  if (b > p.extent[last] - 1) b = p.extent[last] - 1;
  if (a > b) return 0;
  int rows = 1;
  for (int j = 0; j < lead; ++j) rows *= 3;
  int nr = 0;
  for (int r = 0; r < rows; ++r) {
    int rem = r;
    int64_t base = 0;
    bool ok = true;
    for (int j = 0; j < lead; ++j) {
      const int64_t c = q[j] + (int64_t)(rem % 3) - 1;
      rem /= 3;
      if (c < 0 || c >= p.extent[j]) { ok = false; break; }
      base += c * p.stride[j];
    }
    if (!ok) continue;
    const int64_t klo = base + a, khi = base + b;
    int64_t s, e;
    if (g.prefix != nullptr) {
      s = g.prefix[klo];
      e = g.prefix[khi + 1];
    } else {
      s = lower_bound_key(g.keys, g.n, klo);
      e = lower_bound_key(g.keys, g.n, khi + 1);
    }
    if (e > s) {
      beg[nr] = s;
      end[nr] = e;
      ++nr;
    }
  }
  return nr;
}

// ---- one seed -----------------------------------------------------------------------------
// Shifts `mean` (in: the seed, out: the mode) until the squared shift is <= tol2 or max_iter is
// reached, exactly like sklearn's _mean_shift_single_seed. Returns the intensity: the number of
// points within the bandwidth of the last centre at which the kernel was evaluated, or 0 when the
// kernel support became empty (sklearn then drops the seed). nm and acc are scratch arrays of D
// elements, beg/end of kMaxRows elements.
MS_HD int64_t shift_seed(const Plan& p, const GridView& g, float* mean, float* nm, double* acc,
                         int64_t* beg, int64_t* end) {
  const int D = p.D;
  int64_t q[kMaxHashDims], qprev[kMaxHashDims];
  int nr = -1;
  int64_t intensity = 0;
  for (int it = 0;; ++it) {
    bool same = nr >= 0;
    for (int j = 0; j < p.h; ++j) {
      q[j] = cell_coord(p, j, mean[p.dims[j]]);
      same = same && q[j] == qprev[j];
    }
    if (!same) {  // ranges only change when the centre moves to another cell
      nr = query_ranges(p, g, q, beg, end);
      for (int j = 0; j < p.h; ++j) qprev[j] = q[j];
    }
    for (int d = 0; d < D; ++d) acc[d] = 0.0;
    double wsum = 0.0;
    int64_t nsup = 0, nbw = 0;
    for (int r = 0; r < nr; ++r) {
      for (int64_t i = beg[r]; i < end[r]; ++i) {
        const float* x = g.pts + i * D;
        const float d2 = sq_dist(x, mean, D, p.r2);
        if (!(d2 <= p.r2)) continue;
        ++nsup;
        if (p.kernel == kFlat) {
          for (int d = 0; d < D; ++d) acc[d] = d_add(acc[d], (double)x[d]);
        } else {
          const double w = exp(d_mul(-(double)d2, p.inv_two_bw2));
          wsum = d_add(wsum, w);
          for (int d = 0; d < D; ++d) acc[d] = d_add(acc[d], d_mul(w, (double)x[d]));
          if (d2 <= p.bw2) ++nbw;
        }
      }
    }
    if (nsup == 0) {  // nothing within the kernel support: sklearn breaks and drops the seed
      intensity = 0;
      break;
    }
    if (p.kernel == kFlat) {
      wsum = (double)nsup;
      nbw = nsup;
    }
    double s2 = 0.0;
    for (int d = 0; d < D; ++d) {
      const float v = (float)(acc[d] / wsum) + 0.0f;  // + 0.0f turns -0.0 into +0.0
      nm[d] = v;
      const double dd = (double)v - (double)mean[d];
      s2 = d_add(s2, d_mul(dd, dd));
    }
    for (int d = 0; d < D; ++d) mean[d] = nm[d];
    intensity = nbw;
    if (s2 <= p.tol2 || it >= p.max_iter) break;
  }
  return intensity;
}

// ---- labelling ----------------------------------------------------------------------------
// Index (in `modes` order) of the mode nearest to x; ties go to the lowest index. mg holds the
// same K modes sorted by key, order[i] being the index of mg's i-th mode in `modes`; beg/end are
// the ranges of mg around x's cell (query_ranges). Those 3^h cells hold every mode within the
// kernel radius of x, so the search only falls back to scanning all K modes when none is found
// there or the best one found is farther than that radius (a mode outside could be nearer).
MS_HD int64_t nearest_in_ranges(const Plan& p, const GridView& mg, const int64_t* order,
                                const float* modes, int64_t K, const float* x, int nr,
                                const int64_t* beg, const int64_t* end) {
  const int D = p.D;
  float best = 0.0f;
  int64_t bi = -1;
  for (int r = 0; r < nr; ++r) {
    for (int64_t i = beg[r]; i < end[r]; ++i) {
      const float d2 = sq_dist(mg.pts + i * D, x, D, bi < 0 ? INFINITY : best);
      const int64_t k = order[i];
      if (bi < 0 || d2 < best || (d2 == best && k < bi)) {
        best = d2;
        bi = k;
      }
    }
  }
  if (bi >= 0 && (best <= p.r2 || p.h == 0)) return bi;  // h == 0: all modes were searched
  bi = -1;
  for (int64_t k = 0; k < K; ++k) {
    const float d2 = sq_dist(modes + k * D, x, D, bi < 0 ? INFINITY : best);
    if (bi < 0 || d2 < best) {
      best = d2;
      bi = k;
    }
  }
  return bi;
}

MS_HD int64_t nearest_mode(const Plan& p, const GridView& mg, const int64_t* order,
                           const float* modes, int64_t K, const float* x, int64_t* beg,
                           int64_t* end) {
  int64_t q[kMaxHashDims];
  for (int j = 0; j < p.h; ++j) q[j] = cell_coord(p, j, x[p.dims[j]]);
  const int nr = query_ranges(p, mg, q, beg, end);
  return nearest_in_ranges(p, mg, order, modes, K, x, nr, beg, end);
}

}  // namespace ms
