// 2-D max and average pooling on NHWC arrays (C-contiguous), float and double.
//
// Semantics are those of kernels/reference.py: padded positions belong to no window (max
// never takes their value, average divides by the count of real elements); max takes the
// first maximum in window scan order, a NaN counting as the largest (np.argmax's rule).
// Results are bit-identical whatever the thread count.
#pragma once

#include "window.h"

namespace zg {

// x (n, h, w, c) -> y (n, ho, wo, c); also the winners, when `winners` is not null: for each
// output element, the pixel (ih * w + iw) of its window's first maximum, as int32.
template <class T> void max_pool2d(const T* x, T* y, int* winners, const Window& g);
// dy (n, ho, wo, c), x (n, h, w, c) -> dx (n, h, w, c), fully written. With `winners` from the
// forward pass, x is not read again; a winner that is no pixel of its window routes its dy
// nowhere, and the result is false when some winner is no pixel of the image at all (outside
// [0, h * w)), which the caller reports. The winners are only compared, never used as addresses.
// relu_out (n, ho, wo, c; or null): the output of a ReLU after the pooling (relu(y)); the gradient
// is then that of both, dy reaching the winners only where relu_out > 0 (NaN stops it too).
template <class T>
bool max_pool2d_backward(const T* dy, const T* x, const int* winners, const T* relu_out, T* dx, const Window& g);
// x (n, h, w, c) -> y (n, ho, wo, c).
template <class T> void avg_pool2d(const T* x, T* y, const Window& g);
// dy (n, ho, wo, c) -> dx (n, h, w, c), fully written.
template <class T> void avg_pool2d_backward(const T* dy, T* dx, const Window& g);

}  // namespace zg
