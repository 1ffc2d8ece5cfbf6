// 2-D convolution on NHWC activations and HWIO filters, forward and both backward passes, as
// implicit GEMMs on the GEMM driver: the patch matrices are gathered while packing, in
// cache-sized blocks, and never materialised for the whole batch.
#pragma once

#include "window.h"

namespace zg {

// y (n, ho, wo, o) = conv(x (n, h, w, c), w (kh, kw, c, o)) + b (o,); b may be null; with
// `relu`, y = max(y, 0), applied to each tile while it is still in cache.
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, long o, const Window& g, bool relu = false);

// dx (n, h, w, c) from dy (n, ho, wo, o) and w (kh, kw, c, o).
template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, long o, const Window& g);

// dw (kh, kw, c, o) from x (n, h, w, c) and dy (n, ho, wo, o); db (o,) too unless null.
template <class T>
void conv2d_backward_weight(const T* x, const T* dy, T* dw, T* db, long o, const Window& g);

}  // namespace zg
