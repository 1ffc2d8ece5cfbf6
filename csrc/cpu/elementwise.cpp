#include "elementwise.h"

#include "cpu_features.h"
#include "threading.h"

namespace zg {
namespace {

constexpr long kGrain = 1 << 16;  // elements per thread worth waking it for

template <class T>
ZG_MULTIVERSION void relu_range(const T* x, T* y, long n) {
  for (long i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
ZG_MULTIVERSION void relu_backward_range(const T* dy, const T* y, T* dx, long n) {
  for (long i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

}  // namespace

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

}  // namespace zg
