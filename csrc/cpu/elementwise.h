// Elementwise kernels of the training step: memory-bound, one pass, multithreaded.
#pragma once

namespace zg {

// y = max(x, 0) (NaN stays NaN), n elements; y may be x.
template <class T> void relu(const T* x, T* y, long n);
// dx = dy where y > 0, else 0 (y is relu's output), n elements; dx may be dy.
template <class T> void relu_backward(const T* dy, const T* y, T* dx, long n);

// One Adam step in place, as Keras: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// p -= alpha * m / (sqrt(v) + eps), alpha holding the learning rate and the bias corrections.
template <class T>
void adam_update(T* p, const T* g, T* m, T* v, long n, double alpha, double beta_1, double beta_2, double epsilon);

}  // namespace zg
