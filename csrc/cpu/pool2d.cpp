#include "pool2d.h"

#include <algorithm>
#include <atomic>
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

// The real taps of the rows (of the columns) of windows in output row oh (column ow).
inline Taps window_rows(const Window& g, long oh) { return inside(oh * g.sh - g.pt, g.dh, g.kh, g.h); }
inline Taps window_cols(const Window& g, long ow) { return inside(ow * g.sw - g.pl, g.dw, g.kw, g.w); }

// Window order: the reference accumulates overlapping windows by ascending tap index, which for
// any one input element is descending window order, so the backward passes of overlapping
// windows visit windows from the last (reversed) to reproduce the reference's sums bit for bit.
// The loops over windows are written out in each multiversioned function below: a lambda
// would be compiled once, for the baseline ISA, and called from every clone.
inline long nth(long i, long count, bool reversed) { return reversed ? count - 1 - i : i; }

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

template <class T>
constexpr T kMinusInf = -std::numeric_limits<T>::infinity();

// The maximum of each channel over one window of image xn, and its pixel. Padding never wins:
// a window whose real elements are all -inf takes its first real one. A vector of channels at a
// time is followed over the taps in local arrays, which stay in registers (through memory, each
// tap waited for the last one's store: pool1's forward 86 -> 76 us).
template <class T>
__attribute__((always_inline)) inline void find_winners(const T* xn, const Window& g, long oh, long ow, Taps rows,
                                                        Taps cols, T* best, int* winner, long cb) {
  const bool empty = rows.first == rows.last || cols.first == cols.last;
  const int first = empty ? -1 : int(pixel(g, oh, ow, rows.first, cols.first));
  constexpr long L = 64 / sizeof(T);
  long k0 = 0;
  for (; k0 + L <= cb; k0 += L) {
    T m[L];
    int at[L];
    for (long l = 0; l < L; ++l) m[l] = kMinusInf<T>, at[l] = first;
    for (long i = rows.first; i < rows.last; ++i)
      for (long j = cols.first; j < cols.last; ++j) {
        const long p = pixel(g, oh, ow, i, j);
        const T* __restrict v = xn + p * g.c + k0;
#pragma GCC unroll 1  // one vector: unrolled into 16 scalars, the loop was not vectorised
        for (long l = 0; l < L; ++l) {
          const bool take = takes_over(v[l], m[l]);
          m[l] = take ? v[l] : m[l];
          at[l] = take ? int(p) : at[l];
        }
      }
    std::copy(m, m + L, best + k0);
    std::copy(at, at + L, winner + k0);
  }
  std::fill(best + k0, best + cb, kMinusInf<T>);
  std::fill(winner + k0, winner + cb, first);
  for (long i = rows.first; i < rows.last && k0 < cb; ++i)
    for (long j = cols.first; j < cols.last; ++j) {
      const long p = pixel(g, oh, ow, i, j);
      track_max(xn + p * g.c + k0, int(p), best + k0, winner + k0, cb - k0);
    }
}

// Whether no input element lies in two windows (a stride at least the window; pooling has no
// dilation). Then the backward passes write each element of dx once, with no zero-fill first.
inline bool windows_disjoint(const Window& g) { return g.sh >= g.kh && g.sw >= g.kw; }

// Whether input row (or column) i lies in some window (windows disjoint).
inline bool covered(long i, long pad, long stride, long k, long out) {
  return (i + pad) / stride < out && (i + pad) % stride < k;
}

// Starts dx of one unit: zero everywhere, or (disjoint windows) only where no window reaches.
template <class T>
inline void clear_dx(T* dxn, const Window& g, long cb, bool disjoint) {
  for (long ih = 0; ih < g.h; ++ih) {
    const bool row = !disjoint || covered(ih, g.pt, g.sh, g.kh, g.ho);
    for (long iw = 0; iw < g.w; ++iw)
      if (!disjoint || !row || !covered(iw, g.pl, g.sw, g.kw, g.wo))
        std::fill(dxn + (ih * g.w + iw) * g.c, dxn + (ih * g.w + iw) * g.c + cb, T(0));
  }
}

// One unit's work is one multiversioned call: a call per window would cost as much as the
// window. Arguments point at channel c0 of image n (x, dx) or of its outputs (y, dy, winners).

template <class T>
ZG_MULTIVERSION void max_pool_unit(const T* xn, T* yn, int* winners_n, const Window& g, long cb) {
  for (long oh = 0; oh < g.ho; ++oh) {
    const Taps rows = window_rows(g, oh);
    for (long ow = 0; ow < g.wo; ++ow) {
      const Taps cols = window_cols(g, ow);
      const long out = (oh * g.wo + ow) * g.c;
      T* __restrict yo = yn + out;
      if (winners_n) {
        find_winners(xn, g, oh, ow, rows, cols, yo, winners_n + out, cb);
        continue;
      }
      std::fill(yo, yo + cb, kMinusInf<T>);
      for (long i = rows.first; i < rows.last; ++i)
        for (long j = cols.first; j < cols.last; ++j) {
          const T* __restrict xp = xn + pixel(g, oh, ow, i, j) * g.c;
          for (long k = 0; k < cb; ++k) yo[k] = takes_over(xp[k], yo[k]) ? xp[k] : yo[k];
        }
    }
  }
}

// Each window gives its dy to the pixel that won each channel. Disjoint windows set dx (to 0 + dy,
// not dy: the reference adds into zeros, which turns -0 into +0); overlapping ones add to it, in
// the reference's order. Adding 0 to the losers changes no bits (dx is never -0).
// Returns whether every winner read lies in [0, h * w): the check rides on the loads of the
// winners, which a separate pass would read again from memory.
// With relu_out_n, each dy first passes the ReLU's gate: dy where relu_out > 0, else 0 (as
// relu_backward computes it, so the same bits as the two kernels in turn).
template <class T>
ZG_MULTIVERSION bool max_pool_backward_unit(const T* dyn, const T* xn, const int* winners_n, const T* relu_out_n,
                                            T* dxn, const Window& g, long cb) {
  const unsigned pixels = unsigned(g.h * g.w);
  unsigned outside = 0;
  const bool disjoint = windows_disjoint(g);
  clear_dx(dxn, g, cb, disjoint);
  T best[kMaxBlock], gated[kMaxBlock];
  int found[kMaxBlock];
  for (long a = 0; a < g.ho; ++a) {
    const long oh = nth(a, g.ho, !disjoint);
    const Taps rows = window_rows(g, oh);
    for (long b = 0; b < g.wo; ++b) {
      const long ow = nth(b, g.wo, !disjoint);
      const Taps cols = window_cols(g, ow);
      const long out = (oh * g.wo + ow) * g.c;
      const int* __restrict winner = winners_n ? winners_n + out : found;
      if (winners_n)
        for (long k = 0; k < cb; ++k) outside |= unsigned(unsigned(winner[k]) >= pixels);
      else
        find_winners(xn, g, oh, ow, rows, cols, best, found, cb);
      const T* given = dyn + out;
      if (relu_out_n) {
        const T* __restrict gate = relu_out_n + out;
        for (long k = 0; k < cb; ++k) gated[k] = gate[k] > T(0) ? given[k] : T(0);
        given = gated;
      }
      const T* __restrict dy = given;
      for (long i = rows.first; i < rows.last; ++i)
        for (long j = cols.first; j < cols.last; ++j) {
          const int p = int(pixel(g, oh, ow, i, j));
          T* __restrict d = dxn + long(p) * g.c;
          if (disjoint)
            for (long k = 0; k < cb; ++k) d[k] = winner[k] == p ? T(0) + dy[k] : T(0);
          else
            for (long k = 0; k < cb; ++k) d[k] += winner[k] == p ? dy[k] : T(0);
        }
    }
  }
  return outside == 0;
}

template <class T>
ZG_MULTIVERSION void avg_pool_unit(const T* xn, T* yn, const Window& g, long cb) {
  for (long oh = 0; oh < g.ho; ++oh) {
    const Taps rows = window_rows(g, oh);
    for (long ow = 0; ow < g.wo; ++ow) {
      const Taps cols = window_cols(g, ow);
      T* __restrict yo = yn + (oh * g.wo + ow) * g.c;
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
    }
  }
}

// Each real element of a window gets its share of dy: set (0 + share) for disjoint windows,
// added in the reference's order for overlapping ones.
template <class T>
ZG_MULTIVERSION void avg_pool_backward_unit(const T* dyn, T* dxn, const Window& g, long cb) {
  const bool disjoint = windows_disjoint(g);
  clear_dx(dxn, g, cb, disjoint);
  T share[kMaxBlock];
  for (long a = 0; a < g.ho; ++a) {
    const long oh = nth(a, g.ho, !disjoint);
    const Taps rows = window_rows(g, oh);
    for (long b = 0; b < g.wo; ++b) {
      const long ow = nth(b, g.wo, !disjoint);
      const Taps cols = window_cols(g, ow);
      const T* __restrict dyo = dyn + (oh * g.wo + ow) * g.c;
      const T count = T((rows.last - rows.first) * (cols.last - cols.first));
      for (long k = 0; k < cb; ++k) share[k] = dyo[k] / count;
      for (long i = rows.first; i < rows.last; ++i)
        for (long j = cols.first; j < cols.last; ++j) {
          T* __restrict d = dxn + pixel(g, oh, ow, i, j) * g.c;
          if (disjoint)
            for (long k = 0; k < cb; ++k) d[k] = T(0) + share[k];
          else
            for (long k = 0; k < cb; ++k) d[k] += share[k];
        }
    }
  }
}

}  // namespace

// Pixels are indexed as int (the bindings refuse images of 2^31 pixels or more): SSE2
// vectorises the compare-and-select for int indices, not for long ones.
template <class T>
void max_pool2d(const T* x, T* y, int* winners, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    const long out = n * g.ho * g.wo * g.c + c0;
    max_pool_unit(x + n * g.h * g.w * g.c + c0, y + out, winners ? winners + out : nullptr, g, cb);
  });
}

template <class T>
bool max_pool2d_backward(const T* dy, const T* x, const int* winners, const T* relu_out, T* dx, const Window& g) {
  std::atomic<bool> in_range{true};
  for_each_block(g, [&](long n, long c0, long cb) {
    const long image = n * g.h * g.w * g.c + c0, out = n * g.ho * g.wo * g.c + c0;
    if (!max_pool_backward_unit(dy + out, x + image, winners ? winners + out : nullptr,
                                relu_out ? relu_out + out : nullptr, dx + image, g, cb))
      in_range.store(false, std::memory_order_relaxed);
  });
  return in_range.load();
}

template <class T>
void avg_pool2d(const T* x, T* y, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    avg_pool_unit(x + n * g.h * g.w * g.c + c0, y + n * g.ho * g.wo * g.c + c0, g, cb);
  });
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const Window& g) {
  for_each_block(g, [&](long n, long c0, long cb) {
    avg_pool_backward_unit(dy + n * g.ho * g.wo * g.c + c0, dx + n * g.h * g.w * g.c + c0, g, cb);
  });
}

template void max_pool2d<float>(const float*, float*, int*, const Window&);
template void max_pool2d<double>(const double*, double*, int*, const Window&);
template bool max_pool2d_backward<float>(const float*, const float*, const int*, const float*, float*, const Window&);
template bool max_pool2d_backward<double>(const double*, const double*, const int*, const double*, double*,
                                           const Window&);
template void avg_pool2d<float>(const float*, float*, const Window&);
template void avg_pool2d<double>(const double*, double*, const Window&);
template void avg_pool2d_backward<float>(const float*, float*, const Window&);
template void avg_pool2d_backward<double>(const double*, double*, const Window&);

}  // namespace zg
