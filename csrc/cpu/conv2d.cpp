#include "conv2d.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_features.h"
#include "gemm/gemm.h"
#include "threading.h"

namespace zg {
namespace {

template <class T>
inline void zero(T* d, long count) {
  for (long t = 0; t < count; ++t) d[t] = T(0);
}

template <class T>
inline void copy(T* d, const T* s, long count) {
  for (long t = 0; t < count; ++t) d[t] = s[t];
}

// `rows` (count x n, contiguous) as they are when their vectors start on cache lines, else an
// aligned copy of them (this thread's scratch): read many times a vector at a time, a misaligned
// row would split each load across two lines.
template <class T>
const T* aligned_rows(const T* rows, long count, long n) {
  if (reinterpret_cast<std::uintptr_t>(rows) % 64 == 0 && (n * sizeof(T)) % 64 == 0) return rows;
  T* copied = scratch<T>(kSlotAligned, count * n);
  copy(copied, rows, count * n);
  return copied;
}

// The patch rows of an image (h x w pixels of c channels) under a kh x kw window dilated by
// (dh, dw): the row of the window whose top-left tap lands on (top, left) concatenates, for
// taps (i, j) in row-major order, the c channels at pixel (top + i*dh, left + j*dw), or zeros
// where that pixel is outside the image. One kernel row of taps is one segment of kw*c columns,
// and with dw == 1 a segment is a single contiguous piece of the image: copied as one run.
template <class T>
struct PatchRows {
  long h, w, c, kh, kw, dh, dw;

  // Columns [p0, p0 + depth) of the row at (top, left) of `image`, into d[0, depth).
  void gather(T* d, const T* image, long top, long left, long p0, long depth) const {
    const long seg = kw * c, end = p0 + depth;
    d -= p0;  // index d by column
    for (long p = p0; p < end;) {
      const long i = p / seg, first = i * seg, last = std::min(first + seg, end);
      const long ih = top + i * dh;
      if (ih < 0 || ih >= h) {
        zero(d + p, last - p);
      } else if (dw == 1) {
        const T* piece = image + (ih * w + left) * c - first;  // piece[q]: column q of this segment
        const long lo = std::min(first + std::max(0L, -left) * c, last);
        const long hi = std::clamp(first + (w - left) * c, lo, last);
        zero(d + p, std::max(lo - p, 0L));
        copy(d + std::max(p, lo), piece + std::max(p, lo), std::max(hi - std::max(p, lo), 0L));
        zero(d + std::max(p, hi), last - std::max(p, hi));
      } else {
        for (long q = p; q < last;) {
          const long j = (q - first) / c, ci = (q - first) % c, run = std::min(c - ci, last - q);
          const long iw = left + j * dw;
          if (iw >= 0 && iw < w) copy(d + q, image + (ih * w + iw) * c + ci, run);
          else zero(d + q, run);
          q += run;
        }
      }
      p = last;
    }
  }
};

// Visits `count` consecutive pixels of an (n, ho, wo) grid from flat index `first`, calling
// fn(image, oh, ow) for each; one division for the whole walk.
template <class Fn>
inline void for_each_pixel(long first, long count, long ho, long wo, Fn fn) {
  long ow = first % wo, oh = first / wo % ho, n = first / (wo * ho);
  for (long t = 0; t < count; ++t) {
    fn(n, oh, ow);
    if (++ow == wo) {
      ow = 0;
      if (++oh == ho) oh = 0, ++n;
    }
  }
}

// The A operand of a convolution pass as implicit patch rows: row = a pixel (n, u, v) of a
// grid (n x rows x cols), whose window's top-left tap lands on image pixel
// (u * step_h + offset_h, v * step_w + offset_w). Rows are contiguous runs of the image:
// row-major panels (stacked, simply a row-major matrix with row stride `depth`).
//   forward:          grid = output pixels, image = x, step = stride, offset = -padding;
//   backward-data:    grid = input pixels, image = dy, step 1 (stride-1 only), taps flipped so
//                     that the tap i' = kh-1-i of input pixel ih lands on output pixel
//                     ih + pt - i*dh: offset = padding - (k-1)*dilation.
template <class T>
struct PixelPatches {
  const T* image;
  long image_size;  // elements per image of the batch
  long rows, cols;  // the grid of patch rows per image
  long step_h, step_w, offset_h, offset_w;
  PatchRows<T> patches;

  static PixelPatches forward(const T* x, const Window& g) {
    return {x, g.h * g.w * g.c, g.ho, g.wo, g.sh, g.sw, -g.pt, -g.pl, {g.h, g.w, g.c, g.kh, g.kw, g.dh, g.dw}};
  }
  static PixelPatches backward_data(const T* dy, long o, const Window& g) {
    return {dy, g.ho * g.wo * o, g.h, g.w, 1, 1, g.pt - (g.kh - 1) * g.dh, g.pl - (g.kw - 1) * g.dw,
            {g.ho, g.wo, o, g.kh, g.kw, g.dh, g.dw}};
  }

  PanelLayout layout() const { return PanelLayout::row_major; }
  const T* direct(long, long, long*) const { return nullptr; }  // gathered: always packed

  void pack_a(T* dst, long i0, long count, long p0, long depth, int mr) const {
    const long panels = (count + mr - 1) / mr;
    for_each_pixel(i0, count, rows, cols, [&, r = 0L](long n, long u, long v) mutable {
      patches.gather(dst + r * depth, image + n * image_size, u * step_h + offset_h, v * step_w + offset_w, p0, depth);
      ++r;
    });
    zero(dst + count * depth, (panels * mr - count) * depth);  // the ragged last panel's padding rows
  }
};

// Backward-data pass for strides > 1: rows as PixelPatches::backward_data, but a tap contributes
// only where the stride lands on an output pixel ((ih + pt - i*dh) divisible by sh), so each tap
// is checked alone.
template <class T>
struct StridedFlippedOutputPatches {
  const T* dy;
  long o;
  const Window& g;

  PanelLayout layout() const { return PanelLayout::row_major; }
  const T* direct(long, long, long*) const { return nullptr; }  // gathered: always packed

  void pack_a(T* dst, long i0, long rows, long p0, long depth, int mr) const {
    const long panels = (rows + mr - 1) / mr;
    for_each_pixel(i0, rows, g.h, g.w, [&, r = 0L](long n, long ih, long iw) mutable {
      T* d = dst + r * depth - p0;
      for (long q = p0; q < p0 + depth;) {
        const long tap = q / o, co = q % o, run = std::min(o - co, p0 + depth - q);
        const long i = g.kh - 1 - tap / g.kw, j = g.kw - 1 - tap % g.kw;
        const long oh_s = ih + g.pt - i * g.dh, ow_s = iw + g.pl - j * g.dw;
        const long oh = oh_s / g.sh, ow = ow_s / g.sw;
        if (oh_s >= 0 && ow_s >= 0 && oh_s % g.sh == 0 && ow_s % g.sw == 0 && oh < g.ho && ow < g.wo)
          copy(d + q, dy + ((n * g.ho + oh) * g.wo + ow) * o + co, run);
        else
          zero(d + q, run);
        q += run;
      }
      ++r;
    });
    zero(dst + rows * depth, (panels * mr - rows) * depth);  // the ragged last panel's padding rows
  }
};

// Backward-weight pass, transposed implicit im2col: row = (i, j, ci), column = output pixel
// counted from `first_pixel` (one chunk of the batch). A column is a piece of one patch row,
// contiguous in a column-major panel.
template <class T>
struct TapRowsOverPixels {
  const T* x;
  long first_pixel;
  const Window& g;
  PatchRows<T> patches{g.h, g.w, g.c, g.kh, g.kw, g.dh, g.dw};

  PanelLayout layout() const { return PanelLayout::column_major; }
  const T* direct(long, long, long*) const { return nullptr; }  // gathered: always packed

  // Each pixel's piece of patch row is gathered once, whole, then dealt out to the panels.
  void pack_a(T* dst, long i0, long rows, long p0, long depth, int mr) const {
    const long panels = (rows + mr - 1) / mr;
    T* row = scratch<T>(kSlotPatchRow, panels * mr);
    zero(row + rows, panels * mr - rows);
    for_each_pixel(first_pixel + p0, depth, g.ho, g.wo, [&, p = 0L](long n, long oh, long ow) mutable {
      patches.gather(row, x + n * g.h * g.w * g.c, oh * g.sh - g.pt, ow * g.sw - g.pl, i0, rows);
      for (long panel = 0; panel < panels; ++panel) copy(dst + (panel * depth + p) * mr, row + panel * mr, mr);
      ++p;
    });
  }
};


// Convolution with the image read in place by the micro-kernel, no patch rows packed: the
// output pixels v0 .. v0+MR-1 of grid row (n, u), at kernel row i, read the matrix whose row r
// starts at image pixel (u*sh + i*dh + row0, (v0 + r)*sw + col0) and runs over kw*c contiguous
// values: a row-major micro-panel with row stride sw*c. So a tile of C is one micro-kernel call
// whose runs are the kernel rows (more calls when kw*c exceeds KC), with the filters packed once.
//
// Taps that land outside the image read zeros (padding). Tiles whose windows stay inside the
// image's columns are read in place, over the kernel rows that land inside it; the pixels
// whose windows cross the left or right edge, and the last few pixels of each grid row that are
// too few for a tile (a 13-wide row is a tile of 12 and 1 pixel), are gathered, with those of
// the next grid rows, into whole tiles of patch rows. A tile's rows past the end of a grid row
// read on into the next image row, harmlessly (their results are dropped), unless that runs past
// the end of the buffer: those few tiles are copied out first.
template <class T>
struct InPlaceConv {
  const T* image;
  long n, rows, cols, c;         // the image batch
  long grid_h, grid_w;           // output pixels per image
  long kh, kw, sh, sw, dh;       // tap (i, j) of output pixel (u, v) reads pixel
  long row0 = 0, col0 = 0;       // (u*sh + i*dh + row0, v*sw + j + col0)
};

// How conv_in_place covers a grid row. Columns [v_lo, v_hi) keep every tap inside the image's
// columns: whole tiles from v_lo, then the last `rest` of them as one more tile, read in place
// too: overlapping the previous tile (whose last columns it computes again, to the same values)
// when they are at least half a tile; partial when the span is narrower than a tile but fills
// 3/4 of one. The other columns of the row are gathered.
struct RowTiling {
  long v_lo, v_hi, tiles;
  std::vector<long> gathered;

  template <class T>
  RowTiling(const InPlaceConv<T>& a, long mr) {
    v_lo = std::min(a.grid_w, std::max(0L, (-a.col0 + a.sw - 1) / a.sw));
    v_hi = std::clamp(a.cols - a.kw - a.col0 < 0 ? 0 : (a.cols - a.kw - a.col0) / a.sw + 1, v_lo, a.grid_w);
    const long span = v_hi - v_lo, whole = span / mr * mr, rest = span - whole;
    const bool last_tile = whole > 0 ? 2 * rest >= mr : 4 * rest >= 3 * mr;
    tiles = whole / mr + (rest > 0 && last_tile);
    for (long v = 0; v < a.grid_w; ++v)
      if (v < v_lo || v >= v_hi || (!last_tile && v >= v_lo + whole)) gathered.push_back(v);
  }
};

// The row-major kernel conv_in_place runs for n_out output columns and grid rows of grid_w
// pixels: the wide one when n_out fills its panels (resnet-like layers of 64 channels: forward
// 29.1 -> 28.0 ms, backward-data 29.3 -> 27.4 ms), else the first (the wide one would compute
// half-empty panels for 32 channels); but a grid row that those tiles do not fit, and that one
// tile can hold (8 to 14 pixels on AVX-512), is one tile of its own height: no rows of padding
// computed, no pixels gathered (conv2 forward, 11-pixel rows: 0.486 -> 0.446 ms; its
// backward-data, 13-pixel rows: 0.568 -> 0.515 ms).
template <class T>
struct InPlaceKernel {
  MicroKernelFn<T> fn;
  long mr, nr;

  InPlaceKernel(long n_out, long grid_w) {
    const MicroKernel<T>& uk = microkernel<T>();
    const MicroKernel<T>& table = uk.wide && n_out % uk.wide->nr == 0 ? *uk.wide : uk;
    fn = table.row_major_a;
    mr = table.mr;
    nr = table.nr;
    if (grid_w % mr != 0 && grid_w <= uk.max_height && uk.row_major_heights[grid_w])
      fn = uk.row_major_heights[grid_w], mr = grid_w, nr = uk.nr;
  }
};

// Whether reading in place beats the GEMM driver (which packs patch rows): when the filters
// (k x n_out) are small enough to stream from L2 for every tile.
template <class T>
bool in_place_pays(long k, long n_out) {
  return k * n_out * long(sizeof(T)) <= (1L << 20);
}

// rows (count x n, contiguous) += bias (n; unless null), then max(., 0) when relu (NaN kept).
template <class T>
ZG_MULTIVERSION void add_bias_relu(T* __restrict rows, long count, long n, const T* __restrict bias, bool relu) {
  for (long r = 0; r < count; ++r, rows += n) {
    if (bias)
      for (long q = 0; q < n; ++q) rows[q] += bias[q];
    if (relu)
      for (long q = 0; q < n; ++q) rows[q] = rows[q] < T(0) ? T(0) : rows[q];
  }
}

// dst (n) += the sum of the `count` rows (count x n, contiguous) of src.
template <class T>
ZG_MULTIVERSION void add_rows(T* __restrict dst, const T* __restrict src, long count, long n) {
  for (long r = 0; r < count; ++r, src += n)
    for (long q = 0; q < n; ++q) dst[q] += src[q];
}

// y (grid pixels x n_out, row stride n_out) = conv of `a` with filters (k x n_out, row-major,
// k = kh*kw*c), plus bias (n_out; unless null), then max(., 0) when relu: bias and ReLU are
// applied to each tile while it is in cache.
template <class T>
void conv_in_place(const InPlaceConv<T>& a, const T* filters, long n_out, const T* bias, T* y, bool relu) {
  const InPlaceKernel<T> chosen(n_out, a.grid_w);
  const MicroKernelFn<T> kernel = chosen.fn;
  const long MR = chosen.mr, NR = chosen.nr, KC = k_block(microkernel<T>()), seg = a.kw * a.c, k = a.kh * seg;
  const long n_panels = (n_out + NR - 1) / NR, lda = a.sw * a.c;
  // Aligned (scratch): B's rows are the micro-kernel's vector loads, and a load across two cache
  // lines costs two (std::vector's 16-byte alignment split most of them).
  T* bpack = scratch<T>(kSlotPackB, n_panels * NR * k);
  const StridedMatrix<T> b{filters, n_out, 1};
  b.pack_b(bpack, 0, k, 0, n_out, NR);  // panel jp at jp*NR*k, row p at + p*NR
  const long size = a.n * a.rows * a.cols * a.c, grid_rows = a.n * a.grid_h;
  const PatchRows<T> patches{a.rows, a.cols, a.c, a.kh, a.kw, a.dh, 1};

  const RowTiling tiling(a, MR);
  const long v_lo = tiling.v_lo, v_hi = tiling.v_hi, span = v_hi - v_lo, tiles = tiling.tiles;
  const std::vector<long>& gathered = tiling.gathered;
  const long leftover = static_cast<long>(gathered.size());

  // Output rows reach image row u*sh + i*dh + row0: the kernel rows [i0, i1) that land inside.
  auto kernel_rows = [&](long u) {
    const long top = u * a.sh + a.row0;
    const long i0 = top >= 0 ? 0 : (-top + a.dh - 1) / a.dh;
    const long i1 = top >= a.rows ? 0 : std::min(a.kh, (a.rows - 1 - top) / a.dh + 1);
    return std::pair<long, long>{std::min(i0, a.kh), std::max(i1, std::min(i0, a.kh))};
  };
  // Top-left element of the window of output pixel (grid row `row`, column v) at kernel row i.
  auto window = [&](long row, long v, long i) {
    const long n = row / a.grid_h, u = row % a.grid_h;
    return ((n * a.rows + u * a.sh + i * a.dh + a.row0) * a.cols + v * a.sw + a.col0) * a.c;
  };
  // An edge tile (MR x NR, computed apart) into the `count` pixels at pix, panel jp.
  auto store_edge = [&](const T* edge, T* const* pix, long count, long jp, long width) {
    for (long r = 0; r < count; ++r)
      for (long q = 0; q < width; ++q) pix[r][jp * NR + q] = edge[r * NR + q];
  };
  const bool finish = bias || relu;

  // Work unit: MR grid rows (their in-place tiles, then their leftovers gathered).
  parallel_for((grid_rows + MR - 1) / MR, 1, [&](long first_group, long last_group) {
    T* apack = scratch<T>(kSlotPackA, MR * std::max(k, KC));
    alignas(64) T edge[16 * 64];  // one MR x NR tile of C
    T* pix[16];                   // the rows of y a tile writes
    for (long group = first_group; group < last_group; ++group) {
      const long row0 = group * MR, row1 = std::min(grid_rows, row0 + MR);
      for (long row = row0; row < row1; ++row) {
        const auto [i0, i1] = kernel_rows(row % a.grid_h);
        for (long t = 0; t < tiles; ++t) {
          const long v0 = v_lo + std::min(t * MR, std::max(span - MR, 0L)), count = std::min(MR, v_hi - v0);
          T* tile = y + (row * a.grid_w + v0) * n_out;
          for (long r = 0; r < MR; ++r) pix[r] = tile + r * n_out;
          for (long jp = 0; jp < n_panels; ++jp) {
            const long width = std::min(NR, n_out - jp * NR);
            const bool full = width == NR && count == MR;
            T* c = full ? tile + jp * NR : edge;
            const long ldc = full ? n_out : NR;
            const T* panel = bpack + jp * NR * k;
            // All its kernel rows in one call (runs of seg steps, dh image rows apart; the filter
            // rows follow on), unless a row is deeper than KC or the last would read past the buffer.
            // No kernel row inside the image: no runs, and the call writes the tile's zeros.
            if (i1 == i0 || (seg <= KC && window(row, v0, i1 - 1) + (MR - 1) * lda + seg <= size)) {
              kernel(seg, a.image + (i1 > i0 ? window(row, v0, i0) : 0), lda, panel + i0 * seg * NR, NR, c, ldc, T(1),
                     T(0), i1 - i0, a.dh * a.cols * a.c);
            } else {
              T beta = T(0);
              for (long i = i0; i < i1; ++i) {
                const T* rows0 = a.image + window(row, v0, i);
                for (long q0 = 0; q0 < seg; q0 += KC) {
                  const long depth = std::min(KC, seg - q0);
                  const T* src = rows0 + q0;
                  long ld = lda;
                  if ((src - a.image) + (MR - 1) * lda + depth > size) {  // the tile would read past the buffer
                    for (long r = 0; r < MR; ++r) {
                      if (r < count) copy(apack + r * depth, src + r * lda, depth);
                      else zero(apack + r * depth, depth);
                    }
                    src = apack, ld = depth;
                  }
                  kernel(depth, src, ld, panel + (i * seg + q0) * NR, NR, c, ldc, T(1), beta, 1, 0);
                  beta = T(1);
                }
              }
            }
            if (!full) store_edge(edge, pix, count, jp, width);
          }
          if (finish) add_bias_relu(tile, count, n_out, bias, relu);
        }
      }
      // The gathered pixels of the group's rows, MR at a time, as patch rows (apack: MR x k).
      const long pixels = (row1 - row0) * leftover;
      for (long p0 = 0; p0 < pixels; p0 += MR) {
        const long count = std::min(MR, pixels - p0);
        for (long r = 0; r < MR; ++r) {
          if (r >= count) {
            zero(apack + r * k, k);
            continue;
          }
          const long row = row0 + (p0 + r) / leftover, v = gathered[(p0 + r) % leftover];
          const long n = row / a.grid_h, u = row % a.grid_h;
          patches.gather(apack + r * k, a.image + n * a.rows * a.cols * a.c, u * a.sh + a.row0, v * a.sw + a.col0, 0, k);
          pix[r] = y + (row * a.grid_w + v) * n_out;
        }
        for (long jp = 0; jp < n_panels; ++jp) {
          const long width = std::min(NR, n_out - jp * NR);
          for (long p = 0; p < k; p += KC)
            kernel(std::min(KC, k - p), apack + p, k, bpack + jp * NR * k + p * NR, NR, edge, NR, T(1),
                   p == 0 ? T(0) : T(1), 1, 0);
          store_edge(edge, pix, count, jp, width);
        }
        if (finish)
          for (long r = 0; r < count; ++r) add_bias_relu(pix[r], 1, n_out, bias, relu);
      }
    }
  });
}

// Rows [row0, row0 + rows) x columns [col0, col0 + cols) of one image (h, w, c) into out
// (rows, cols, c), zero outside the image.
template <class T>
void pad_rows(const T* image, long h, long w, long c, long row0, long rows, long col0, long cols, T* out) {
  const long lo = std::clamp(-col0, 0L, cols), hi = std::clamp(w - col0, lo, cols);  // columns inside
  for (long t = 0; t < rows; ++t, out += cols * c) {
    const long r = row0 + t;
    if (r < 0 || r >= h) {
      zero(out, cols * c);
      continue;
    }
    zero(out, lo * c);
    copy(out + lo * c, image + (r * w + col0 + lo) * c, (hi - lo) * c);
    zero(out + hi * c, (cols - hi) * c);
  }
}

// The plan for conv_in_place: the image itself, unless more than an eighth of each grid row would
// be gathered (small images, wide padding), when a copy with the columns that the windows reach,
// zero outside the image, is cheaper: (n, h, cols, c). Rows are not padded: kernel rows that land
// outside the image stay out of each tile's runs, so no tile multiplies rows of zeros (conv2's
// backward-data, 13 x 13 from 11 x 11 with 3 x 3 taps, computed 1/6 more with padded rows).
template <class T>
InPlaceConv<T> conv_plan(const T* image, long n, long h, long w, long c, long grid_h, long grid_w, long kh, long kw,
                         long sh, long sw, long dh, long row0, long col0, long n_out) {
  const InPlaceConv<T> plan{image, n, h, w, c, grid_h, grid_w, kh, kw, sh, sw, dh, row0, col0};
  if (8 * static_cast<long>(RowTiling(plan, InPlaceKernel<T>(n_out, grid_w).mr).gathered.size()) <= grid_w) return plan;
  const long cols = (grid_w - 1) * sw + kw;
  T* padded = scratch<T>(kSlotPadded, n * h * cols * c);
  parallel_for(n * h, 16, [&](long first, long last) {
    for (long t = first; t < last;) {  // a run of rows of one image
      const long img = t / h, count = std::min(last - t, h - t % h);
      pad_rows(image + img * h * w * c, h, w, c, t % h, count, col0, cols, padded + t * cols * c);
      t += count;
    }
  });
  return {padded, n, h, cols, c, grid_h, grid_w, kh, kw, sh, sw, dh, row0, 0};
}

// Backward-data for inputs with few channels: as a GEMM its N would be c (1 for a first layer),
// wasting most of each micro-kernel tile. Directly instead: each dx element is a sum, over the
// taps that reach it, of dot products of dy's output channels with the filter's, accumulated
// in L lanes and added up once per element.
template <class T>
ZG_MULTIVERSION void backward_data_direct_row(const T* dy, const T* w, T* dx_row, long o, long n, long ih,
                                              const Window& g) {
  constexpr int L = 16;
  long rows[64], out_rows[64], valid = 0;  // the kernel rows i that reach input row ih (kh <= 64 checked)
  for (long i = 0; i < g.kh; ++i) {
    const long oh_s = ih + g.pt - i * g.dh;
    if (oh_s >= 0 && oh_s % g.sh == 0 && oh_s / g.sh < g.ho) rows[valid] = i, out_rows[valid++] = oh_s / g.sh;
  }
  for (long iw = 0; iw < g.w; ++iw)
    for (long ci = 0; ci < g.c; ++ci) {
      T acc[L] = {}, rest = T(0);  // acc stays in one vector register; rest takes o % L
      for (long r = 0; r < valid; ++r)
        for (long j = 0; j < g.kw; ++j) {
          const long ow_s = iw + g.pl - j * g.dw;
          if (ow_s < 0 || (g.sw != 1 && ow_s % g.sw != 0)) continue;
          const long ow = g.sw == 1 ? ow_s : ow_s / g.sw;  // no division in the common case
          if (ow >= g.wo) continue;
          const T* d = dy + ((n * g.ho + out_rows[r]) * g.wo + ow) * o;
          const T* f = w + ((rows[r] * g.kw + j) * g.c + ci) * o;
          long q = 0;
          for (; q + L <= o; q += L)
            for (int l = 0; l < L; ++l) acc[l] += d[q + l] * f[q + l];
          for (; q < o; ++q) rest += d[q] * f[q];
        }
      // The lanes added pairwise (a tree, four vector steps) rather than one after another: a
      // chain of 16 dependent additions per element was a third of the time (conv1: 0.59 -> 0.40 ms).
#pragma GCC unroll 4
      for (int half = L / 2; half > 0; half /= 2)
        for (int l = 0; l < half; ++l) acc[l] += acc[l + half];
      dx_row[iw * g.c + ci] = acc[0] + rest;
    }
}

// dst (count) = the sum, in order, of the `chunks` pieces src + ch * stride (count values each):
// chunk by chunk over the whole piece, so that the adds are vector-wide (the same sums as element
// by element).
template <class T>
ZG_MULTIVERSION void sum_chunks(T* __restrict dst, const T* __restrict src, long chunks, long stride, long count) {
  for (long e = 0; e < count; ++e) dst[e] = src[e];
  for (long ch = 1; ch < chunks; ++ch)
    for (long e = 0; e < count; ++e) dst[e] += src[ch * stride + e];
}

// dw (size) and db (o, unless null) = the sums, in chunk order, of the chunks' partials, each
// laid out as size + o values; dw in pieces of 1024 values, each summed while it stays in L1
// (conv2's backward-weight, 8 chunks: 5% of the pass element by element).
template <class T>
void add_partials(const T* partial, long chunks, long size, long o, T* dw, T* db) {
  constexpr long kPiece = 1024;
  parallel_for((size + kPiece - 1) / kPiece, 4, [&](long first, long last) {
    for (long e0 = first * kPiece; e0 < std::min(size, last * kPiece); e0 += kPiece)
      sum_chunks(dw + e0, partial + e0, chunks, size + o, std::min(kPiece, size - e0));
  });
  if (db) sum_chunks(db, partial + size, chunks, size + o, o);
}

// The output columns ow in [first, last) whose tap j lands inside the image: 0 <= ow*sw - pl + j*dw < w.
inline std::pair<long, long> columns_inside(const Window& g, long j) {
  const long shift = g.pl - j * g.dw;  // iw = ow * sw - shift
  const long first = shift <= 0 ? 0 : (shift + g.sw - 1) / g.sw;
  const long last = std::min(g.wo, g.w + shift <= 0 ? 0 : (g.w + shift + g.sw - 1) / g.sw);
  return {first, std::max(first, last)};
}

// acc[0, width) += the sum over ow in [ow0, ow1) of xs[ow * step] (1 when xs is null) times
// dy_row[ow * o + l]. A whole block (width == 2 vectors) is summed in registers: GCC's generic
// vectors, which each clone of the caller compiles to its own ISA. (A function, not a lambda:
// a lambda in a multiversioned function is compiled once, for the baseline ISA.)
template <class T>
struct Vector64;
template <>
struct Vector64<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vector64<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <class T>
constexpr long kDirectBlock = 2 * 64 / sizeof(T);

// Always inlined: called (not inlined) from a multiversioned function, it would run as its
// baseline-ISA build, the 64-byte vectors emulated (conv1's backward-weight took 30x as long).
template <class T>
__attribute__((always_inline)) inline void add_row(T* __restrict acc, const T* xs, long step,
                                                   const T* __restrict dy_row, long o, long ow0, long ow1,
                    long width) {
  using V = typename Vector64<T>::type;
  constexpr long W = 64 / sizeof(T);
  if (width == 2 * W) {
    // Even and odd columns in separate sums: each sum is a chain of dependent adds, and two
    // chains alone left the FMA units idle.
    V s0 = {}, s1 = {}, t0 = {}, t1 = {};
    long ow = ow0;
    for (; ow + 1 < ow1; ow += 2) {
      const T v = xs ? xs[ow * step] : T(1), u = xs ? xs[(ow + 1) * step] : T(1);
      V d0, d1, e0, e1;
      std::memcpy(&d0, dy_row + ow * o, sizeof(V));
      std::memcpy(&d1, dy_row + ow * o + W, sizeof(V));
      std::memcpy(&e0, dy_row + (ow + 1) * o, sizeof(V));
      std::memcpy(&e1, dy_row + (ow + 1) * o + W, sizeof(V));
      s0 += v * d0;
      s1 += v * d1;
      t0 += u * e0;
      t1 += u * e1;
    }
    if (ow < ow1) {
      const T v = xs ? xs[ow * step] : T(1);
      V d0, d1;
      std::memcpy(&d0, dy_row + ow * o, sizeof(V));
      std::memcpy(&d1, dy_row + ow * o + W, sizeof(V));
      s0 += v * d0;
      s1 += v * d1;
    }
    s0 += t0;
    s1 += t1;
    for (long l = 0; l < W; ++l) acc[l] += s0[l], acc[W + l] += s1[l];
  } else {
    for (long ow = ow0; ow < ow1; ++ow) {
      const T v = xs ? xs[ow * step] : T(1);
      for (long l = 0; l < width; ++l) acc[l] += v * dy_row[ow * o + l];
    }
  }
}

// add_row for NT taps at once, over one dy row, a whole block of channels (2 vectors), and the
// columns [ow0, ow1) where every one of the taps lands inside the image: acc[t][0, 2W) += the sum
// over those columns of xs[t][ow * step] * dy_row[ow * o + l]. Each pixel's two vectors of dy are
// loaded once for all the taps, into registers (add_row, a tap at a time, loads them for each:
// three loads for two FMAs). AVX-512 only: 2 NT <= 24 accumulators beside dy and the broadcast.
template <class T, int NT>
ZG_AVX512 void add_row_taps(T* const* acc, const T* const* xs, long step, const T* __restrict dy_row, long o,
                            long ow0, long ow1) {
  using V = typename Vector64<T>::type;
  constexpr long W = 64 / sizeof(T);
  V a[NT][2] = {};
  const T* p[NT];
  for (int t = 0; t < NT; ++t) p[t] = xs[t];
  for (long ow = ow0; ow < ow1; ++ow) {
    V d0, d1;
    std::memcpy(&d0, dy_row + ow * o, sizeof(V));
    std::memcpy(&d1, dy_row + ow * o + W, sizeof(V));
#if ZG_HAS_AVX512_PATHS
    __asm__("" : "+v"(d0), "+v"(d1));  // kept in registers: GCC would fold the loads into every FMA
#endif
    const long at = ow * step;
#pragma GCC unroll 12
    for (int t = 0; t < NT; ++t) {
      const T v = p[t][at];
      a[t][0] += v * d0;
      a[t][1] += v * d1;
    }
  }
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t)
    for (long l = 0; l < W; ++l) acc[t][l] += a[t][0][l], acc[t][W + l] += a[t][1][l];
}

// Backward-weight for inputs with few channels: as a GEMM its M would be kh*kw*c (9 for a 3x3
// first layer), too few rows for a micro-kernel tile and each costing a gather per pixel.
// Directly instead: for each output row and tap, dw[tap] += sum over the row's pixels of
// x[pixel of tap] * dy[pixel], L output channels at a time in registers (accumulating in memory
// would chain every add through a store and a load). Adds output rows [first, last) into
// dw_part (kh*kw*c, o) and db_part (o).
template <class T>
ZG_MULTIVERSION void backward_weight_direct_rows(const T* x, const T* dy, T* dw_part, T* db_part, long o, long first,
                                                 long last, const Window& g) {
  constexpr long L = kDirectBlock<T>;
  const long step = g.sw * g.c;
  // Each tap's columns once, not per row: each costs a division, as much as a tap's sum of a row.
  std::vector<std::pair<long, long>> inside(g.kw);
  for (long j = 0; j < g.kw; ++j) inside[j] = columns_inside(g, j);
  for (long row = first; row < last; ++row) {
    const long n = row / g.ho, oh = row % g.ho;
    const T* dy_row = aligned_rows(dy + row * g.wo * o, g.wo, o);  // read 1 + kh*kw*c times
    for (long co0 = 0; co0 < o; co0 += L) {
      const long width = std::min(L, o - co0);
      add_row<T>(db_part + co0, nullptr, 0, dy_row + co0, o, 0, g.wo, width);
      for (long i = 0; i < g.kh; ++i) {
        const long ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        const T* x_row = x + (n * g.h + ih) * g.w * g.c;
        for (long j = 0; j < g.kw; ++j) {
          const auto [ow0, ow1] = inside[j];
          for (long ci = 0; ci < g.c; ++ci)  // xs[ow * step]: the value of tap (i, j, ci) at output column ow
            add_row<T>(dw_part + ((i * g.kw + j) * g.c + ci) * o + co0, x_row + (j * g.dw - g.pl) * g.c + ci, step,
                       dy_row + co0, o, ow0, ow1, width);
        }
      }
    }
  }
}

// backward_weight_direct_rows on AVX-512 with whole blocks of channels (o a multiple of L): the
// taps of all kernel rows inside the image summed in blocks of up to 12 (add_row_taps), over the
// columns where all of a block's taps land inside the image; a tap's other columns, a tap at a
// time. Each tap's sum over a row is one chain (add_row alternates two): other bits than
// backward_weight_direct_rows', as deterministic (conv1's backward-weight: 0.112 -> 0.093 ms in
// the bench, 135 -> 108 us in a seed step).
template <class T>
ZG_AVX512 void backward_weight_direct_rows_avx512(const T* x, const T* dy, T* dw_part, T* db_part, long o, long first,
                                                  long last, const Window& g) {
  constexpr long L = kDirectBlock<T>, kBlock = 12;
  const long step = g.sw * g.c, taps_per_row = g.kw * g.c;
  std::vector<std::pair<long, long>> inside(g.kw);
  for (long j = 0; j < g.kw; ++j) inside[j] = columns_inside(g, j);
  std::vector<const T*> xs(g.kh * taps_per_row);
  std::vector<T*> acc(g.kh * taps_per_row);
  std::vector<long> column(g.kh * taps_per_row);  // each tap's kernel column j
  for (long row = first; row < last; ++row) {
    const long n = row / g.ho, oh = row % g.ho;
    const T* dy_row = aligned_rows(dy + row * g.wo * o, g.wo, o);
    for (long co0 = 0; co0 < o; co0 += L) {
      add_row<T>(db_part + co0, nullptr, 0, dy_row + co0, o, 0, g.wo, L);
      long taps = 0;  // those of the kernel rows inside the image, in dw's order
      for (long i = 0; i < g.kh; ++i) {
        const long ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        const T* x_row = x + (n * g.h + ih) * g.w * g.c;
        for (long t = 0; t < taps_per_row; ++t, ++taps) {
          column[taps] = t / g.c;
          xs[taps] = x_row + (t / g.c * g.dw - g.pl) * g.c + t % g.c;  // its value at column ow: [ow * step]
          acc[taps] = dw_part + (i * taps_per_row + t) * o + co0;
        }
      }
      for (long t0 = 0; t0 < taps; t0 += kBlock) {
        const long count = std::min(kBlock, taps - t0);
        long lo = 0, hi = g.wo;
        for (long t = t0; t < t0 + count; ++t)
          lo = std::max(lo, inside[column[t]].first), hi = std::min(hi, inside[column[t]].second);
        hi = std::max(lo, hi);
        T* const* a = acc.data() + t0;
        const T* const* s = xs.data() + t0;
        switch (count) {
          case 1: add_row_taps<T, 1>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 2: add_row_taps<T, 2>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 3: add_row_taps<T, 3>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 4: add_row_taps<T, 4>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 5: add_row_taps<T, 5>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 6: add_row_taps<T, 6>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 7: add_row_taps<T, 7>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 8: add_row_taps<T, 8>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 9: add_row_taps<T, 9>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 10: add_row_taps<T, 10>(a, s, step, dy_row + co0, o, lo, hi); break;
          case 11: add_row_taps<T, 11>(a, s, step, dy_row + co0, o, lo, hi); break;
          default: add_row_taps<T, 12>(a, s, step, dy_row + co0, o, lo, hi); break;
        }
        for (long t = t0; t < t0 + count; ++t) {  // each tap's own columns outside [lo, hi)
          const auto [ow0, ow1] = inside[column[t]];
          add_row<T>(acc[t], xs[t], step, dy_row + co0, o, ow0, std::min(ow1, lo), L);
          add_row<T>(acc[t], xs[t], step, dy_row + co0, o, std::max(ow0, hi), ow1, L);
        }
      }
    }
  }
}

// Forward convolution of an image with few channels (conv1 has one), an output row at a time: a
// tile of P pixels x 2 vectors of output channels is summed in registers over the taps that land
// inside the image, in the order of the other paths (kernel rows, then kernel columns, then
// channels), then gets its bias and ReLU and is stored once. Through the micro-kernel, a tile
// summed kw*c = 3 steps per kernel row, and its calls, edges and bias pass cost more than the sums
// (conv1, 2 threads: 127 -> 78 us). `checked` tiles test each tap's column (windows across the
// image's edges, or fewer than P pixels: `count`); the others read every tap.
// `unit`: the tile's pixels read consecutive values (sw * c == 1), at offsets the compiler knows.
template <class T, long P, bool checked, bool unit>
__attribute__((always_inline)) inline void forward_direct_tile(const T* xn, const T* w, const T* b, T* y_row, long o,
                                                               long ob, long ow0, long count, const long* taps_i,
                                                               const long* taps_ih, long valid, const Window& g,
                                                               bool relu) {
  using V = typename Vector64<T>::type;
  constexpr long W = 64 / sizeof(T);
  const long step = unit ? 1 : g.sw * g.c;  // between the values of consecutive pixels
  V acc[P][2] = {};
  for (long r = 0; r < valid; ++r) {
    const T* x_row = xn + taps_ih[r] * g.w * g.c;
    for (long j = 0; j < g.kw; ++j) {
      const T* f = w + (taps_i[r] * g.kw + j) * g.c * o + ob;
      const long iw0 = ow0 * g.sw - g.pl + j * g.dw;
      const T* xs = x_row + iw0 * g.c;  // pixel p's value of channel ci: xs[p * step + ci]
      for (long ci = 0; ci < g.c; ++ci, f += o, ++xs) {
        V f0, f1;
        std::memcpy(&f0, f, sizeof(V));
        std::memcpy(&f1, f + W, sizeof(V));
#pragma GCC unroll 16
        for (long p = 0; p < P; ++p) {
          if (checked && (p >= count || iw0 + p * g.sw < 0 || iw0 + p * g.sw >= g.w)) continue;
          const T v = xs[p * step];
          acc[p][0] += v * f0;
          acc[p][1] += v * f1;
        }
      }
    }
  }
  V b0 = {}, b1 = {};
  if (b) {
    std::memcpy(&b0, b + ob, sizeof(V));
    std::memcpy(&b1, b + ob + W, sizeof(V));
  }
  const V zero_v = {};
#pragma GCC unroll 16
  for (long p = 0; p < P; ++p) {
    if (checked && p >= count) break;
    V s0 = acc[p][0], s1 = acc[p][1];
    if (b) s0 += b0, s1 += b1;
    if (relu) s0 = s0 < zero_v ? zero_v : s0, s1 = s1 < zero_v ? zero_v : s1;  // NaN kept
    T* out = y_row + (ow0 + p) * o + ob;
    std::memcpy(out, &s0, sizeof(V));
    std::memcpy(out + W, &s1, sizeof(V));
  }
}

// Whether forward_direct_row takes a convolution: few input channels, output channels in whole
// blocks of 2 vectors, and AVX-512, whose 32 registers hold a tile's 24 accumulators (AVX2's 16
// would spill them: 17x slower than the micro-kernel, which stays in use there).
template <class T>
bool forward_direct_pays(const Window& g, long o) {
  return g.c < 8 && g.kh <= 64 && o % kDirectBlock<T> == 0 && simd_level() == Simd::avx512;
}

// Output row (n, oh) of the convolution (y_row: wo x o), in tiles of 12 pixels, then of 4.
// Without predictive commoning: GCC kept the image values that the next kernel column reads
// again in scalar registers, spilled two dozen of them and ran at 0.6 FMA a cycle (95 -> 78 us).
template <class T>
__attribute__((optimize("no-predictive-commoning"))) ZG_MULTIVERSION void forward_direct_row(
    const T* x, const T* w, const T* b, T* y_row, long o, long n, long oh, const Window& g, bool relu) {
  long taps_i[64], taps_ih[64], valid = 0;  // the kernel rows inside the image, and their image rows
  for (long i = 0; i < g.kh; ++i) {
    const long ih = oh * g.sh - g.pt + i * g.dh;
    if (ih >= 0 && ih < g.h) taps_i[valid] = i, taps_ih[valid++] = ih;
  }
  const T* xn = x + n * g.h * g.w * g.c;
  // Columns [lo, hi) have every tap inside the image: ow*sw - pl >= 0, ow*sw - pl + (kw-1)*dw < w.
  const long lo = (g.pl + g.sw - 1) / g.sw, last = g.w - 1 + g.pl - (g.kw - 1) * g.dw;
  const long hi = last < 0 ? 0 : std::min(g.wo, last / g.sw + 1);
  const bool unit = g.sw * g.c == 1;
  for (long ob = 0; ob < o; ob += kDirectBlock<T>) {
    long ow0 = 0;
    for (; ow0 + 12 <= g.wo; ow0 += 12) {
      if (ow0 < lo || ow0 + 12 > hi)
        forward_direct_tile<T, 12, true, false>(xn, w, b, y_row, o, ob, ow0, 12, taps_i, taps_ih, valid, g, relu);
      else if (unit)
        forward_direct_tile<T, 12, false, true>(xn, w, b, y_row, o, ob, ow0, 12, taps_i, taps_ih, valid, g, relu);
      else
        forward_direct_tile<T, 12, false, false>(xn, w, b, y_row, o, ob, ow0, 12, taps_i, taps_ih, valid, g, relu);
    }
    for (; ow0 < g.wo; ow0 += 4) {
      const long count = std::min(4L, g.wo - ow0);
      if (count < 4 || ow0 < lo || ow0 + 4 > hi)
        forward_direct_tile<T, 4, true, false>(xn, w, b, y_row, o, ob, ow0, count, taps_i, taps_ih, valid, g, relu);
      else
        forward_direct_tile<T, 4, false, false>(xn, w, b, y_row, o, ob, ow0, 4, taps_i, taps_ih, valid, g, relu);
    }
  }
}

}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, long o, const Window& g, bool relu) {
  const long m = g.n * g.ho * g.wo, k = g.kh * g.kw * g.c;
  if (forward_direct_pays<T>(g, o)) {
    parallel_for(g.n * g.ho, 4, [&](long first, long last) {
      for (long row = first; row < last; ++row)
        forward_direct_row(x, w, b, y + row * g.wo * o, o, row / g.ho, row % g.ho, g, relu);
    });
    return;
  }
  if (g.dw == 1 && in_place_pays<T>(k, o)) {
    const auto plan = conv_plan(x, g.n, g.h, g.w, g.c, g.ho, g.wo, g.kh, g.kw, g.sh, g.sw, g.dh, -g.pt, -g.pl, o);
    return conv_in_place(plan, w, o, b, y, relu);
  }
  if (b) {
    parallel_for(m, 4096, [&](long begin, long end) {
      for (long i = begin; i < end; ++i) std::copy(b, b + o, y + i * o);
    });
  }
  gemm_driver<T>(m, o, k, PixelPatches<T>::forward(x, g), StridedMatrix<T>{w, o, 1}, y, o, T(1), b ? T(1) : T(0),
                 Epilogue<T>{nullptr, relu});
}

template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, long o, const Window& g) {
  if (g.c < 8 && g.kh <= 64) {
    parallel_for(g.n * g.h, 8, [&](long first, long last) {
      for (long row = first; row < last; ++row)
        backward_data_direct_row(dy, w, dx + row * g.w * g.c, o, row / g.h, row % g.h, g);
    });
    return;
  }
  // w as a (kh*kw*o, c) matrix, taps flipped and each tap's filter transposed, to match the
  // rows of the dy patches (small: made once per call).
  const long taps = g.kh * g.kw;
  std::vector<T> wt(taps * o * g.c);
  for (long tap = 0; tap < taps; ++tap)
    for (long ci = 0; ci < g.c; ++ci)
      for (long co = 0; co < o; ++co) wt[(tap * o + co) * g.c + ci] = w[((taps - 1 - tap) * g.c + ci) * o + co];
  const StridedMatrix<T> filters{wt.data(), g.c, 1};
  const long m = g.n * g.h * g.w;
  if (g.sh == 1 && g.sw == 1 && g.dw == 1 && in_place_pays<T>(taps * o, g.c)) {
    // Flipped tap (i, j) of input pixel (ih, iw) reads dy pixel (ih + pt - (kh-1-i)*dh, iw + pl - (kw-1-j)).
    const auto plan = conv_plan(dy, g.n, g.ho, g.wo, o, g.h, g.w, g.kh, g.kw, 1L, 1L, g.dh,
                                g.pt - (g.kh - 1) * g.dh, g.pl - (g.kw - 1), g.c);
    return conv_in_place(plan, wt.data(), g.c, static_cast<const T*>(nullptr), dx, false);
  }
  if (g.sh == 1 && g.sw == 1)
    gemm_driver<T>(m, g.c, taps * o, PixelPatches<T>::backward_data(dy, o, g), filters, dx, g.c, T(1), T(0));
  else
    gemm_driver<T>(m, g.c, taps * o, StridedFlippedOutputPatches<T>{dy, o, g}, filters, dx, g.c, T(1), T(0));
}

// Backward-weight with the image read in place (as conv_in_place reads it): for kernel row i,
// dw_i (kw*c x o) sums, over output rows, P^T D, where P (grid_w x kw*c) holds the row's windows
// at kernel row i (row stride sw*c; read as a column-major A with lda = sw*c) and D (grid_w x o)
// is dy's row (a row-major B). One call sums a few output rows of one image (runs of grid_w
// steps, sh image rows apart; dy's rows follow on), about KC steps, so that the C tiles, which
// live in dw_part (k x o), are loaded and stored once per KC steps; adds to db_part (o) too.
// Panels that would read past the end of the image or of dy, and ragged tiles, go through small
// copies.
template <class T>
void backward_weight_in_place_rows(const InPlaceConv<T>& a, const T* dy, T* dw_part, T* db_part, long o, long first,
                                   long last) {
  const MicroKernel<T>& uk = microkernel<T>();
  const MicroKernelFn<T> kernel = uk.column_major_a;
  const long MR = uk.mr, NR = uk.nr, seg = a.kw * a.c, lda = a.sw * a.c, size = a.n * a.rows * a.cols * a.c;
  const long row_step = a.sh * a.cols * a.c;  // from one output row's windows to the next row's
  const long rows_per_call = std::max(1L, (k_block(uk) + a.grid_w - 1) / a.grid_w);
  const long max_depth = rows_per_call * a.grid_w;
  T* apack = scratch<T>(kSlotPackA, (MR + NR) * max_depth);  // a copied A panel, then a copied B panel
  T* bpack = apack + MR * max_depth;
  alignas(64) T edge[16 * 64];  // one MR x NR tile of C
  for (long row0 = first; row0 < last;) {
    const long n = row0 / a.grid_h, u0 = row0 % a.grid_h;
    const long runs = std::min({rows_per_call, last - row0, a.grid_h - u0}), depth = runs * a.grid_w;
    const T* d = aligned_rows(dy + row0 * a.grid_w * o, depth, o);  // B of kh * seg / MR calls
    add_rows(db_part, d, depth, o);
    for (long i = 0; i < a.kh; ++i) {
      const long base = (n * a.rows + u0 * a.sh + i * a.dh) * a.cols * a.c;
      for (long q0 = 0; q0 < seg; q0 += MR) {
        const long height = std::min(MR, seg - q0);
        const T* panel = a.image + base + q0;
        long ld = lda, step = row_step;
        if (base + q0 + (runs - 1) * row_step + (a.grid_w - 1) * lda + MR > size) {
          for (long s = 0; s < runs; ++s)
            for (long p = 0; p < a.grid_w; ++p)
              for (long r = 0; r < MR; ++r)
                apack[(s * a.grid_w + p) * MR + r] = r < height ? panel[s * row_step + p * lda + r] : T(0);
          panel = apack, ld = MR, step = a.grid_w * MR;
        }
        T* c = dw_part + (i * seg + q0) * o;
        for (long j0 = 0; j0 < o; j0 += NR) {
          const long width = std::min(NR, o - j0);
          if (height == MR && width == NR) {
            kernel(a.grid_w, panel, ld, d + j0, o, c + j0, o, T(1), T(1), runs, step);
            continue;
          }
          const T* b = d + j0;
          long ldb = o;
          if (width < NR) {  // the panel would read past dy's row (and, at the end, past dy)
            for (long p = 0; p < depth; ++p)
              for (long q = 0; q < NR; ++q) bpack[p * NR + q] = q < width ? d[p * o + j0 + q] : T(0);
            b = bpack, ldb = NR;
          }
          for (long r = 0; r < MR; ++r)
            for (long q = 0; q < NR; ++q) edge[r * NR + q] = r < height && q < width ? c[r * o + j0 + q] : T(0);
          kernel(a.grid_w, panel, ld, b, ldb, edge, NR, T(1), T(1), runs, step);
          for (long r = 0; r < height; ++r)
            for (long q = 0; q < width; ++q) c[r * o + j0 + q] = edge[r * NR + q];
        }
      }
    }
    row0 += runs;
  }
}

template <class T>
void conv2d_backward_weight(const T* x, const T* dy, T* dw, T* db, long o, const Window& g) {
  // The sum over the batch's pixels is split into chunks whose size depends only on the shape;
  // each chunk's partial dw is computed on its own (in parallel), and the partials are added in
  // chunk order: parallel, yet bit-identical whatever the thread count.
  const long pixels = g.n * g.ho * g.wo, k = g.kh * g.kw * g.c, size = k * o;
  const bool direct = g.c < 8;  // few channels: direct row sums
  // Wide rows: the image read in place, one output row a call (narrow rows would load and store
  // the C tiles for too little work).
  const bool in_place = !direct && g.dw == 1 && g.wo >= 8 && in_place_pays<T>(k, o);
  if (direct || in_place) {  // in chunks of whole output rows
    const long rows = g.n * g.ho, chunk = std::max<long>((rows + 15) / 16, (512 + g.wo - 1) / std::max(g.wo, 1L));
    const long chunks = std::max<long>((rows + chunk - 1) / chunk, 1);
    T* partial = scratch<T>(kSlotConv, chunks * (size + o));
    // Windows that reach into the padding are read from a padded copy of the rows they need,
    // made image by image as the chunk reaches them, so that the copy is still in cache.
    const long need_rows = (g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1, need_cols = (g.wo - 1) * g.sw + g.kw;
    const bool padded = g.pt != 0 || g.pl != 0 || need_rows > g.h || need_cols > g.w;
    const InPlaceConv<T> plan{x, g.n, g.h, g.w, g.c, g.ho, g.wo, g.kh, g.kw, g.sh, g.sw, g.dh};
    parallel_for(chunks, 1, [&](long begin, long end) {
      for (long ch = begin; ch < end; ++ch) {
        T* part = partial + ch * (size + o);
        const long first = ch * chunk, last = std::min(rows, (ch + 1) * chunk);
        zero(part, size + o);
        if (direct && o % kDirectBlock<T> == 0 && simd_level() == Simd::avx512) {
          backward_weight_direct_rows_avx512(x, dy, part, part + size, o, first, last, g);
        } else if (direct) {
          backward_weight_direct_rows(x, dy, part, part + size, o, first, last, g);
        } else if (!padded) {
          backward_weight_in_place_rows(plan, dy, part, part + size, o, first, last);
        } else {
          for (long row = first; row < last;) {  // the chunk's rows of one image
            const long n = row / g.ho, u0 = row % g.ho, count = std::min(last - row, g.ho - u0);
            const long piece_rows = (count - 1) * g.sh + (g.kh - 1) * g.dh + 1;
            T* piece = scratch<T>(kSlotPadded, piece_rows * need_cols * g.c);
            pad_rows(x + n * g.h * g.w * g.c, g.h, g.w, g.c, u0 * g.sh - g.pt, piece_rows, -g.pl, need_cols, piece);
            const InPlaceConv<T> local{piece, 1, piece_rows, need_cols, g.c, count, g.wo, g.kh, g.kw, g.sh, g.sw, g.dh};
            backward_weight_in_place_rows(local, dy + row * g.wo * o, part, part + size, o, 0, count);
            row += count;
          }
        }
      }
    });
    return add_partials(partial, chunks, size, o, dw, db);
  }
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
      add_rows(bias_part, dy + first * o, count, o);
    }
  });

  add_partials(partial, chunks, size, o, dw, db);
}

template void conv2d_forward<float>(const float*, const float*, const float*, float*, long, const Window&, bool);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, long, const Window&,
                                     bool);
template void conv2d_backward_data<float>(const float*, const float*, float*, long, const Window&);
template void conv2d_backward_data<double>(const double*, const double*, double*, long, const Window&);
template void conv2d_backward_weight<float>(const float*, const float*, float*, float*, long, const Window&);
template void conv2d_backward_weight<double>(const double*, const double*, double*, double*, long, const Window&);

}  // namespace zg
