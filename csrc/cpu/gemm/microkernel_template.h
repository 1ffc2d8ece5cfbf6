// The micro-kernel body, written once over a vector type V. Included only by the per-ISA
// translation units, each of which defines its V in an anonymous namespace, so that no inline
// function compiled with wide-ISA flags can be shared with (and leak into) portable code.
#pragma once

namespace zg {
namespace {

// V provides: using T, reg; static constexpr int width; zero(), loadu(p), storeu(p, r),
// broadcast(x), fma(a, b, c) = a * b + c, mul(a, b), add(a, b); for the masked form (NV = 1,
// only the first `width` lanes of B and C), also loadu(p, width) and storeu(p, r, width).
template <class V, int MR, int NV, PanelLayout layout, bool masked = false>
void microkernel_body(long k, const typename V::T* __restrict a, long lda, const typename V::T* __restrict b, long ldb,
                      typename V::T* __restrict c, long ldc, typename V::T alpha, typename V::T beta, long runs,
                      long run_step, long width = 0) {
  static_assert(!masked || NV == 1, "the masked form is one vector wide");
  constexpr bool row_major = layout == PanelLayout::row_major;
  constexpr int W = V::width;
  auto load = [width](const typename V::T* p) {
    if constexpr (masked) return V::loadu(p, width);
    else return V::loadu(p);
  };
  auto store = [width](typename V::T* p, typename V::reg r) {
    if constexpr (masked) V::storeu(p, r, width);
    else V::storeu(p, r);
  };
  typename V::reg acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();

  // Row-major panels: rows in groups of four, each read at 0-3 lda from its group's base pointer.
  // Twelve row offsets would not fit in the general registers beside the loop's own, and the
  // compiler spilled them inside the loop (+4% in place from L2; +2% column-major, from the
  // unrolling by two).
  constexpr int G = 4, groups = (MR + G - 1) / G;
  const typename V::T* base[groups];
  for (long run = 0; run < runs; ++run, a += run_step) {
#pragma GCC unroll 8
    for (int q = 0; q < groups; ++q) base[q] = a + (row_major ? q * G * lda : 0);
#pragma GCC unroll 2
    for (long p = 0; p < k; ++p) {
      typename V::reg bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = load(b + v * W);
      // B streams from L2 (the driver keeps A's micro-panel in L1): ask for its row 8 steps ahead.
#pragma GCC unroll 8
      for (int v = 0; v < NV * W * int(sizeof(typename V::T)); v += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(b + 8 * ldb) + v, 0, 3);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
        typename V::reg ar = V::broadcast(row_major ? base[r / G][(r % G) * lda] : base[0][r]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
      }
#pragma GCC unroll 8
      for (int q = 0; q < groups; ++q) base[q] += row_major ? 1 : lda;
      b += ldb;
    }
  }

  // The common cases (alpha 1; beta 0 or 1) without their multiplications: at k = 32 (a dense
  // layer's weight gradient) they were a few percent of the call. The same bits either way.
  const typename V::T one(1);
  if (beta == typename V::T(0) && alpha == one) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) store(c + r * ldc + v * W, acc[r][v]);
  } else if (beta == typename V::T(0)) {
    const typename V::reg va = V::broadcast(alpha);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) store(c + r * ldc + v * W, V::mul(va, acc[r][v]));
  } else if (alpha == one && beta == one) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        typename V::T* cp = c + r * ldc + v * W;
        store(cp, V::add(acc[r][v], load(cp)));
      }
  } else {
    const typename V::reg va = V::broadcast(alpha), vb = V::broadcast(beta);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        typename V::T* cp = c + r * ldc + v * W;
        store(cp, V::fma(va, acc[r][v], V::mul(vb, load(cp))));
      }
  }
}

}  // namespace
}  // namespace zg
