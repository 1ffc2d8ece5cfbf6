#include "gemm.h"

namespace zg {
template void gemm<float>(bool, bool, long, long, long, float, const float*, long, const float*, long, float,
                          float*, long, Epilogue<float>);
template void gemm<double>(bool, bool, long, long, long, double, const double*, long, const double*, long,
                           double, double*, long, Epilogue<double>);
}  // namespace zg
