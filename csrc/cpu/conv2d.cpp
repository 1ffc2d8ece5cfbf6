#include "conv2d.h"

#include <algorithm>
#include <vector>

#include "gemm/gemm.h"
#include "threading.h"

namespace zg {
namespace {

// Implicit im2col for the forward pass: row = output pixel (n, oh, ow), column = filter tap and
// input channel (i, j, ci), i.e. the row of w viewed as a (kh*kw*c, o) matrix.
template <class T>
struct OutputPixelPatches {
  const T* x;
  const Window& g;

  PanelLayout layout() const { return PanelLayout::row_major; }
  const T* direct(long, long, long*) const { return nullptr; }  // gathered: always packed

  void pack_a(T* dst, long i0, long rows, long p0, long depth, int mr) const {
    for (long r0 = 0; r0 < rows; r0 += mr, dst += mr * depth) {
      for (long r = 0; r < mr; ++r) {
        T* d = dst + r * depth;
        if (r0 + r >= rows) {
          std::fill(d, d + depth, T(0));
          continue;
        }
        const long pixel = i0 + r0 + r, ow = pixel % g.wo, oh = pixel / g.wo % g.ho, n = pixel / (g.wo * g.ho);
        const long ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
        long tap = p0 / g.c, ci = p0 % g.c;
        for (long p = 0; p < depth; ci = 0, ++tap) {
          const long run = std::min(g.c - ci, depth - p);
          const long ih = ih0 + tap / g.kw * g.dh, iw = iw0 + tap % g.kw * g.dw;
          if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) {
            const T* s = x + ((n * g.h + ih) * g.w + iw) * g.c + ci;
            std::copy(s, s + run, d + p);
          } else {
            std::fill(d + p, d + p + run, T(0));
          }
          p += run;
        }
      }
    }
  }
};

// Implicit patches of dy for the backward-data pass: row = input pixel (n, ih, iw), column =
// (i, j, co): the output pixel that tap (i, j) maps (ih, iw) to, when the stride lands on one.
template <class T>
struct InputPixelPatches {
  const T* dy;
  long o;
  const Window& g;

  PanelLayout layout() const { return PanelLayout::row_major; }
  const T* direct(long, long, long*) const { return nullptr; }  // gathered: always packed

  void pack_a(T* dst, long i0, long rows, long p0, long depth, int mr) const {
    for (long r0 = 0; r0 < rows; r0 += mr, dst += mr * depth) {
      for (long r = 0; r < mr; ++r) {
        T* d = dst + r * depth;
        if (r0 + r >= rows) {
          std::fill(d, d + depth, T(0));
          continue;
        }
        const long pixel = i0 + r0 + r, iw = pixel % g.w, ih = pixel / g.w % g.h, n = pixel / (g.w * g.h);
        long tap = p0 / o, co = p0 % o;
        for (long p = 0; p < depth; co = 0, ++tap) {
          const long run = std::min(o - co, depth - p);
          const long oh_s = ih + g.pt - tap / g.kw * g.dh, ow_s = iw + g.pl - tap % g.kw * g.dw;
          const long oh = oh_s / g.sh, ow = ow_s / g.sw;
          if (oh_s >= 0 && ow_s >= 0 && oh_s % g.sh == 0 && ow_s % g.sw == 0 && oh < g.ho && ow < g.wo) {
            const T* s = dy + ((n * g.ho + oh) * g.wo + ow) * o + co;
            std::copy(s, s + run, d + p);
          } else {
            std::fill(d + p, d + p + run, T(0));
          }
          p += run;
        }
      }
    }
  }
};

// Transposed implicit im2col for the backward-weight pass: row = (i, j, ci), column = output
// pixel, counted from `first_pixel` (one chunk of the batch's pixels).
template <class T>
struct TapRowsOverPixels {
  const T* x;
  long first_pixel;
  const Window& g;

  PanelLayout layout() const { return PanelLayout::column_major; }
  const T* direct(long, long, long*) const { return nullptr; }  // gathered: always packed

  void pack_a(T* dst, long i0, long rows, long p0, long depth, int mr) const {
    for (long r0 = 0; r0 < rows; r0 += mr, dst += mr * depth) {
      const long height = std::min<long>(mr, rows - r0);
      for (long p = 0; p < depth; ++p) {
        const long pixel = first_pixel + p0 + p;
        const long ow = pixel % g.wo, oh = pixel / g.wo % g.ho, n = pixel / (g.wo * g.ho);
        const long ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
        T* d = dst + p * mr;
        long row = i0 + r0, tap = row / g.c, ci = row % g.c;
        for (long r = 0; r < height; ci = 0, ++tap) {
          const long run = std::min(g.c - ci, height - r);
          const long ih = ih0 + tap / g.kw * g.dh, iw = iw0 + tap % g.kw * g.dw;
          if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) {
            const T* s = x + ((n * g.h + ih) * g.w + iw) * g.c + ci;
            std::copy(s, s + run, d + r);
          } else {
            std::fill(d + r, d + r + run, T(0));
          }
          r += run;
        }
        std::fill(d + height, d + mr, T(0));
      }
    }
  }
};

}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, long o, const Window& g) {
  const long m = g.n * g.ho * g.wo, k = g.kh * g.kw * g.c;
  if (b) {
    parallel_for(m, 4096, [&](long begin, long end) {
      for (long i = begin; i < end; ++i) std::copy(b, b + o, y + i * o);
    });
  }
  gemm_driver<T>(m, o, k, OutputPixelPatches<T>{x, g}, StridedMatrix<T>{w, o, 1}, y, o, T(1), b ? T(1) : T(0));
}

template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, long o, const Window& g) {
  // w as a (kh*kw*o, c) matrix: the taps' filters transposed (small: copied once per call).
  const long taps = g.kh * g.kw;
  std::vector<T> wt(taps * o * g.c);
  for (long tap = 0; tap < taps; ++tap)
    for (long ci = 0; ci < g.c; ++ci)
      for (long co = 0; co < o; ++co) wt[(tap * o + co) * g.c + ci] = w[(tap * g.c + ci) * o + co];
  gemm_driver<T>(g.n * g.h * g.w, g.c, taps * o, InputPixelPatches<T>{dy, o, g}, StridedMatrix<T>{wt.data(), g.c, 1},
                 dx, g.c, T(1), T(0));
}

template <class T>
void conv2d_backward_weight(const T* x, const T* dy, T* dw, T* db, long o, const Window& g) {
  // The sum over the batch's pixels is split into chunks whose size depends only on the shape;
  // each chunk's partial dw is a GEMM of its own (run in parallel), and the partials are added
  // in chunk order: parallel, yet bit-identical whatever the thread count.
  const long pixels = g.n * g.ho * g.wo, k = g.kh * g.kw * g.c, size = k * o;
  const long chunk = std::max<long>((pixels + 15) / 16, 512);
  const long chunks = std::max<long>((pixels + chunk - 1) / chunk, 1);
  T* partial = scratch<T>(kSlotConv, chunks * (size + o));

  parallel_for(chunks, 1, [&](long begin, long end) {
    for (long ch = begin; ch < end; ++ch) {
      const long first = ch * chunk, count = std::max<long>(std::min(chunk, pixels - first), 0);
      T* part = partial + ch * (size + o);
      gemm_driver<T>(k, o, count, TapRowsOverPixels<T>{x, first, g}, StridedMatrix<T>{dy + first * o, o, 1}, part, o,
                     T(1), T(0));
      T* bias_part = part + size;
      std::fill(bias_part, bias_part + o, T(0));
      for (long p = first; p < first + count; ++p)
        for (long co = 0; co < o; ++co) bias_part[co] += dy[p * o + co];
    }
  });

  parallel_for(size + o, 4096, [&](long begin, long end) {
    for (long e = begin; e < end; ++e) {
      T sum = partial[e];
      for (long ch = 1; ch < chunks; ++ch) sum += partial[ch * (size + o) + e];
      if (e < size) dw[e] = sum;
      else if (db) db[e - size] = sum;
    }
  });
}

template void conv2d_forward<float>(const float*, const float*, const float*, float*, long, const Window&);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, long, const Window&);
template void conv2d_backward_data<float>(const float*, const float*, float*, long, const Window&);
template void conv2d_backward_data<double>(const double*, const double*, double*, long, const Window&);
template void conv2d_backward_weight<float>(const float*, const float*, float*, float*, long, const Window&);
template void conv2d_backward_weight<double>(const double*, const double*, double*, double*, long, const Window&);

}  // namespace zg
