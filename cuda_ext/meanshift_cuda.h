// Host launchers of the CUDA mean-shift kernels (meanshift_cuda.cu). Plain C++ types only, so
// the binding code (meanshift_cpu.cpp, compiled by the host compiler) needs no CUDA headers.
// Every launcher returns 0 or a CUDA error code (see ms_cuda_error_string); `stream` is a
// cudaStream_t (torch.cuda.current_stream().cuda_stream), `device` the CUDA device index.
#pragma once

#include <cstdint>

#include "meanshift_common.h"

// Cell key (ms::item_key) of each of the n rows of x [n, D] (device memory) into keys [n].
int ms_cuda_cell_keys(const ms::Plan& p, const float* x, int64_t n, int64_t* keys, int device,
                      void* stream);

// One thread per seed: shift seeds [S, D] to modes [S, D] over the points of g (sorted by key),
// intensities into counts [S]. scratch_acc [S, D] doubles and scratch_nm [S, D] floats are only
// used (and must be non-null) when ms_cuda_needs_scratch(D).
int ms_cuda_shift(const ms::Plan& p, const ms::GridView& g, const float* seeds, int64_t S,
                  float* modes, int64_t* counts, double* scratch_acc, float* scratch_nm,
                  int device, void* stream);

// One thread per point: labels[i] = index in `modes` [K, D] of the mode nearest to x[i]; mg holds
// the same modes sorted by key and order[j] is the index in `modes` of mg's j-th mode.
int ms_cuda_label(const ms::Plan& p, const ms::GridView& mg, const int64_t* order,
                  const float* modes, int64_t K, const float* x, int64_t n, int64_t* labels,
                  int device, void* stream);

// True when D is too large for the per-thread register arrays of ms_cuda_shift.
bool ms_cuda_needs_scratch(int64_t D);

const char* ms_cuda_error_string(int code);
