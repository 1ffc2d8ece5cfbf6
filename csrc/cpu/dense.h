// The backward pass of a dense layer, y = act(x w + b), in one call.
#pragma once

namespace zg {

// From dy (n x out), the gradient of y: g = dy where y > 0 when y (act = ReLU, y its output) is
// given, else dy itself; then dx = g w^T (n x in), dw = x^T g (in x out) and db = g summed over
// the rows (out), each skipped when its pointer is null. x is n x in and w in x out, all
// C-contiguous. db sums the rows in order, whatever the thread count.
template <class T>
void dense_backward(const T* dy, const T* x, const T* w, const T* y, long n, long in, long out, T* dx, T* dw, T* db);

}  // namespace zg
