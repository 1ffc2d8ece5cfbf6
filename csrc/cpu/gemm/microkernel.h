// The one per-ISA piece of the GEMM: an MR x NR register-blocked micro-kernel and the cache
// block sizes that go with it (BLIS's idea: the loops and the packing are written once).
#pragma once

#include "../cpu_features.h"

namespace zg {

// c[0:MR, 0:NR] (row stride ldc) = alpha * A * B + beta * c, where A is an MR x k micro-panel
// packed column by column (a[p * MR + r]) and B a k x NR micro-panel packed row by row
// (b[p * NR + j]). beta == 0 writes c without reading it (NaN in c is ignored).
template <class T>
using MicroKernelFn = void (*)(long k, const T* a, const T* b, T* c, long ldc, T alpha, T beta);

template <class T>
struct MicroKernel {
  MicroKernelFn<T> fn;
  int mr, nr;      // register block
  int mc, kc, nc;  // cache blocks: A block mc x kc (L2), B panel kc x nc (L3), B micro-panel kc x nr (L1)
};

// One table per ISA, each compiled in its own translation unit with that ISA's flags.
const MicroKernel<float>& microkernel_portable_f32();
const MicroKernel<double>& microkernel_portable_f64();
const MicroKernel<float>& microkernel_avx2_f32();
const MicroKernel<double>& microkernel_avx2_f64();
const MicroKernel<float>& microkernel_avx512_f32();
const MicroKernel<double>& microkernel_avx512_f64();

// The micro-kernel for the SIMD level in use.
template <class T>
const MicroKernel<T>& microkernel();

}  // namespace zg
