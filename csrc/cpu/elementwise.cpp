#include "elementwise.h"

#include <cmath>
#include <limits>

#include "cpu_features.h"
#include "threading.h"

namespace zg {
namespace {

constexpr long kGrain = 1 << 16;  // elements per thread worth waking it for

template <class T>
ZG_MULTIVERSION void relu_range(const T* __restrict x, T* __restrict y, long n) {
  for (long i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
ZG_MULTIVERSION void relu_backward_range(const T* __restrict dy, const T* __restrict y, T* __restrict dx, long n) {
  for (long i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template <class T>
ZG_MULTIVERSION void adam_range(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, long n, T alpha, T keep_1, T keep_2, T epsilon) {
  const T tiny = std::numeric_limits<T>::min();
  for (long i = 0; i < n; ++i) {
    const T mi = m[i] + (g[i] - m[i]) * keep_1;
    const T vi = v[i] + (g[i] * g[i] - v[i]) * keep_2;
    m[i] = std::abs(mi) < tiny ? T(0) : mi;
    v[i] = std::abs(vi) < tiny ? T(0) : vi;
    p[i] -= alpha * m[i] / (std::sqrt(v[i]) + epsilon);
  }
}

}  // namespace

template <class T>
void adam_update(T* p, const T* g, T* m, T* v, long n, double alpha, double beta_1, double beta_2, double epsilon) {
  // 1 - beta in double, then rounded once, as the reference does
  const T keep_1 = T(1.0 - beta_1), keep_2 = T(1.0 - beta_2);
  parallel_for(n, kGrain, [&](long begin, long end) {
    adam_range(p + begin, g + begin, m + begin, v + begin, end - begin, T(alpha), keep_1, keep_2, T(epsilon));
  });
}

template <class T>
void relu(const T* x, T* y, long n) {
  parallel_for(n, kGrain, [&](long begin, long end) { relu_range(x + begin, y + begin, end - begin); });
}

template <class T>
void relu_backward(const T* dy, const T* y, T* dx, long n) {
  parallel_for(n, kGrain, [&](long begin, long end) {
    relu_backward_range(dy + begin, y + begin, dx + begin, end - begin);
  });
}

template void relu<float>(const float*, float*, long);
template void relu<double>(const double*, double*, long);
template void relu_backward<float>(const float*, const float*, float*, long);
template void relu_backward<double>(const double*, const double*, double*, long);
template void adam_update<float>(float*, const float*, float*, float*, long, double, double, double, double);
template void adam_update<double>(double*, const double*, double*, double*, long, double, double, double, double);

}  // namespace zg
