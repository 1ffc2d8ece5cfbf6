// The one per-ISA piece of the GEMM: an MR x NR register-blocked micro-kernel and the cache
// block sizes that go with it (BLIS's idea: the loops and the packing are written once).
#pragma once

#include "../cpu_features.h"

namespace zg {

// c[0:MR, 0:NR] (row stride ldc) = alpha * A * B + beta * c, where B is a k x NR micro-panel
// stored row by row (b[p * ldb + j]; ldb = NR when packed) and A an MR x k micro-panel in one
// of two layouts:
//   column-major  a[p * lda + r]   (lda = MR when packed): natural when A's source is stored
//                                  transposed (then it may also be read in place);
//   row-major     a[r * lda + p]:  natural when A's rows are contiguous (plain A, convolutions),
//                                  so packing is a plain copy of row pieces.
// beta == 0 writes c without reading it (NaN in c is ignored).
// The sum may run over `runs` runs of k steps each (a depth of runs * k): run s reads A from
// a + s * run_step, while B goes on row after row. A convolution's windows at consecutive kernel
// rows, or over consecutive output rows, are such runs, summed without storing C in between.
template <class T>
using MicroKernelFn = void (*)(long k, const T* a, long lda, const T* b, long ldb, T* c, long ldc, T alpha, T beta,
                               long runs, long run_step);

// The same product over only the first `width` (1..NR) columns of B and C, which are read and
// written with masked loads and stores: B may be read in place whatever its row stride (no lane
// past `width` is touched), and C needs no edge buffer. No runs: for plain products.
template <class T>
using MaskedKernelFn = void (*)(long k, const T* a, long lda, const T* b, long ldb, T* c, long ldc, T alpha, T beta,
                                long width);

enum class PanelLayout { column_major, row_major };

template <class T>
struct MicroKernel {
  MicroKernelFn<T> column_major_a, row_major_a;
  int mr, nr;      // register block
  int mc, kc, nc;  // cache blocks: A block mc x kc (L2), B panel kc x nc (L3), B micro-panel kc x nr (L1)
  // For products of at most narrow->nr columns (a dense layer of 10 units), a table of narrower
  // tiles, where the first's would compute mostly padding; null where an ISA has none.
  const MicroKernel* narrow = nullptr;
  // A table of tiles with half the rows and twice the columns, for products whose n fills its
  // panels: each element of A serves twice as many columns and a step loads less per FMA, while
  // B is read twice as fast. Null where an ISA has none.
  const MicroKernel* wide = nullptr;
  // The kernels in masked form, one B vector wide; null where an ISA has no masked loads (set
  // only in AVX-512's narrow tables, whose 10-column products then use B and C in place).
  MaskedKernelFn<T> masked_column_major_a = nullptr, masked_row_major_a = nullptr;
  // Row-major kernels of nr columns and any height up to max_height rows, indexed by height (null
  // where there is none): a convolution whose grid rows are that many pixels wide computes each
  // row as one tile, where mr-row tiles would compute rows of padding or gather the rest (conv2's
  // 11-pixel output rows, its backward-data's 13-pixel rows). Null where an ISA has none.
  const MicroKernelFn<T>* row_major_heights = nullptr;
  int max_height = 0;
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
