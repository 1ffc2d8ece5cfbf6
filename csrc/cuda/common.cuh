// Helpers shared by the .cu files: error checks, index arithmetic, 16-byte vector access.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/kernels.h"

namespace zg {
namespace cuda {

using i64 = std::int64_t;

// Throws when a CUDA call failed; `what` names the kernel or call for the message.
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("zengrad CUDA kernel ") + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

// After a launch: a bad configuration (too many blocks, too much shared memory, no kernel image
// for this GPU) shows up here, without waiting for the kernel.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

__host__ __device__ constexpr i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }
__host__ __device__ constexpr i64 min64(i64 a, i64 b) { return a < b ? a : b; }
__host__ __device__ constexpr i64 max64(i64 a, i64 b) { return a > b ? a : b; }

// The taps [first, last) of a window that starts at input coordinate `start` (may be negative)
// with taps every `step` pixels, `k` taps, that land inside [0, size). Mirrors the CPU's
// pool2d.cpp `inside`; 64-bit because start + size may pass 2^31.
struct Taps {
  int first, last;
};

__host__ __device__ inline Taps taps_inside(i64 start, i64 step, i64 k, i64 size) {
  const i64 first = start >= 0 ? 0 : (step - 1 - start) / step;
  const i64 last = start >= size ? 0 : min64(k, (size - start + step - 1) / step);
  return {int(first), int(max64(first, last))};
}

// 16 bytes of T: 4 floats or 2 doubles, loaded and stored as one access.
template <class T>
struct Vec16;
template <>
struct Vec16<float> {
  static constexpr int kN = 4;
  __device__ static void load(const float* p, float (&v)[4]) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(p));
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
  }
  __device__ static void store(float* p, const float (&v)[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
  __device__ static void load_shared(const float* p, float* v) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
  }
};
template <>
struct Vec16<double> {
  static constexpr int kN = 2;
  __device__ static void load(const double* p, double (&v)[2]) {
    const double2 q = __ldg(reinterpret_cast<const double2*>(p));
    v[0] = q.x;
    v[1] = q.y;
  }
  __device__ static void store(double* p, const double (&v)[2]) {
    *reinterpret_cast<double2*>(p) = make_double2(v[0], v[1]);
  }
  __device__ static void load_shared(const double* p, double* v) {
    const double2 q = *reinterpret_cast<const double2*>(p);
    v[0] = q.x;
    v[1] = q.y;
  }
};

// Launches `kernel` on `stream`. The one place with the <<<>>> syntax: the CPU emulation that
// tests the kernels' index logic without a GPU (tests/cuda_emulation) brings its own launch.
#ifdef ZG_CUDA_EMULATION
using zg_emulation::launch;
#else
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream, A&&... args) {
  kernel<<<grid, block, 0, stream>>>(std::forward<A>(args)...);
}
#endif

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Blocks of a 1-D grid-stride launch for `count` items: enough to fill any GPU, few enough
// that every block does a good share (the loop inside covers the rest).
inline unsigned grid_for(i64 count, int threads) {
  const i64 blocks = ceil_div(count, threads);
  return unsigned(min64(max64(blocks, 1), 65536));
}

}  // namespace cuda
}  // namespace zg
