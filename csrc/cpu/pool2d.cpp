#include "pool2d.h"

#include <algorithm>
#include <limits>

#include "cpu_features.h"
#include "threading.h"

namespace zg {
namespace {

// Work is split over (image, channel block) units: a unit owns its slice of y or dx, so no
// two threads write the same element, and every element is computed by the same sequence of
// operations however the units are sized or shared out (hence bit-identical results).
constexpr long kMaxBlock = 64;    // channels per unit; also the size of the per-unit scratch
constexpr long kMinBlock = 16;    // a cache line of floats: narrower blocks would waste lines
constexpr long kMinWork = 1L << 15;  // elements per thread worth waking it for

template <class Fn>
void for_each_block(const Window& g, const Fn& fn) {
  auto blocks_of = [&](long cb) { return (g.c + cb - 1) / cb; };
  long cb = kMaxBlock;
  while (cb > kMinBlock && g.n * blocks_of(cb) < 2L * num_threads()) cb /= 2;  // few images
  const long blocks = blocks_of(cb);
  const long grain = std::max(1L, kMinWork / std::max(1L, g.h * g.w * std::min(cb, g.c)));
  parallel_for(g.n * blocks, grain, [&](long begin, long end) {
    for (long u = begin; u < end; ++u) {
      const long c0 = u % blocks * cb;
      fn(u / blocks, c0, std::min(cb, g.c - c0));
    }
  });
}

// The taps [first, last) of a window starting at `start` (input coordinate, may be negative)
// that land inside [0, size); the others fall on padding.
struct Taps {
  long first, last;
};

inline Taps inside(long start, long step, long k, long size) {
  if (step == 1) {  // always so for pooling: spare the divisions
    const long first = std::max(0L, -start);
    return {first, std::max(first, std::min(k, size - start))};
  }
  const long first = start >= 0 ? 0 : (step - 1 - start) / step;
  const long last = start >= size ? 0 : std::min(k, (size - start + step - 1) / step);
  return {first, std::max(first, last)};
}

// Calls fn(oh, ow, rows, cols) for every window of one image, with its real taps. `reverse`
// visits windows in descending (oh, ow) order: the reference accumulates overlapping windows
// by ascending tap index, which for any one input element is descending window order, so the
// backward passes use it to reproduce the reference's sums bit for bit.
template <class Fn>
void for_each_window(const Window& g, bool reverse, const Fn& fn) {
  for (long a = 0; a < g.ho; ++a) {
    const long oh = reverse ? g.ho - 1 - a : a;
    const Taps rows = inside(oh * g.sh - g.pt, g.dh, g.kh, g.h);
    for (long b = 0; b < g.wo; ++b) {
      const long ow = reverse ? g.wo - 1 - b : b;
      fn(oh, ow, rows, inside(ow * g.sw - g.pl, g.dw, g.kw, g.w));
    }
  }
}

// Spatial index ih * w + iw of tap (i, j) of window (oh, ow).
inline long pixel(const Window& g, long oh, long ow, long i, long j) {
  return (oh * g.sh - g.pt + i * g.dh) * g.w + (ow * g.sw - g.pl + j * g.dw);
}

// Whether v replaces the running maximum m: when larger, or when it is the first NaN
// (np.argmax's rule). Bitwise operators keep the loop branch-free so it vectorises.
template <class T>
inline bool takes_over(T v, T m) {
  return (v > m) | ((v != v) & (m == m));
}

// Folds one tap's channels v (at pixel p) into the running maxima and their places.
template <class T, class I>
inline void track_max(const T* __restrict v, I p, T* __restrict best, I* __restrict winner, long cb) {
  for (long k = 0; k < cb; ++k) {
    const bool take = takes_over(v[k], best[k]);
    best[k] = take ? v[k] : best[k];
    winner[k] = take ? p : winner[k];
  }
}

// Adds dy to the channels of pixel p that won. Going tap by tap rather than scattering
// channel by channel lets the loop vectorise; adding 0 to the others changes no bits (dx is
// never -0: it starts at +0).
template <class T, class I>
inline void route_back(const T* __restrict dy, I p, const I* __restrict winner, T* __restrict dx, long cb) {
  for (long k = 0; k < cb; ++k) {
    const T d = dy[k];
    dx[k] += winner[k] == p ? d : T(0);
  }
}

template <class T>
constexpr T kMinusInf = -std::numeric_limits<T>::infinity();

// The maximum of each channel over one window of image xn, and its pixel. Padding never wins:
// a window whose real elements are all -inf takes its first real one.
// Adds each channel's dy to the pixel of the window (oh, ow) that won it; dxn is the image.
template <class T>
ZG_MULTIVERSION void route_window(const T* dy, const int* winner, T* dxn, const Window& g, long oh, long ow, Taps rows,
                                  Taps cols, long cb) {
  for (long i = rows.first; i < rows.last; ++i)
    for (long j = cols.first; j < cols.last; ++j) {
      const long p = pixel(g, oh, ow, i, j);
      route_back(dy, int(p), winner, dxn + p * g.c, cb);
    }
}

template <class T>
ZG_MULTIVERSION void find_winners(const T* xn, const Window& g, long oh, long ow, Taps rows, Taps cols, T* best, int* winner,
                  long cb) {
  const bool empty = rows.first == rows.last || cols.first == cols.last;
  std::fill(best, best + cb, kMinusInf<T>);
  std::fill(winner, winner + cb, empty ? -1 : int(pixel(g, oh, ow, rows.first, cols.first)));
  for (long i = rows.first; i < rows.last; ++i)
    for (long j = cols.first; j < cols.last; ++j) {
      const long p = pixel(g, oh, ow, i, j);
      track_max(xn + p * g.c, int(p), best, winner, cb);
    }
}

}  // namespace

template <class T>
void max_pool2d(const T* x, T* y, int* winners, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    const T* xn = x + n * g.h * g.w * g.c + c0;
    for_each_window(g, false, [&](long oh, long ow, Taps rows, Taps cols) {
      const long out = ((n * g.ho + oh) * g.wo + ow) * g.c + c0;
      T* __restrict yo = y + out;
      if (winners) {
        find_winners(xn, g, oh, ow, rows, cols, yo, winners + out, cb);
        return;
      }
      std::fill(yo, yo + cb, kMinusInf<T>);
      for (long i = rows.first; i < rows.last; ++i)
        for (long j = cols.first; j < cols.last; ++j) {
          const T* __restrict xp = xn + pixel(g, oh, ow, i, j) * g.c;
          for (long k = 0; k < cb; ++k) yo[k] = takes_over(xp[k], yo[k]) ? xp[k] : yo[k];
        }
    });
  });
}

// Pixels are indexed as int (the bindings refuse images of 2^31 pixels or more): SSE2
// vectorises the compare-and-select for int indices, not for long ones.
template <class T>
void max_pool2d_backward(const T* dy, const T* x, const int* winners, T* dx, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    const long image = n * g.h * g.w * g.c + c0;
    const T* xn = x + image;
    for (long p = 0; p < g.h * g.w; ++p) std::fill(dx + image + p * g.c, dx + image + p * g.c + cb, T(0));
    for_each_window(g, true, [&](long oh, long ow, Taps rows, Taps cols) {
      const long out = ((n * g.ho + oh) * g.wo + ow) * g.c + c0;
      T best[kMaxBlock];
      int found[kMaxBlock];
      const int* winner = winners ? winners + out : found;
      if (!winners) find_winners(xn, g, oh, ow, rows, cols, best, found, cb);
      route_window(dy + out, winner, dx + image, g, oh, ow, rows, cols, cb);
    });
  });
}

template <class T>
void avg_pool2d(const T* x, T* y, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    const T* xn = x + n * g.h * g.w * g.c + c0;
    for_each_window(g, false, [&](long oh, long ow, Taps rows, Taps cols) {
      T* __restrict yo = y + ((n * g.ho + oh) * g.wo + ow) * g.c + c0;
      std::fill(yo, yo + cb, T(0));
      for (long i = rows.first; i < rows.last; ++i)
        for (long j = cols.first; j < cols.last; ++j) {
          const T* __restrict xp = xn + pixel(g, oh, ow, i, j) * g.c;
          for (long k = 0; k < cb; ++k) yo[k] += xp[k];
        }
      // Divide (not multiply by a reciprocal) to round as the reference does; 0/0 = NaN
      // for a window of padding alone, also as the reference.
      const T count = T((rows.last - rows.first) * (cols.last - cols.first));
      for (long k = 0; k < cb; ++k) yo[k] /= count;
    });
  });
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    T* dxn = dx + n * g.h * g.w * g.c + c0;
    for (long p = 0; p < g.h * g.w; ++p) std::fill(dxn + p * g.c, dxn + p * g.c + cb, T(0));
    T share[kMaxBlock];
    for_each_window(g, true, [&](long oh, long ow, Taps rows, Taps cols) {
      const T* dyo = dy + ((n * g.ho + oh) * g.wo + ow) * g.c + c0;
      const T count = T((rows.last - rows.first) * (cols.last - cols.first));
      for (long k = 0; k < cb; ++k) share[k] = dyo[k] / count;
      for (long i = rows.first; i < rows.last; ++i)
        for (long j = cols.first; j < cols.last; ++j) {
          T* __restrict dxp = dxn + pixel(g, oh, ow, i, j) * g.c;
          for (long k = 0; k < cb; ++k) dxp[k] += share[k];
        }
    });
  });
}

template void max_pool2d<float>(const float*, float*, int*, const Window&);
template void max_pool2d<double>(const double*, double*, int*, const Window&);
template void max_pool2d_backward<float>(const float*, const float*, const int*, float*, const Window&);
template void max_pool2d_backward<double>(const double*, const double*, const int*, double*, const Window&);
template void avg_pool2d<float>(const float*, float*, const Window&);
template void avg_pool2d<double>(const double*, double*, const Window&);
template void avg_pool2d_backward<float>(const float*, float*, const Window&);
template void avg_pool2d_backward<double>(const double*, double*, const Window&);

}  // namespace zg
