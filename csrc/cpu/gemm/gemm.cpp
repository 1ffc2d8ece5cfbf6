#include "gemm.h"

namespace zg {
template void gemm<float>(bool, bool, long, long, long, float, const float*, long, const float*, long, float,
                          float*, long);
template void gemm<double>(bool, bool, long, long, long, double, const double*, long, const double*, long,
                           double, double*, long);
}  // namespace zg
