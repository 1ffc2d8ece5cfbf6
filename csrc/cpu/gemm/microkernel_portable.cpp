// Portable micro-kernels in plain C++ (the compiler vectorises them for the baseline ISA), and
// the run-time choice between the per-ISA tables.
#include "microkernel.h"
#include "microkernel_template.h"

namespace zg {
namespace {

template <class Scalar>
struct Scalar1 {
  using T = Scalar;
  using reg = Scalar;
  static constexpr int width = 1;
  static reg zero() { return 0; }
  static reg loadu(const T* p) { return *p; }
  static void storeu(T* p, reg r) { *p = r; }
  static reg broadcast(T x) { return x; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg add(reg a, reg b) { return a + b; }
};


template <PanelLayout layout>
void kernel_f32(long k, const float* a, long lda, const float* b, long ldb, float* c, long ldc, float alpha, float beta,
                long runs, long run_step) {
  microkernel_body<Scalar1<float>, 4, 8, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
template <PanelLayout layout>
void kernel_f64(long k, const double* a, long lda, const double* b, long ldb, double* c, long ldc, double alpha, double beta,
                long runs, long run_step) {
  microkernel_body<Scalar1<double>, 4, 4, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}

}  // namespace

const MicroKernel<float>& microkernel_portable_f32() {
  static const MicroKernel<float> table{kernel_f32<PanelLayout::column_major>, kernel_f32<PanelLayout::row_major>, 4, 8, 128, 256, 2048};
  return table;
}
const MicroKernel<double>& microkernel_portable_f64() {
  static const MicroKernel<double> table{kernel_f64<PanelLayout::column_major>, kernel_f64<PanelLayout::row_major>, 4, 4, 128, 256, 2048};
  return table;
}

template <>
const MicroKernel<float>& microkernel<float>() {
#if defined(__x86_64__)
  switch (simd_level()) {
    case Simd::avx512: return microkernel_avx512_f32();
    case Simd::avx2: return microkernel_avx2_f32();
    case Simd::portable: break;
  }
#endif
  return microkernel_portable_f32();
}

template <>
const MicroKernel<double>& microkernel<double>() {
#if defined(__x86_64__)
  switch (simd_level()) {
    case Simd::avx512: return microkernel_avx512_f64();
    case Simd::avx2: return microkernel_avx2_f64();
    case Simd::portable: break;
  }
#endif
  return microkernel_portable_f64();
}

}  // namespace zg
