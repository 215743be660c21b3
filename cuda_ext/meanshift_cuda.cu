// CUDA mean-shift kernels for mtml._meanshift_ext. The per-seed iteration and the nearest-mode
// search are the host/device functions of meanshift_common.h, i.e. the very code the C++ CPU
// kernel runs; this file only maps seeds and points to threads.
//
// The spatial hash is built by the caller on the device: keys from ms_cuda_cell_keys, then a
// stable torch.sort of the keys and a gather of the points. Mode merging (dedupe, intensity sort,
// greedy suppression) runs on the host with the CPU kernel's code.
//
// Pure CUDA: no torch headers, so `nvcc -c meanshift_cuda.cu` works with any CUDA toolkit.
#include <cuda_runtime.h>

#include <cstdint>

#include "meanshift_common.h"
#include "meanshift_cuda.h"

namespace {

constexpr int kThreads = 128;
constexpr int kMaxRegisterD = 16;  // larger D uses global scratch arrays
constexpr int kErrTooManyPoints = -1000;

// Makes `device` current for the lifetime of the guard and restores the previous device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    ok_ = cudaGetDevice(&prev_) == cudaSuccess;
    if (ok_ && prev_ != device) cudaSetDevice(device);
  }
  ~DeviceGuard() {
    if (ok_) cudaSetDevice(prev_);
  }

 private:
  int prev_ = 0;
  bool ok_ = false;
};

__global__ void cell_keys_kernel(ms::Plan p, const float* __restrict__ x, int64_t n,
                                 int64_t* __restrict__ keys) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) keys[i] = ms::item_key(p, x + i * p.D);
}

// MAXD > 0: mean, new mean and sums live in per-thread arrays; MAXD == 0: in global scratch.
template <int MAXD>
__global__ void __launch_bounds__(kThreads)
    shift_kernel(ms::Plan p, ms::GridView g, const float* __restrict__ seeds, int64_t S,
                 float* __restrict__ modes, int64_t* __restrict__ counts, double* scratch_acc,
                 float* scratch_nm) {
  const int64_t s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= S) return;
  const int D = p.D;
  int64_t beg[ms::kMaxRows], end[ms::kMaxRows];
  if constexpr (MAXD > 0) {
    float mean[MAXD], nm[MAXD];
    double acc[MAXD];
    for (int d = 0; d < D; ++d) mean[d] = seeds[s * D + d];
    counts[s] = ms::shift_seed(p, g, mean, nm, acc, beg, end);
    for (int d = 0; d < D; ++d) modes[s * D + d] = mean[d];
  } else {
    float* mean = modes + s * D;
    for (int d = 0; d < D; ++d) mean[d] = seeds[s * D + d];
    counts[s] = ms::shift_seed(p, g, mean, scratch_nm + s * D, scratch_acc + s * D, beg, end);
  }
}

__global__ void __launch_bounds__(kThreads)
    label_kernel(ms::Plan p, ms::GridView mg, const int64_t* __restrict__ order,
                 const float* __restrict__ modes, int64_t K, const float* __restrict__ x,
                 int64_t n, int64_t* __restrict__ labels) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t beg[ms::kMaxRows], end[ms::kMaxRows];
  labels[i] = ms::nearest_mode(p, mg, order, modes, K, x + i * p.D, beg, end);
}

int blocks_for(int64_t n, int64_t* blocks) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  if (b > 2147483647LL) return kErrTooManyPoints;
  *blocks = b;
  return 0;
}

int finish() { return (int)cudaGetLastError(); }

}  // namespace

bool ms_cuda_needs_scratch(int64_t D) { return D > kMaxRegisterD; }

const char* ms_cuda_error_string(int code) {
  if (code == kErrTooManyPoints) return "too many points for one kernel launch";
  return cudaGetErrorString((cudaError_t)code);
}

int ms_cuda_cell_keys(const ms::Plan& p, const float* x, int64_t n, int64_t* keys, int device,
                      void* stream) {
  if (n == 0) return 0;
  DeviceGuard guard(device);
  int64_t blocks = 0;
  if (int err = blocks_for(n, &blocks)) return err;
  cell_keys_kernel<<<(unsigned)blocks, kThreads, 0, (cudaStream_t)stream>>>(p, x, n, keys);
  return finish();
}

int ms_cuda_shift(const ms::Plan& p, const ms::GridView& g, const float* seeds, int64_t S,
                  float* modes, int64_t* counts, double* scratch_acc, float* scratch_nm,
                  int device, void* stream) {
  if (S == 0) return 0;
  DeviceGuard guard(device);
  int64_t blocks = 0;
  if (int err = blocks_for(S, &blocks)) return err;
  const cudaStream_t st = (cudaStream_t)stream;
  const unsigned nb = (unsigned)blocks;
  if (p.D <= 4) {
    shift_kernel<4><<<nb, kThreads, 0, st>>>(p, g, seeds, S, modes, counts, nullptr, nullptr);
  } else if (p.D <= 8) {
    shift_kernel<8><<<nb, kThreads, 0, st>>>(p, g, seeds, S, modes, counts, nullptr, nullptr);
  } else if (p.D <= kMaxRegisterD) {
    shift_kernel<kMaxRegisterD>
        <<<nb, kThreads, 0, st>>>(p, g, seeds, S, modes, counts, nullptr, nullptr);
  } else {
    if (scratch_acc == nullptr || scratch_nm == nullptr) return (int)cudaErrorInvalidValue;
    shift_kernel<0><<<nb, kThreads, 0, st>>>(p, g, seeds, S, modes, counts, scratch_acc,
                                             scratch_nm);
  }
  return finish();
}

int ms_cuda_label(const ms::Plan& p, const ms::GridView& mg, const int64_t* order,
                  const float* modes, int64_t K, const float* x, int64_t n, int64_t* labels,
                  int device, void* stream) {
  if (n == 0) return 0;
  DeviceGuard guard(device);
  int64_t blocks = 0;
  if (int err = blocks_for(n, &blocks)) return err;
  label_kernel<<<(unsigned)blocks, kThreads, 0, (cudaStream_t)stream>>>(p, mg, order, modes, K, x,
                                                                        n, labels);
  return finish();
}
