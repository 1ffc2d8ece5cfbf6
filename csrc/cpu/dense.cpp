#include "dense.h"

#include <algorithm>

#include "cpu_features.h"
#include "gemm/gemm.h"
#include "threading.h"

namespace zg {
namespace {

constexpr long kColumns = 64;        // columns of a block: one thread's share of the gate and the sums
constexpr long kGrain = 1 << 16;     // elements per thread worth waking it for

// Columns [j0, j1) of every row: g = y > 0 ? dy : 0 (when y is given; g is unused otherwise)
// and db[j] = the sum of g[:, j] over the rows, in row order.
template <class T>
ZG_MULTIVERSION void gate_and_sum(const T* __restrict dy, const T* __restrict y, T* __restrict g, T* __restrict db,
                                  long n, long out, long j0, long j1) {
  if (db) std::fill(db + j0, db + j1, T(0));
  for (long i = 0; i < n; ++i) {
    const T* dy_row = dy + i * out;
    const T* src = dy_row;
    if (y) {
      const T* y_row = y + i * out;
      T* g_row = g + i * out;
      for (long j = j0; j < j1; ++j) g_row[j] = y_row[j] > T(0) ? dy_row[j] : T(0);
      src = g_row;
    }
    if (db)
      for (long j = j0; j < j1; ++j) db[j] += src[j];
  }
}

}  // namespace

template <class T>
void dense_backward(const T* dy, const T* x, const T* w, const T* y, long n, long in, long out, T* dx, T* dw, T* db) {
  const T* g = dy;
  if (y || db) {
    T* gated = y ? scratch<T>(kSlotGate, n * out) : nullptr;
    const long blocks = (out + kColumns - 1) / kColumns;
    const long grain = std::max(1L, kGrain / std::max(1L, n * kColumns));
    parallel_for(blocks, grain, [&](long first, long last) {
      gate_and_sum(dy, y, gated, db, n, out, first * kColumns, std::min(out, last * kColumns));
    });
    if (y) g = gated;
  }
  if (dx) gemm<T>(false, true, n, in, out, T(1), g, out, w, out, T(0), dx, in);
  if (dw) gemm<T>(true, false, in, out, n, T(1), x, in, g, out, T(0), dw, out);
}

template void dense_backward<float>(const float*, const float*, const float*, const float*, long, long, long, float*,
                                    float*, float*);
template void dense_backward<double>(const double*, const double*, const double*, const double*, long, long, long,
                                     double*, double*, double*);

}  // namespace zg
