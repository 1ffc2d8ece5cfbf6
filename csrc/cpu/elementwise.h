// Elementwise kernels of the training step: memory-bound, one pass, multithreaded.
#pragma once

namespace zg {

// y = max(x, 0) (NaN stays NaN), n elements; y may be x.
template <class T> void relu(const T* x, T* y, long n);
// dx = dy where y > 0, else 0 (y is relu's output), n elements; dx may be dy.
template <class T> void relu_backward(const T* dy, const T* y, T* dx, long n);

}  // namespace zg
