// The block-tiled GEMM machinery every matrix product on the GPU runs on: the plain GEMM and
// the three convolution passes (implicit GEMMs) differ only in their operands (how an element
// of A or B is found in memory) and their epilogue (what is done with each result).
//
//   C (M x N) = sum over k of A(m, k) * B(n, k)     (B is addressed by its column n, like A by m)
//
// A thread block computes one BM x BN tile of C, walking k in steps of BK: the two operand
// tiles are fetched from global memory into registers, stored into shared memory as
// S[k][outer] (k-major), and multiplied there; the fetch of step k+1 is in flight while step k
// is multiplied (double buffering: two shared tiles, one __syncthreads per step).
// Two ways to multiply a shared tile:
//   SimtConfig: CUDA-core FMAs, each thread a TM x TN register tile (FP32 and FP64);
//   MmaConfig:  tensor cores (mma.sync), each warp a WTM x WTN tile, float32 inputs rounded to
//               TF32 or to BF16 as the fragments are built, float32 accumulation.
// blockIdx.z splits k into chunks (split-K); the epilogue learns the chunk from blockIdx.z.
#pragma once

#include <cuda_bf16.h>

#include <climits>
#include <cstring>

#include "cuda/common.cuh"

namespace zg {
namespace cuda {

constexpr int kThreads = 256;  // every GEMM kernel runs 256 threads per block

// ---- operands ----
// An operand is a matrix of outer x depth elements (A: M x K, B: N x K). It says which index is
// contiguous in memory (kDepthContig) and loads V = 16 / sizeof(T) consecutive elements along it:
//   Row row(int outer) const;   per-thread state for one outer index (computed once per block)
//   void load(const Row&, i64 depth, i64 depth_end, T (&v)[V]) const;
//     depth-contiguous: v[e] = element (outer, depth + e); outer-contiguous: (outer + e, depth).
// Elements outside the matrix (outer beyond its size, depth >= depth_end) read as zero, so
// partial tiles need no other care. A Row for outer-contiguous operands covers outer..outer+V-1.

// A dense row-major matrix: depth-contiguous when element (o, d) is p[o * ld + d] (A as stored,
// or B transposed), outer-contiguous when it is p[d * ld + o].
template <class T, bool DepthContig>
struct MatrixOperand {
  static constexpr bool kDepthContig = DepthContig;
  static constexpr int V = Vec16<T>::kN;
  const T* p;
  i64 ld;
  int outer_size;
  bool vec;  // 16-byte loads: p 16-byte aligned and ld a multiple of V

  struct Row {
    int o;
  };
  __device__ Row row(int o) const { return {o}; }

  __device__ void load(const Row& r, i64 d, i64 d_end, T (&v)[V]) const {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = T(0);
    if (DepthContig) {
      if (r.o >= outer_size) return;
      const T* q = p + i64(r.o) * ld + d;
      if (vec && d + V <= d_end) {  // d is a multiple of V, so q is 16-byte aligned
        Vec16<T>::load(q, v);
        return;
      }
#pragma unroll
      for (int e = 0; e < V; ++e)
        if (d + e < d_end) v[e] = q[e];
    } else {
      if (d >= d_end) return;
      const T* q = p + d * ld + r.o;
      if (vec && r.o + V <= outer_size) {  // r.o is a multiple of V
        Vec16<T>::load(q, v);
        return;
      }
#pragma unroll
      for (int e = 0; e < V; ++e)
        if (r.o + e < outer_size) v[e] = q[e];
    }
  }
};

// Moves one BO x BK operand tile: global -> registers (fetch), registers -> shared (store).
// Thread t owns kSlots loads of V elements; consecutive threads take consecutive V-groups of
// the contiguous index, so a warp's loads are coalesced.
template <class T, class Op, int BO, int BK>
struct TileLoader {
  static constexpr int V = Vec16<T>::kN;
  static constexpr bool kDepth = Op::kDepthContig;
  static constexpr int kPerLine = kDepth ? BK / V : BO / V;  // loads across the contiguous index
  static constexpr int kSlots = BO * BK / (V * kThreads);
  static_assert(kSlots >= 1 && kSlots * V * kThreads == BO * BK, "a tile must split evenly over the threads");
  static_assert(kPerLine >= 1 && (kDepth ? BK : BO) % V == 0, "tile sides must be multiples of V");

  typename Op::Row row[kSlots];
  int outer[kSlots], depth[kSlots];  // within the tile
  T reg[kSlots][V];

  __device__ TileLoader(const Op& op, int outer0) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int l = s * kThreads + int(threadIdx.x);
      outer[s] = kDepth ? l / kPerLine : (l % kPerLine) * V;
      depth[s] = kDepth ? (l % kPerLine) * V : l / kPerLine;
      row[s] = op.row(outer0 + outer[s]);
    }
  }

  __device__ void fetch(const Op& op, i64 depth0, i64 depth_end) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) op.load(row[s], depth0 + depth[s], depth_end, reg[s]);
  }

  template <int LD>
  __device__ void store(T (*tile)[LD]) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (kDepth) {
#pragma unroll
        for (int e = 0; e < V; ++e) tile[depth[s] + e][outer[s]] = reg[s][e];
      } else {
        Vec16<T>::store(&tile[depth[s]][outer[s]], reg[s]);  // LD and outer[s] are multiples of V
      }
    }
  }
};

// The k-range of this block's split: [begin, end), and the number of BK steps in it.
struct KRange {
  i64 begin, end;
  int steps;
};

template <int BK>
__device__ inline KRange k_range(i64 k, i64 k_split) {
  const i64 begin = i64(blockIdx.z) * k_split;
  const i64 end = min64(k, begin + k_split);
  return {begin, end, end > begin ? int(ceil_div(end - begin, BK)) : 0};
}

// ---- CUDA-core FMA tiles (float32, float64) ----
// Thread (ty, tx) of a TY x TX grid owns rows {g * SM + ty * V + i} and columns
// {g * SN + tx * V + j}: groups of V adjacent elements, the groups spread over the tile, so that
// each group is one 16-byte shared-memory read and a warp's reads hit distinct banks.
template <class T, int BM_, int BN_, int BK_, int TM, int TN>
struct SimtConfig {
  using Acc = T;
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int V = Vec16<T>::kN;
  static constexpr int TX = BN / TN, TY = BM / TM;
  static constexpr int GM = TM / V, GN = TN / V;
  static constexpr int SM = BM / GM, SN = BN / GN;
  static constexpr int PAD = V;  // keeps rows 16-byte aligned
  static_assert(TX * TY == kThreads && TM % V == 0 && TN % V == 0, "bad SIMT tile");

  __device__ static int row_of(int i, int ty) { return (i / V) * SM + ty * V + i % V; }
  __device__ static int col_of(int j, int tx) { return (j / V) * SN + tx * V + j % V; }

  template <class OpA, class OpB, class Epi>
  __device__ static void run(const OpA& a, const OpB& b, const Epi& epi, int m0, int n0, KRange kr, int M, int N) {
    __shared__ __align__(16) T as[2][BK][BM + PAD];
    __shared__ __align__(16) T bs[2][BK][BN + PAD];
    const int tx = int(threadIdx.x) % TX, ty = int(threadIdx.x) / TX;
    TileLoader<T, OpA, BM, BK> la(a, m0);
    TileLoader<T, OpB, BN, BK> lb(b, n0);
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    if (kr.steps > 0) {
      la.fetch(a, kr.begin, kr.end);
      lb.fetch(b, kr.begin, kr.end);
      la.store(as[0]);
      lb.store(bs[0]);
    }
    __syncthreads();
    for (int step = 0; step < kr.steps; ++step) {
      const int cur = step & 1;
      const bool more = step + 1 < kr.steps;
      if (more) {
        const i64 d = kr.begin + i64(step + 1) * BK;
        la.fetch(a, d, kr.end);
        lb.fetch(b, d, kr.end);
      }
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        T fa[TM], fb[TN];
#pragma unroll
        for (int g = 0; g < GM; ++g) Vec16<T>::load_shared(&as[cur][kk][g * SM + ty * V], fa + g * V);
#pragma unroll
        for (int g = 0; g < GN; ++g) Vec16<T>::load_shared(&bs[cur][kk][g * SN + tx * V], fb + g * V);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fma(fa[i], fb[j], acc[i][j]);
      }
      if (more) {  // the other buffer was last read in the previous step, before its barrier
        la.store(as[cur ^ 1]);
        lb.store(bs[cur ^ 1]);
      }
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + row_of(i, ty);
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int n = n0 + col_of(j, tx);
        if (m < M && n < N) epi(m, n, acc[i][j]);
      }
    }
  }
};

// ---- tensor-core tiles (float32 inputs, float32 accumulation) ----
// Fragment layouts are those of the PTX ISA for mma.m16n8k8 (.tf32) and mma.m16n8k16 (.bf16):
// lane = 4 * g + t; A fragments hold rows g and g + 8, B fragments column g; the k index of
// each element is given below. Shared tiles are k-major, S[k][m]; PAD makes the rows a warp
// reads at once fall in distinct banks (row stride = 8 mod 32 words for TF32, where a warp reads
// rows k + t; 4 mod 32 for BF16, where it reads rows k + 2t and k + 2t + 1).

__device__ inline unsigned to_tf32(float x) {
#ifdef ZG_CUDA_EMULATION
  return zg_emulation::to_tf32(x);
#else
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#endif
}

// Two floats rounded to bf16 and packed: `lo` (the smaller k) in the low half, as mma expects.
__device__ inline unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  unsigned r;
  memcpy(&r, &v, sizeof r);
  return r;
}

struct Tf32 {
  static constexpr int kK = 8, kPad = 8;
  // A (16 x 8): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
  template <int LD>
  __device__ static void load_a(const float (*s)[LD], int k, int m, int g, int t, unsigned (&f)[4]) {
    f[0] = to_tf32(s[k + t][m + g]);
    f[1] = to_tf32(s[k + t][m + g + 8]);
    f[2] = to_tf32(s[k + t + 4][m + g]);
    f[3] = to_tf32(s[k + t + 4][m + g + 8]);
  }
  // B (8 x 8, k x n): b0 (k = t, n = g), b1 (k = t + 4, n = g)
  template <int LD>
  __device__ static void load_b(const float (*s)[LD], int k, int n, int g, int t, unsigned (&f)[2]) {
    f[0] = to_tf32(s[k + t][n + g]);
    f[1] = to_tf32(s[k + t + 4][n + g]);
  }
  __device__ static void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(ZG_CUDA_EMULATION)
    zg_emulation::mma_m16n8k8_tf32(d, a, b);
#else
    __trap();  // the host never selects tensor cores below compute capability 8.0
#endif
  }
};

struct Bf16 {
  static constexpr int kK = 16, kPad = 4;
  // A (16 x 16): a0 (g, 2t..2t+1), a1 (g + 8, 2t..2t+1), a2 (g, 2t+8..2t+9), a3 (g + 8, 2t+8..2t+9)
  template <int LD>
  __device__ static void load_a(const float (*s)[LD], int k, int m, int g, int t, unsigned (&f)[4]) {
    const int k0 = k + 2 * t, k1 = k0 + 8;
    f[0] = pack_bf16(s[k0][m + g], s[k0 + 1][m + g]);
    f[1] = pack_bf16(s[k0][m + g + 8], s[k0 + 1][m + g + 8]);
    f[2] = pack_bf16(s[k1][m + g], s[k1 + 1][m + g]);
    f[3] = pack_bf16(s[k1][m + g + 8], s[k1 + 1][m + g + 8]);
  }
  // B (16 x 8, k x n): b0 (k = 2t..2t+1, n = g), b1 (k = 2t+8..2t+9, n = g)
  template <int LD>
  __device__ static void load_b(const float (*s)[LD], int k, int n, int g, int t, unsigned (&f)[2]) {
    const int k0 = k + 2 * t, k1 = k0 + 8;
    f[0] = pack_bf16(s[k0][n + g], s[k0 + 1][n + g]);
    f[1] = pack_bf16(s[k1][n + g], s[k1 + 1][n + g]);
  }
  __device__ static void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(ZG_CUDA_EMULATION)
    zg_emulation::mma_m16n8k16_bf16(d, a, b);
#else
    __trap();
#endif
  }
};

// Eight warps in a WM x WN grid, each a (BM / WM) x (BN / WN) tile of MT x NT mma tiles.
template <class Kind, int BM_, int BN_, int BK_, int WM, int WN>
struct MmaConfig {
  using Acc = float;
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int WTM = BM / WM, WTN = BN / WN;
  static constexpr int MT = WTM / 16, NT = WTN / 8;
  static constexpr int PAD = Kind::kPad;
  static_assert(WM * WN * 32 == kThreads && WTM % 16 == 0 && WTN % 8 == 0 && BK % Kind::kK == 0, "bad MMA tile");

  template <class OpA, class OpB, class Epi>
  __device__ static void run(const OpA& a, const OpB& b, const Epi& epi, int m0, int n0, KRange kr, int M, int N) {
    __shared__ __align__(16) float as[2][BK][BM + PAD];
    __shared__ __align__(16) float bs[2][BK][BN + PAD];
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    const int g = lane / 4, t = lane % 4;
    const int wm = (warp / WN) * WTM, wn = (warp % WN) * WTN;
    TileLoader<float, OpA, BM, BK> la(a, m0);
    TileLoader<float, OpB, BN, BK> lb(b, n0);
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    if (kr.steps > 0) {
      la.fetch(a, kr.begin, kr.end);
      lb.fetch(b, kr.begin, kr.end);
      la.store(as[0]);
      lb.store(bs[0]);
    }
    __syncthreads();
    for (int step = 0; step < kr.steps; ++step) {
      const int cur = step & 1;
      const bool more = step + 1 < kr.steps;
      if (more) {
        const i64 d = kr.begin + i64(step + 1) * BK;
        la.fetch(a, d, kr.end);
        lb.fetch(b, d, kr.end);
      }
#pragma unroll
      for (int kk = 0; kk < BK; kk += Kind::kK) {
        unsigned fa[MT][4], fb[NT][2];
#pragma unroll
        for (int i = 0; i < MT; ++i) Kind::load_a(as[cur], kk, wm + i * 16, g, t, fa[i]);
#pragma unroll
        for (int j = 0; j < NT; ++j) Kind::load_b(bs[cur], kk, wn + j * 8, g, t, fb[j]);
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NT; ++j) Kind::mma(acc[i][j], fa[i], fb[j]);
      }
      if (more) {
        la.store(as[cur ^ 1]);
        lb.store(bs[cur ^ 1]);
      }
      __syncthreads();
    }

    // C fragment: c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int m = m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0);
          const int n = n0 + wn + j * 8 + 2 * t + (e & 1);
          if (m < M && n < N) epi(m, n, acc[i][j][e]);
        }
  }
};

// ---- the kernel and its launch ----

// Block b -> tile (tm, tn): groups of kGroup tile-rows are walked column by column, so blocks
// running at the same time share rows of A and columns of B in L2.
__device__ inline void tile_of(int b, int tiles_m, int tiles_n, int& tm, int& tn) {
  constexpr int kGroup = 8;
  const int per_group = kGroup * tiles_n;
  const int group = b / per_group;
  const int first = group * kGroup;
  const int size = min(tiles_m - first, kGroup);
  const int in_group = b - group * per_group;
  tm = first + in_group % size;
  tn = in_group / size;
}

template <class Cfg, class OpA, class OpB, class Epi>
__global__ void __launch_bounds__(kThreads, 2) gemm_kernel(const OpA a, const OpB b, const Epi epi, int M, int N, i64 K,
                                                        i64 k_split, int tiles_m, int tiles_n) {
  int tm, tn;
  tile_of(int(blockIdx.x), tiles_m, tiles_n, tm, tn);
  Cfg::run(a, b, epi, tm * Cfg::BM, tn * Cfg::BN, k_range<Cfg::BK>(K, k_split), M, N);
}

// Launches C = A B over `splits` chunks of k_split (a multiple of every BK) on `stream`.
template <class Cfg, class OpA, class OpB, class Epi>
void launch_gemm(const OpA& a, const OpB& b, const Epi& epi, int M, int N, i64 K, int splits, i64 k_split,
                 cudaStream_t stream, const char* what) {
  if (M <= 0 || N <= 0) return;
  const i64 tiles_m = ceil_div(M, Cfg::BM), tiles_n = ceil_div(N, Cfg::BN);
  if (tiles_m * tiles_n > INT_MAX || splits < 1 || splits > 65535)
    throw std::invalid_argument(std::string(what) + ": problem too large for one launch");
  const dim3 grid(unsigned(tiles_m * tiles_n), 1, unsigned(splits));
  launch(gemm_kernel<Cfg, OpA, OpB, Epi>, grid, dim3(kThreads), stream, a, b, epi, M, N, K, k_split, int(tiles_m),
         int(tiles_n));
  check_launch(what);
}

// The tile configurations, chosen by dtype, precision and the width N of C (narrow: N <= 64,
// as in most convolutions, where a 128-wide tile would compute half zeros). Narrow tiles take
// BK = 16 so that a B tile still gives every thread one 16-byte load.
template <class T, class OpA, class OpB, class Epi>
void run_gemm(const OpA& a, const OpB& b, const Epi& epi, int M, int N, i64 K, int splits, i64 k_split,
              Precision precision, cudaStream_t stream, const char* what) {
  const bool narrow = N <= 64;
  if constexpr (sizeof(T) == 8) {
    (void)precision;  // float64 is always computed in FP64
    (void)narrow;
    launch_gemm<SimtConfig<double, 64, 64, 8, 4, 4>>(a, b, epi, M, N, K, splits, k_split, stream, what);
  } else if (precision == Precision::kTF32) {
    if (narrow)
      launch_gemm<MmaConfig<Tf32, 128, 64, 16, 4, 2>>(a, b, epi, M, N, K, splits, k_split, stream, what);
    else
      launch_gemm<MmaConfig<Tf32, 128, 128, 16, 2, 4>>(a, b, epi, M, N, K, splits, k_split, stream, what);
  } else if (precision == Precision::kBF16) {
    if (narrow)
      launch_gemm<MmaConfig<Bf16, 128, 64, 16, 4, 2>>(a, b, epi, M, N, K, splits, k_split, stream, what);
    else
      launch_gemm<MmaConfig<Bf16, 128, 128, 16, 2, 4>>(a, b, epi, M, N, K, splits, k_split, stream, what);
  } else if (narrow) {
    launch_gemm<SimtConfig<float, 128, 64, 16, 8, 4>>(a, b, epi, M, N, K, splits, k_split, stream, what);
  } else {
    launch_gemm<SimtConfig<float, 128, 128, 8, 8, 8>>(a, b, epi, M, N, K, splits, k_split, stream, what);
  }
}

// Every BK above divides this: split-K chunks are multiples of it.
constexpr i64 kSplitQuantum = 16;

}  // namespace cuda
}  // namespace zg
