#include "cross_entropy.h"

#include <cmath>

namespace zg {

// Rows are few and short (a batch of 32 rows of 10 classes): one thread, no SIMD dispatch.
template <class T>
bool softmax_cross_entropy(const T* z, const std::int64_t* labels, long n, long c, T* probs, T* loss) {
  double total = 0.0;
  for (long i = 0; i < n; ++i) {
    const std::int64_t label = labels[i];
    if (label < 0 || label >= c) return false;
    const T* row = z + i * c;
    T* p = probs + i * c;
    T top = row[0];
    for (long j = 1; j < c; ++j) top = (row[j] > top || row[j] != row[j]) ? row[j] : top;  // NaN wins, as np.max
    T sum = T(0);
    for (long j = 0; j < c; ++j) {
      p[j] = std::exp(row[j] - top);
      sum += p[j];
    }
    for (long j = 0; j < c; ++j) p[j] /= sum;
    total += static_cast<double>(std::log(sum) - (row[label] - top));
  }
  *loss = static_cast<T>(total / static_cast<double>(n));
  return true;
}

template <class T>
bool softmax_cross_entropy_backward(const T* probs, const std::int64_t* labels, long n, long c, T dloss, T* dz) {
  const T scale = dloss / static_cast<T>(n);
  for (long i = 0; i < n; ++i) {
    const std::int64_t label = labels[i];
    if (label < 0 || label >= c) return false;
    for (long j = 0; j < c; ++j) dz[i * c + j] = (probs[i * c + j] - (j == label ? T(1) : T(0))) * scale;
  }
  return true;
}

template bool softmax_cross_entropy<float>(const float*, const std::int64_t*, long, long, float*, float*);
template bool softmax_cross_entropy<double>(const double*, const std::int64_t*, long, long, double*, double*);
template bool softmax_cross_entropy_backward<float>(const float*, const std::int64_t*, long, long, float, float*);
template bool softmax_cross_entropy_backward<double>(const double*, const std::int64_t*, long, long, double, double*);

}  // namespace zg
