// Max and average pooling on NHWC, forward and backward, with the semantics of the CPU kernels
// (pool2d.cpp) and of reference.py: the first maximum of a window wins, NaN counts as larger
// than any number, padding never wins (a window of -inf picks its first real element); an
// average divides by the number of real (unpadded) elements.
//
// One thread per output element (forward) or per input element (backward, a gather over the
// windows that cover it). The gather adds the windows in descending (oh, ow) order, which is the
// order the reference adds them in (ascending tap index): the results are the reference's bits,
// and no two threads ever write one element.
#include <cmath>

#include "cuda/common.cuh"

namespace zg {
namespace cuda {
namespace {

constexpr int kBlock = 256;

// Whether v replaces the running maximum m: when larger, or when it is the first NaN.
template <class T>
__device__ inline bool takes_over(T v, T m) {
  return v > m || (v != v && m == m);
}

// The windows (along one axis, dilation 1) whose taps cover input coordinate i: [lo, hi],
// empty when lo > hi. Window o covers i + pad iff o * stride <= i + pad <= o * stride + k - 1.
struct Span {
  int lo, hi;
};

__host__ __device__ inline Span windows_covering(i64 i, i64 pad, i64 stride, i64 k, i64 out) {
  const i64 a = i + pad;
  const i64 lo = a - k + 1 <= 0 ? 0 : (a - k + 1 + stride - 1) / stride;
  const i64 hi = min64(out - 1, a / stride);
  return {int(lo), int(hi)};
}

// Flat element index e of an (n, a, b, c) array -> its coordinates.
template <class I>
struct Coords {
  I n;
  int a, b, c;
};

template <class I>
__device__ inline Coords<I> coords_of(I e, int sa, int sb, int sc) {
  const int c = int(e % sc);
  e /= sc;
  const int b = int(e % sb);
  e /= sb;
  return {e / sa, int(e % sa), b, c};
}

// The first maximum of window (oh, ow) of channel c of image `xn` (x + n*h*w*c + c): its value
// and pixel ih * w + iw (-1 for a window with no real element, which pooling never has).
template <class T>
struct Winner {
  T value;
  int pixel;
};

template <class T>
__device__ inline Winner<T> find_max(const T* xn, const Geometry& g, int oh, int ow) {
  const int ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
  const Taps rows = taps_inside(ih0, g.dh, g.kh, g.h), cols = taps_inside(iw0, g.dw, g.kw, g.w);
  Winner<T> best{T(-INFINITY), -1};
  if (rows.first < rows.last && cols.first < cols.last)
    best.pixel = (ih0 + rows.first * g.dh) * g.w + iw0 + cols.first * g.dw;
  for (int i = rows.first; i < rows.last; ++i)
    for (int j = cols.first; j < cols.last; ++j) {
      const int p = (ih0 + i * g.dh) * g.w + iw0 + j * g.dw;
      const T v = xn[i64(p) * g.c];
      if (takes_over(v, best.value)) best = {v, p};
    }
  return best;
}

__device__ inline int real_count(const Geometry& g, int oh, int ow) {
  const Taps rows = taps_inside(i64(oh) * g.sh - g.pt, g.dh, g.kh, g.h);
  const Taps cols = taps_inside(i64(ow) * g.sw - g.pl, g.dw, g.kw, g.w);
  return (rows.last - rows.first) * (cols.last - cols.first);
}

template <class T, class I>
__global__ void max_pool_forward(const T* x, T* y, int* indices, Geometry g, I total) {
  for (I e = I(blockIdx.x) * kBlock + threadIdx.x; e < total; e += I(gridDim.x) * kBlock) {
    const Coords<I> o = coords_of(e, g.ho, g.wo, g.c);
    const Winner<T> w = find_max(x + i64(o.n) * g.h * g.w * g.c + o.c, g, o.a, o.b);
    y[e] = w.value;
    if (indices != nullptr) indices[e] = w.pixel;
  }
}

template <class T, class I>
__global__ void avg_pool_forward(const T* x, T* y, Geometry g, I total) {
  for (I e = I(blockIdx.x) * kBlock + threadIdx.x; e < total; e += I(gridDim.x) * kBlock) {
    const Coords<I> o = coords_of(e, g.ho, g.wo, g.c);
    const T* xn = x + i64(o.n) * g.h * g.w * g.c + o.c;
    const int ih0 = o.a * g.sh - g.pt, iw0 = o.b * g.sw - g.pl;
    const Taps rows = taps_inside(ih0, g.dh, g.kh, g.h), cols = taps_inside(iw0, g.dw, g.kw, g.w);
    T s = T(0);
    for (int i = rows.first; i < rows.last; ++i)
      for (int j = cols.first; j < cols.last; ++j) s += xn[(i64(ih0 + i * g.dh) * g.w + iw0 + j * g.dw) * g.c];
    // a division, as the reference (0 / 0 = NaN for a window of padding alone, as the CPU)
    y[e] = s / T((rows.last - rows.first) * (cols.last - cols.first));
  }
}

// dx of one input element: the dy of every window that covers it and picked it (max, with
// `indices` from the forward or searching x again), or its share of every covering window (avg).
template <bool kMax, class T, class I>
__global__ void pool_backward(const T* dy, const T* x, const int* indices, T* dx, Geometry g, I total) {
  for (I e = I(blockIdx.x) * kBlock + threadIdx.x; e < total; e += I(gridDim.x) * kBlock) {
    const Coords<I> in = coords_of(e, g.h, g.w, g.c);
    const int pixel = in.a * g.w + in.b;
    const Span rows = windows_covering(in.a, g.pt, g.sh, g.kh, g.ho);
    const Span cols = windows_covering(in.b, g.pl, g.sw, g.kw, g.wo);
    const T* dyn = dy + i64(in.n) * g.ho * g.wo * g.c + in.c;
    const T* xn = kMax ? x + i64(in.n) * g.h * g.w * g.c + in.c : nullptr;
    T s = T(0);
    for (int oh = rows.hi; oh >= rows.lo; --oh)
      for (int ow = cols.hi; ow >= cols.lo; --ow) {
        const i64 out = (i64(oh) * g.wo + ow) * g.c;
        if (kMax) {
          const int winner = indices != nullptr ? indices[i64(in.n) * g.ho * g.wo * g.c + out + in.c]
                                                : find_max(xn, g, oh, ow).pixel;
          if (winner == pixel) s += dyn[out];
        } else {
          s += dyn[out] / T(real_count(g, oh, ow));
        }
      }
    dx[e] = s;
  }
}

bool fits_int(i64 n) { return n < (i64(1) << 31); }

void check_dilation(const Geometry& g, const char* what) {
  if (g.dh != 1 || g.dw != 1) throw std::invalid_argument(std::string(what) + ": pooling takes no dilation");
}

}  // namespace

template <class T>
void max_pool2d(const T* x, T* y, std::int32_t* indices, const Geometry& g, cudaStream_t stream) {
  const i64 total = i64(g.n) * g.ho * g.wo * g.c;
  if (total == 0) return;
  if (fits_int(total))
    launch(max_pool_forward<T, int>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream,
           x, y, indices, g, int(total));
  else
    launch(max_pool_forward<T, i64>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream, x, y, indices, g, total);
  check_launch("max_pool2d");
}

template <class T>
void avg_pool2d(const T* x, T* y, const Geometry& g, cudaStream_t stream) {
  const i64 total = i64(g.n) * g.ho * g.wo * g.c;
  if (total == 0) return;
  if (fits_int(total))
    launch(avg_pool_forward<T, int>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream, x, y, g, int(total));
  else
    launch(avg_pool_forward<T, i64>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream, x, y, g, total);
  check_launch("avg_pool2d");
}

template <class T>
void max_pool2d_backward(const T* dy, const T* x, const std::int32_t* indices, T* dx, const Geometry& g,
                         cudaStream_t stream) {
  check_dilation(g, "max_pool2d_backward");
  const i64 total = i64(g.n) * g.h * g.w * g.c;
  if (total == 0) return;
  if (fits_int(total))
    launch(pool_backward<true, T, int>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream,
           dy, x, indices, dx, g, int(total));
  else
    launch(pool_backward<true, T, i64>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream,
           dy, x, indices, dx, g, total);
  check_launch("max_pool2d_backward");
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const Geometry& g, cudaStream_t stream) {
  check_dilation(g, "avg_pool2d_backward");
  const i64 total = i64(g.n) * g.h * g.w * g.c;
  if (total == 0) return;
  if (fits_int(total))
    launch(pool_backward<false, T, int>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream,
           dy, nullptr, nullptr, dx, g, int(total));
  else
    launch(pool_backward<false, T, i64>, dim3(grid_for(total, kBlock)), dim3(kBlock), stream,
           dy, nullptr, nullptr, dx, g, total);
  check_launch("avg_pool2d_backward");
}

#define ZG_INSTANTIATE(T)                                                                                        \
  template void max_pool2d<T>(const T*, T*, std::int32_t*, const Geometry&, cudaStream_t);                         \
  template void max_pool2d_backward<T>(const T*, const T*, const std::int32_t*, T*, const Geometry&, cudaStream_t); \
  template void avg_pool2d<T>(const T*, T*, const Geometry&, cudaStream_t);                                       \
  template void avg_pool2d_backward<T>(const T*, T*, const Geometry&, cudaStream_t);
ZG_INSTANTIATE(float)
ZG_INSTANTIATE(double)
#undef ZG_INSTANTIATE

}  // namespace cuda
}  // namespace zg
