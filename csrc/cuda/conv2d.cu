// 2-D convolution on NHWC activations and HWIO filters, the three passes as implicit GEMMs on the
// tiles of gemm_tile.cuh. The operands below gather the patch matrices element by element as
// the tiles are fetched, so no im2col buffer is ever written:
//
//   forward          y  (P x O) = patches(x) (P x R)  * w (R x O)        P = n*ho*wo, R = kh*kw*c
//   backward-data    dx (Q x C) = patches(dy) (Q x R') * w' (R' x C)     Q = n*h*w,   R' = kh*kw*o
//   backward-weight  dw (R x O) = patches(x)^T (R x P) * dy (P x O)      split over P, summed in order
//
// In the backward-data pass, patches(dy)(q, (i, j, oc)) is the dy of the output pixel whose tap
// (i, j) lands on input pixel q (zero when none does: off the output, or between strides), and
// w'((i, j, oc), ch) = w[i, j, ch, oc]. Every pass is a gather: each output element is written
// by one thread, once, with a sum in a fixed order: results are deterministic.
#include "cuda/gemm_tile.cuh"

namespace zg {
namespace cuda {
namespace {

__device__ inline bool inside(int i, int size) { return unsigned(i) < unsigned(size); }

// Output pixel p = (n * ho + oh) * wo + ow -> its batch index and the input coordinates of its
// window's first tap (may be negative: padding).
struct PixelOrigin {
  int n, ih, iw;
};

__device__ inline PixelOrigin origin_of(int p, const Geometry& g) {
  const int ow = p % g.wo, t = p / g.wo;
  const int oh = t % g.ho, n = t / g.ho;
  return {n, oh * g.sh - g.pt, ow * g.sw - g.pl};
}

// Tap (i, j) and channel of patch column r = (i * kw + j) * channels + ch.
struct Tap {
  int i, j, ch;
};

__device__ inline Tap tap_of(i64 r, int channels, int kw) {
  const int tap = int(r / channels), ch = int(r - i64(tap) * channels);
  return {tap / kw, tap % kw, ch};
}

// ---- forward: A = patches(x), depth-contiguous (the channels of a tap are adjacent in x) ----
template <class T>
struct ForwardPatches {
  static constexpr bool kDepthContig = true;
  static constexpr int V = Vec16<T>::kN;
  const T* x;
  Geometry g;
  int rows;  // P
  bool vec;  // c % V == 0 and x 16-byte aligned: V columns r..r+V-1 (r % V == 0) share one tap

  struct Row {
    const T* image;  // x[n], null beyond the last row
    int ih0, iw0;
  };
  __device__ Row row(int p) const {
    if (p >= rows) return {nullptr, 0, 0};
    const PixelOrigin o = origin_of(p, g);
    return {x + i64(o.n) * g.h * g.w * g.c, o.ih, o.iw};
  }
  __device__ T at(const Row& row, i64 r) const {
    const Tap k = tap_of(r, g.c, g.kw);
    const int ih = row.ih0 + k.i * g.dh, iw = row.iw0 + k.j * g.dw;
    return inside(ih, g.h) && inside(iw, g.w) ? row.image[(i64(ih) * g.w + iw) * g.c + k.ch] : T(0);
  }
  __device__ void load(const Row& row, i64 r, i64 r_end, T (&v)[V]) const {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = T(0);
    if (row.image == nullptr) return;
    if (vec && r + V <= r_end) {
      const Tap k = tap_of(r, g.c, g.kw);
      const int ih = row.ih0 + k.i * g.dh, iw = row.iw0 + k.j * g.dw;
      if (inside(ih, g.h) && inside(iw, g.w)) Vec16<T>::load(row.image + (i64(ih) * g.w + iw) * g.c + k.ch, v);
      return;
    }
#pragma unroll
    for (int e = 0; e < V; ++e)
      if (r + e < r_end) v[e] = at(row, r + e);
  }
};

// y = acc (+ bias) (then max(., 0)), or, with neither, dx = acc: one row of `ld` per GEMM row.
template <class T>
struct ConvEpilogue {
  T* out;
  int ld;
  const T* bias;
  bool relu;
  template <class A>
  __device__ void operator()(int m, int n, A acc) const {
    T v = T(acc);
    if (bias != nullptr) v += bias[n];
    if (relu) v = v < T(0) ? T(0) : v;  // NaN stays NaN, as np.maximum(v, 0)
    out[i64(m) * ld + n] = v;
  }
};

// ---- backward-data: A = patches(dy), depth-contiguous in oc ----
template <class T>
struct DataPatches {
  static constexpr bool kDepthContig = true;
  static constexpr int V = Vec16<T>::kN;
  const T* dy;
  Geometry g;
  int o;     // output channels: the innermost part of the depth index
  int rows;  // Q = n * h * w
  bool vec;  // o % V == 0 and dy 16-byte aligned

  struct Row {
    const T* image;  // dy[n], null beyond the last row
    int th, tw;      // input pixel + padding: the padded coordinate tap (i, j) must reach
  };
  __device__ Row row(int q) const {
    if (q >= rows) return {nullptr, 0, 0};
    const int iw = q % g.w, t = q / g.w;
    const int ih = t % g.h, n = t / g.h;
    return {dy + i64(n) * g.ho * g.wo * o, ih + g.pt, iw + g.pl};
  }
  // The offset of dy(n, oh, ow, 0) for the output pixel whose tap (i, j) covers this row's
  // input pixel, or -1: oh * sh + i * dh == ih + pt must hold for an oh in [0, ho).
  __device__ i64 source(const Row& row, int i, int j) const {
    const int th = row.th - i * g.dh, tw = row.tw - j * g.dw;
    if (th < 0 || tw < 0 || th % g.sh != 0 || tw % g.sw != 0) return -1;
    const int oh = th / g.sh, ow = tw / g.sw;
    if (oh >= g.ho || ow >= g.wo) return -1;
    return (i64(oh) * g.wo + ow) * o;
  }
  __device__ void load(const Row& row, i64 r, i64 r_end, T (&v)[V]) const {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = T(0);
    if (row.image == nullptr) return;
    if (vec && r + V <= r_end) {
      const Tap k = tap_of(r, o, g.kw);
      const i64 s = source(row, k.i, k.j);
      if (s >= 0) Vec16<T>::load(row.image + s + k.ch, v);
      return;
    }
#pragma unroll
    for (int e = 0; e < V; ++e) {
      if (r + e >= r_end) continue;
      const Tap k = tap_of(r + e, o, g.kw);
      const i64 s = source(row, k.i, k.j);
      if (s >= 0) v[e] = row.image[s + k.ch];
    }
  }
};

// ---- backward-data: B = w' addressed by its column ch: element (ch, (i, j, oc)) =
// w[i, j, ch, oc], depth-contiguous in oc ----
template <class T>
struct DataFilter {
  static constexpr bool kDepthContig = true;
  static constexpr int V = Vec16<T>::kN;
  const T* w;
  Geometry g;
  int o;
  bool vec;  // o % V == 0 and w 16-byte aligned

  struct Row {
    int ch;
  };
  __device__ Row row(int ch) const { return {ch}; }
  __device__ void load(const Row& row, i64 r, i64 r_end, T (&v)[V]) const {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = T(0);
    if (row.ch >= g.c) return;
    if (vec && r + V <= r_end) {
      const i64 tap = r / o, oc = r - tap * o;
      Vec16<T>::load(w + (tap * g.c + row.ch) * o + oc, v);
      return;
    }
#pragma unroll
    for (int e = 0; e < V; ++e) {
      if (r + e >= r_end) continue;
      const i64 tap = (r + e) / o, oc = (r + e) - tap * o;
      v[e] = w[(tap * g.c + row.ch) * o + oc];
    }
  }
};

// ---- backward-weight: A = patches(x)^T, rows r = (i, j, ch), depth p; outer-contiguous in ch ----
template <class T>
struct WeightPatches {
  static constexpr bool kDepthContig = false;
  static constexpr int V = Vec16<T>::kN;
  const T* x;
  Geometry g;
  int rows;  // R = kh * kw * c
  bool vec;  // c % V == 0 and x 16-byte aligned: rows r..r+V-1 (r % V == 0) share one tap

  struct Row {  // the V rows r..r+V-1: their tap offsets and channels (ch < 0: beyond R)
    int di[V], dj[V], ch[V];
  };
  __device__ Row row(int r) const {
    Row row;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const bool valid = r + e < rows;
      const Tap k = tap_of(valid ? r + e : 0, g.c, g.kw);
      row.di[e] = k.i * g.dh;
      row.dj[e] = k.j * g.dw;
      row.ch[e] = valid ? k.ch : -1;
    }
    return row;
  }
  __device__ void load(const Row& row, i64 p, i64 p_end, T (&v)[V]) const {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = T(0);
    if (p >= p_end) return;
    const PixelOrigin o = origin_of(int(p), g);
    const T* image = x + i64(o.n) * g.h * g.w * g.c;
    if (vec && row.ch[V - 1] >= 0) {
      const int ih = o.ih + row.di[0], iw = o.iw + row.dj[0];
      if (inside(ih, g.h) && inside(iw, g.w)) Vec16<T>::load(image + (i64(ih) * g.w + iw) * g.c + row.ch[0], v);
      return;
    }
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const int ih = o.ih + row.di[e], iw = o.iw + row.dj[e];
      if (row.ch[e] >= 0 && inside(ih, g.h) && inside(iw, g.w)) v[e] = image[(i64(ih) * g.w + iw) * g.c + row.ch[e]];
    }
  }
};

// Split z of the weight gradient writes its partial sums to its own slice of `out`.
template <class T>
struct SplitEpilogue {
  T* out;
  int ld;
  i64 split_stride;
  template <class A>
  __device__ void operator()(int m, int n, A acc) const {
    out[i64(blockIdx.z) * split_stride + i64(m) * ld + n] = T(acc);
  }
};

// out[e] = sum over s = 0, 1, ... of parts[s * count + e], in that order.
template <class T>
__global__ void sum_splits(const T* parts, int splits, i64 count, T* out) {
  for (i64 e = i64(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += i64(gridDim.x) * blockDim.x) {
    T s = parts[e];
    for (int z = 1; z < splits; ++z) s += parts[z * count + e];
    out[e] = s;
  }
}

// Column sums of dy (rows x o) in two fixed-order stages: block (x, chunk) sums rows of its chunk
// for 32 columns (8 lanes of rows, combined in lane order) into part[chunk * o + col]; then
// sum_splits adds the chunks in order.
constexpr int kSumLanes = 8;

template <class T>
__global__ void column_sums(const T* dy, i64 rows, int o, i64 rows_per_chunk, T* part) {
  __shared__ T lanes[kSumLanes][32];
  const int col = int(blockIdx.x) * 32 + int(threadIdx.x);
  const i64 begin = i64(blockIdx.y) * rows_per_chunk, end = min64(rows, begin + rows_per_chunk);
  T s = T(0);
  if (col < o)
    for (i64 r = begin + threadIdx.y; r < end; r += kSumLanes) s += dy[r * o + col];
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < o) {
    T total = lanes[0][threadIdx.x];
    for (int l = 1; l < kSumLanes; ++l) total += lanes[l][threadIdx.x];
    part[i64(blockIdx.y) * o + col] = total;
  }
}

// ---- how the weight-gradient sums are split (a function of the shapes alone) ----

struct WeightSplit {
  int splits;     // chunks of the P sum
  i64 k_split;    // pixels per chunk, a multiple of kSplitQuantum
  int chunks;     // chunks of the bias sum
  i64 bias_rows;  // rows per bias chunk
};

WeightSplit weight_split(int o, const Geometry& g) {
  const i64 m = i64(g.kh) * g.kw * g.c, p = i64(g.n) * g.ho * g.wo;
  // Enough blocks to fill a large GPU (~2 per SM on 132 SMs) when the output alone is too small,
  // each chunk still a long sum (>= 512 pixels), at most 64 partial copies of dw.
  const i64 tiles = ceil_div(m, 128) * ceil_div(o, 128);
  i64 splits = min64(min64(ceil_div(264, tiles), p / 512), 64);
  splits = max64(splits, 1);
  const i64 k_split = max64(ceil_div(ceil_div(p, splits), kSplitQuantum), 1) * kSplitQuantum;
  splits = max64(1, ceil_div(p, k_split));  // rounding may leave fewer, all non-empty
  const i64 chunks = max64(1, min64(ceil_div(p, 512), 256));
  return {int(splits), k_split, int(chunks), ceil_div(p, chunks)};
}

}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, int o, const Geometry& g, bool relu,
                    Precision precision, cudaStream_t stream) {
  constexpr int V = Vec16<T>::kN;
  const int p = int(i64(g.n) * g.ho * g.wo);  // the binding checks that P, Q, R < 2^31
  const i64 r = i64(g.kh) * g.kw * g.c;
  const ForwardPatches<T> a{x, g, p, g.c % V == 0 && aligned16(x)};
  const MatrixOperand<T, false> b{w, o, o, o % V == 0 && aligned16(w)};
  run_gemm<T>(a, b, ConvEpilogue<T>{y, o, bias, relu}, p, o, r, 1, r, precision, stream, "conv2d");
}

template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, int o, const Geometry& g, Precision precision,
                          cudaStream_t stream) {
  constexpr int V = Vec16<T>::kN;
  const int q = int(i64(g.n) * g.h * g.w);
  const i64 r = i64(g.kh) * g.kw * o;
  const DataPatches<T> a{dy, g, o, q, o % V == 0 && aligned16(dy)};
  const DataFilter<T> b{w, g, o, o % V == 0 && aligned16(w)};
  run_gemm<T>(a, b, ConvEpilogue<T>{dx, g.c, nullptr, false}, q, g.c, r, 1, r, precision, stream,
              "conv2d_backward_data");
}

std::size_t conv2d_backward_weight_workspace(int o, const Geometry& g, bool with_bias) {
  const WeightSplit s = weight_split(o, g);
  const std::size_t dw = s.splits > 1 ? std::size_t(s.splits) * g.kh * g.kw * g.c * o : 0;
  const std::size_t db = with_bias && s.chunks > 1 ? std::size_t(s.chunks) * o : 0;
  return dw + db;
}

template <class T>
void conv2d_backward_weight(const T* x, const T* dy, T* dw, T* db, T* workspace, int o, const Geometry& g,
                            Precision precision, cudaStream_t stream) {
  constexpr int V = Vec16<T>::kN;
  const WeightSplit s = weight_split(o, g);
  const int r = g.kh * g.kw * g.c;
  const i64 p = i64(g.n) * g.ho * g.wo;
  const i64 count = i64(r) * o;
  T* parts = s.splits > 1 ? workspace : dw;
  const WeightPatches<T> a{x, g, r, g.c % V == 0 && aligned16(x)};
  const MatrixOperand<T, false> b{dy, o, o, o % V == 0 && aligned16(dy)};
  run_gemm<T>(a, b, SplitEpilogue<T>{parts, o, count}, r, o, p, s.splits, s.k_split, precision, stream,
              "conv2d_backward_weight");
  if (s.splits > 1) {
    launch(sum_splits<T>, dim3(grid_for(count, 256)), dim3(256), stream, parts, s.splits, count, dw);
    check_launch("conv2d_backward_weight (sum of the splits)");
  }
  if (db != nullptr) {
    T* part = s.chunks > 1 ? workspace + (s.splits > 1 ? s.splits * count : 0) : db;
    const dim3 grid(unsigned(ceil_div(o, 32)), unsigned(s.chunks));
    launch(column_sums<T>, grid, dim3(32, kSumLanes), stream, dy, p, o, s.bias_rows, part);
    check_launch("conv2d_backward_weight (bias)");
    if (s.chunks > 1) {
      launch(sum_splits<T>, dim3(grid_for(o, 256)), dim3(256), stream, part, s.chunks, i64(o), db);
      check_launch("conv2d_backward_weight (bias sum)");
    }
  }
}

#define ZG_INSTANTIATE(T)                                                                                       \
  template void conv2d_forward<T>(const T*, const T*, const T*, T*, int, const Geometry&, bool, Precision,        \
                                  cudaStream_t);                                                               \
  template void conv2d_backward_data<T>(const T*, const T*, T*, int, const Geometry&, Precision, cudaStream_t);  \
  template void conv2d_backward_weight<T>(const T*, const T*, T*, T*, T*, int, const Geometry&, Precision,        \
                                          cudaStream_t);
ZG_INSTANTIATE(float)
ZG_INSTANTIATE(double)
#undef ZG_INSTANTIATE

}  // namespace cuda
}  // namespace zg
