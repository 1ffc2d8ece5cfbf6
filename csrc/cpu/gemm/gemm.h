// The GEMM driver, BLIS style: C (m x n) = alpha * A (m x k) * B (k x n) + beta * C.
//
// Loops, outermost first: jc over n in steps of NC, then B[:, jc:jc+NC] is packed by all
// threads (a fork-join region; no barriers, which cost a time slice whenever another process
// holds a core). Then each thread, over its own rectangle of C: ic over its rows in steps of MC
// (A block -> L2, packed privately), pc over k in steps of KC, jr over NR-wide B micro-panels
// (-> L1), ir over MR-tall A micro-panels, and the micro-kernel. Threads split C, never the sum
// over k, so every element is computed the same way whatever the team size (bit-identical).
//
// A and B are "packers": objects that copy any block of their operand into the micro-kernel's
// panel layout (A: row- or column-major micro-panels, whichever copies faster; B: row-major). A plain matrix is one packer; a convolution's implicit im2col is another, so
// the convolutions reuse this driver without materialising their patch matrices.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../threading.h"
#include "microkernel.h"

namespace zg {

// The scratch buffers a thread keeps: what a call stores in one slot must not be in use in it.
enum ScratchSlot { kSlotPackA, kSlotPackB, kSlotConv, kSlotPatchRow, kSlotPadded, kSlotAligned, kSlotGate, kSlotCount };

// A 64-byte-aligned scratch buffer that only grows, one per thread and slot: packing buffers
// are reused across calls instead of being allocated (and page-faulted) each time.
template <class T>
T* scratch(int slot, std::size_t count) {
  struct Buffer {
    void* data = nullptr;
    std::size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffers[kSlotCount];
  Buffer& buf = buffers[slot];
  std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  if (bytes > buf.bytes) {
    std::free(buf.data);
    buf.data = std::aligned_alloc(64, bytes);
    if (!buf.data) throw std::bad_alloc();
    buf.bytes = bytes;
  }
  return static_cast<T*>(buf.data);
}

// A matrix whose element (i, j) is data[i * rs + j * cs]: any transpose of a C-contiguous array.
template <class T>
struct StridedMatrix {
  const T* data;
  long rs, cs;

  // Rows of A are contiguous when cs == 1: pack row pieces; otherwise columns are (rs == 1).
  PanelLayout layout() const { return cs == 1 ? PanelLayout::row_major : PanelLayout::column_major; }

  // The micro-kernel can read a block in place, unpacked, in layout(): rows contiguous (row
  // stride *ld), or columns contiguous (column stride *ld); null for other strides.
  const T* direct(long row, long col, long* ld) const {
    *ld = cs == 1 ? rs : cs;
    return cs == 1 || rs == 1 ? data + row * rs + col * cs : nullptr;
  }

  // Rows [i0, i0 + rows) x columns [p0, p0 + depth) as MR-row micro-panels in layout(),
  // zero-filled past `rows`.
  void pack_a(T* dst, long i0, long rows, long p0, long depth, int mr) const {
    for (long r0 = 0; r0 < rows; r0 += mr, dst += mr * depth) {
      const long height = std::min<long>(mr, rows - r0);
      const T* src = data + (i0 + r0) * rs + p0 * cs;
      if (cs == 1) {
        for (long r = 0; r < height; ++r) std::memcpy(dst + r * depth, src + r * rs, depth * sizeof(T));
        std::fill(dst + height * depth, dst + mr * depth, T(0));
      } else {
        for (long p = 0; p < depth; ++p) {
          T* d = dst + p * mr;
          for (long r = 0; r < height; ++r) d[r] = src[r * rs + p * cs];
          for (long r = height; r < mr; ++r) d[r] = T(0);
        }
      }
    }
  }

  // Rows [p0, p0 + depth) x columns [j0, j0 + cols) as NR-column micro-panels, zero-filled past `cols`.
  void pack_b(T* dst, long p0, long depth, long j0, long cols, int nr) const {
    for (long c0 = 0; c0 < cols; c0 += nr, dst += nr * depth) {
      long width = std::min<long>(nr, cols - c0);
      const T* src = data + p0 * rs + (j0 + c0) * cs;
      for (long p = 0; p < depth; ++p) {
        T* d = dst + p * nr;
        const T* s = src + p * rs;
        if (cs == 1) {
          std::memcpy(d, s, width * sizeof(T));
        } else {
          for (long j = 0; j < width; ++j) d[j] = s[j * cs];
        }
        for (long j = width; j < nr; ++j) d[j] = T(0);
      }
    }
  }
};

namespace detail {

// Threads as a tm x tn grid over (A micro-panels, B micro-panels): the least work per thread,
// but rows split among all the threads unless a split of the columns saves more than a sixteenth
// of it. Threads that share rows each read every A micro-panel, for fewer tiles (dense dW on
// 6 x 64 tiles, 267 x 2 panels: 52 us split by columns, 45 us by rows, where rows counted one
// tile more).
inline void choose_grid(int team, long m_panels, long n_panels, int* tm, int* tn) {
  long best = -1;
  for (int rows = team; rows >= 1; --rows) {
    if (team % rows) continue;
    int cols = team / rows;
    long per_thread = (m_panels + rows - 1) / rows * ((n_panels + cols - 1) / cols);
    if (best < 0 || per_thread < best - best / 16) best = per_thread, *tm = rows, *tn = cols;
  }
}

template <class T>
void scale(long m, long n, T* c, long ldc, T beta) {
  for (long i = 0; i < m; ++i)
    for (long j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

}  // namespace detail

// Enough work (flops) to be worth waking another thread for.
constexpr double kMinFlopsPerThread = 2e6;
// B micro-panels read by one thread in one pass over its A block are kept within this many
// bytes, so that they stay in its L2 beside the A block.
constexpr long kL2BlockBytes = 512L << 10;
// The packed B (all of k for NC columns) is kept within this many bytes by narrowing NC.
constexpr long kPackedBBytes = 16L << 20;

// What the driver does to each tile of C once its sum is complete, while the tile is in cache:
// add bias[j] to column j (unless bias is null), then max(v, 0) when relu (NaN kept, as NumPy's
// maximum).
template <class T>
struct Epilogue {
  const T* bias = nullptr;
  bool relu = false;

  bool any() const { return bias || relu; }
  // Rows of `width` columns from column j0 on, row stride ldc.
  void apply(T* c, long ldc, long height, long width, long j0) const {
    for (long r = 0; r < height; ++r) {
      T* row = c + r * ldc;
      if (bias)
        for (long q = 0; q < width; ++q) row[q] += bias[j0 + q];
      if (relu)
        for (long q = 0; q < width; ++q) row[q] = row[q] < T(0) ? T(0) : row[q];
    }
  }
};

// The depth of a block of k: the table's kc, or less where this CPU's L1 could not hold an A
// micro-panel (mr x kc, read once per B micro-panel of a block) in three quarters of it.
template <class T>
long k_block(const MicroKernel<T>& uk) {
  return std::clamp(3 * l1d_bytes() / 4 / (uk.mr * long(sizeof(T))), 64L, long(uk.kc));
}

// `table`: the micro-kernel and blocks to use (default: the SIMD level's).
template <class T, class APacker, class BPacker>
void gemm_driver(long m, long n, long k, const APacker& A, const BPacker& B, T* c, long ldc, T alpha,
                 T beta, Epilogue<T> epilogue = {}, const MicroKernel<T>* table = nullptr) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    detail::scale(m, n, c, ldc, beta);
    epilogue.apply(c, ldc, m, n, 0);
    return;
  }
  const MicroKernel<T>& uk = table ? *table : microkernel<T>();
  const MicroKernelFn<T> kernel = A.layout() == PanelLayout::row_major ? uk.row_major_a : uk.column_major_a;
  // Partial panels of B: read in place and stored to C directly where the table has masked kernels.
  const MaskedKernelFn<T> masked = A.layout() == PanelLayout::row_major ? uk.masked_row_major_a : uk.masked_column_major_a;
  const long MR = uk.mr, NR = uk.nr;
  // k in equal blocks of at most k_block (800 = 400 + 400, not 768 + 32: a thin last block
  // would pay a full load and store of C for little work).
  const long k_max = k_block(uk), KC = (k + (k + k_max - 1) / k_max - 1) / ((k + k_max - 1) / k_max);
  // With few rows of A (at most the table's mc: one block of rows), each element of B serves
  // few micro-tiles and packing B would cost about as much as the product: then the micro-kernel
  // reads A and B in place wherever it can (full panels of operands with contiguous rows); the
  // ragged edges are still packed. A taller A has blocks of fewer rows where a packed block
  // (MC x KC) would take more than a third of L2, beside the chunk of B that passes over it
  // (2048^3 on a 2 MiB L2: 252 rows, not 960; 58 -> 56 ms).
  const bool small_m = m <= uk.mc;
  const long MC = small_m ? uk.mc
                          : std::clamp(l2_bytes() / 3 / (KC * long(sizeof(T))) / MR * MR, long(MR), long(uk.mc));
  const long NC = std::clamp(kPackedBBytes / (k * long(sizeof(T))) / NR * NR, NR, long(uk.nc));
  const long m_panels = (m + MR - 1) / MR, k_blocks = (k + KC - 1) / KC;
  const long b_chunk = std::max(1L, kL2BlockBytes / (KC * NR * long(sizeof(T))));
  const int max_team = static_cast<int>(std::clamp(2.0 * m * n * k / kMinFlopsPerThread, 1.0, 1024.0));
  const long bpack_size = (std::min(n, NC) + NR - 1) / NR * NR * k;
  T* bpack = scratch<T>(kSlotPackB, bpack_size);
  long lda_direct = 0, ldb_direct = 0;
  // A is read in place with a single panel of B too: each of its elements serves one
  // micro-tile, and packing would copy it only to read it once; and a column-major A (a
  // transposed operand) within one block of k, whose micro-panels are then kc lines that stay
  // in L1 for the panels of B.
  const bool a_in_place = small_m || n <= NR || (A.layout() == PanelLayout::column_major && k <= KC);
  const bool a_direct = a_in_place && A.direct(0, 0, &lda_direct) != nullptr;
  const bool b_direct = small_m && B.layout() == PanelLayout::row_major && B.direct(0, 0, &ldb_direct) != nullptr;

  for (long jc = 0; jc < n; jc += NC) {
    const long nc = std::min(NC, n - jc), n_panels = (nc + NR - 1) / NR;
    const long full_n_panels = nc / NR;
    // B panel jp of k block kb: in place, or packed at packs + kb*KC*n_panels*NR + jp*NR*kc.
    auto b_panel = [&](const T* packs, long kb, long jp, long* ldb) -> const T* {
      if (b_direct && (jp < full_n_panels || masked)) return B.direct(kb * KC, jc + jp * NR, ldb);
      *ldb = NR;
      return packs + kb * KC * n_panels * NR + jp * NR * std::min(KC, k - kb * KC);
    };
    // Part tid of team of the packing of panels [jp0, jp1) (those not read in place) into packs.
    const long first_packed = b_direct ? (masked ? n_panels : full_n_panels) : 0;
    auto pack = [&](T* packs, long jp0, long jp1, int tid, int team) {
      jp0 = std::max(jp0, first_packed);
      const long count = std::max(0L, jp1 - jp0);
      const auto [first, last] = split_range(k_blocks * count, tid, team);
      for (long i = first; i < last; ++i) {
        const long kb = i / count, jp = jp0 + i % count;
        long ldb;
        T* dst = const_cast<T*>(b_panel(packs, kb, jp, &ldb));
        B.pack_b(dst, kb * KC, std::min(KC, k - kb * KC), jc + jp * NR, std::min(NR, nc - jp * NR), NR);
      }
    };

    // 1. Pack B[:, jc:jc+nc] (or only its ragged last panel), shared by every thread of step 2,
    // with threads for a B worth the fork and join (a few hundred KiB each). A smaller one is
    // packed by each thread of step 2 instead, its own panels into its own buffer: no thread
    // then waits for another's packing (dense dW, 1600 x 128 x 32: 55 -> 50 us).
    const long pack_team = b_direct ? 1 : std::clamp(k * nc * long(sizeof(T)) / (256L << 10), 1L, long(max_team));
    const bool private_b = pack_team == 1 && max_team > 1;
    if (!private_b && first_packed < n_panels)
      parallel(static_cast<int>(pack_team), [&](int tid, int team) { pack(bpack, 0, n_panels, tid, team); });

    // 2. Each thread computes its rectangle of C: its rows in MC blocks, all of k, its B panels.
    parallel(max_team, [&](int tid, int team) {
      int tm = 1, tn = 1;
      detail::choose_grid(team, m_panels, n_panels, &tm, &tn);
      const auto [mp0, mp1] = split_range(m_panels, tid / tn, tm);
      const auto [np0, np1] = split_range(n_panels, tid % tn, tn);
      const long row0 = mp0 * MR, row1 = std::min(mp1 * MR, m);
      T* packs = bpack;
      if (private_b) {
        packs = scratch<T>(kSlotPackB, bpack_size);
        pack(packs, np0, np1, 0, 1);
      }
      T* apack = scratch<T>(kSlotPackA, MC * std::min(k, KC));
      alignas(64) T edge[16 * 64];  // one MR x NR tile for the partial tiles at the edges of C

      for (long ic = row0; ic < row1; ic += MC) {
        const long mc = std::min(MC, row1 - ic);
        for (long kb = 0; kb < k_blocks; ++kb) {
          const long kc = std::min(KC, k - kb * KC);
          const T beta_here = kb == 0 ? beta : T(1);
          // In place, only a ragged last panel of A needs packing.
          const long full_rows = a_direct ? mc / MR * MR : 0;
          if (full_rows < mc) A.pack_a(apack + full_rows * kc, ic + full_rows, mc - full_rows, kb * KC, kc, MR);
          // Tile (ip, jp) of the block: A micro-panel ip times B micro-panel jp.
          auto tile = [&](long ip, long jp) {
            const long height = std::min(MR, mc - ip * MR), width = std::min(NR, nc - jp * NR);
            long lda = A.layout() == PanelLayout::row_major ? kc : MR;  // of a packed panel
            const T* apanel = ip * MR < full_rows ? A.direct(ic + ip * MR, kb * KC, &lda) : apack + ip * MR * kc;
            long ldb;
            const T* bpanel = b_panel(packs, kb, jp, &ldb);
            T* cij = c + (ic + ip * MR) * ldc + jc + jp * NR;
            if (height == MR && width == NR) {
              kernel(kc, apanel, lda, bpanel, ldb, cij, ldc, alpha, beta_here, 1, 0);
            } else if (height == MR && masked) {
              masked(kc, apanel, lda, bpanel, ldb, cij, ldc, alpha, beta_here, width);
            } else {
              if (masked)  // (an in-place B has no padding columns for the full-width kernel)
                masked(kc, apanel, lda, bpanel, ldb, edge, NR, T(1), T(0), width);
              else
                kernel(kc, apanel, lda, bpanel, ldb, edge, NR, T(1), T(0), 1, 0);
              for (long r = 0; r < height; ++r)
                for (long q = 0; q < width; ++q) {
                  T& out = cij[r * ldc + q];
                  out = beta_here == T(0) ? alpha * edge[r * NR + q] : alpha * edge[r * NR + q] + beta_here * out;
                }
            }
            if (epilogue.any() && kb == k_blocks - 1) epilogue.apply(cij, ldc, height, width, jc + jp * NR);
          };
          // The thread's B micro-panels in chunks that stay in L2 while every A micro-panel of the
          // block passes over them; each A micro-panel stays in L1 for its chunk, and consecutive
          // tiles lie side by side in the same rows of C (a stream the prefetchers follow, where
          // walking down C's rows would touch 2 MR new lines in MR pages per tile).
          for (long jq = np0; jq < np1; jq += b_chunk)
            for (long ip = 0; ip * MR < mc; ++ip)
              for (long jp = jq; jp < std::min(np1, jq + b_chunk); ++jp) tile(ip, jp);
        }
      }
    });
  }
}

// C = alpha * op(A) * op(B) + beta * C on row-major arrays, then the epilogue (bias, ReLU);
// op(A) is m x k, op(B) k x n.
template <class T>
void gemm(bool trans_a, bool trans_b, long m, long n, long k, T alpha, const T* a, long lda, const T* b,
          long ldb, T beta, T* c, long ldc, Epilogue<T> epilogue = {}) {
  StridedMatrix<T> A{a, trans_a ? 1 : lda, trans_a ? lda : 1};
  StridedMatrix<T> B{b, trans_b ? 1 : ldb, trans_b ? ldb : 1};
  // A few rows times a large transposed B (a dense layer's dX = dY W^T): packing B would
  // transpose all of it, element by element, for a product that uses each element m times.
  // The transposed product C^T = op(B)^T op(A)^T reads that B in place as its A, and
  // transposes only the small C.
  if (trans_b && m <= 64 && n >= 4 * m && k >= 16) {
    T* ct = scratch<T>(kSlotConv, n * m);
    gemm_driver<T>(n, m, k, StridedMatrix<T>{b, ldb, 1}, StridedMatrix<T>{a, A.cs, A.rs}, ct, m, alpha, T(0));
    // C's columns in blocks of 16: each block's m x 16 values are read from ct as 16 runs of m.
    parallel_for((n + 15) / 16, 4, [&](long first, long last) {
      for (long j0 = first * 16; j0 < std::min(n, last * 16); j0 += 16) {
        const long width = std::min(16L, n - j0);
        for (long i = 0; i < m; ++i) {
          T* row = c + i * ldc + j0;
          const T* src = ct + j0 * m + i;
          if (beta == T(0))
            for (long j = 0; j < width; ++j) row[j] = src[j * m];
          else
            for (long j = 0; j < width; ++j) row[j] = src[j * m] + beta * row[j];
        }
        if (epilogue.any()) epilogue.apply(c + j0, ldc, m, width, j0);
      }
    });
    return;
  }
  // A few columns (a 10-way output layer): the narrow tiles, where the usual ones would be
  // mostly padding. A short sum whose B (k x n) fits in half of L1 and whose columns fill the wide
  // tiles (a dense layer's weight gradient, 1600 x 128 x 32): the wide tiles, whose faster reads
  // of B are then reads from L1 (47.1 -> 45.3 us). With longer sums B streams from L2, too slowly
  // for them.
  const MicroKernel<T>& uk = microkernel<T>();
  const MicroKernel<T>* table = &uk;
  if (uk.narrow && n <= uk.narrow->nr)
    table = uk.narrow;
  else if (uk.wide && n % uk.wide->nr == 0 && k * n * long(sizeof(T)) <= l1d_bytes() / 2)
    table = uk.wide;
  gemm_driver<T>(m, n, k, A, B, c, ldc, alpha, beta, epilogue, table);
}

}  // namespace zg
