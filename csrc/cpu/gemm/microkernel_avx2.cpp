// AVX2 + FMA micro-kernels: 16 ymm registers hold a 6 x 16 float (6 x 8 double) accumulator
// block (12 registers) plus the two B vectors and the A broadcast.
#include <immintrin.h>

#include "microkernel.h"
#include "microkernel_template.h"

namespace zg {
namespace {

struct Ymm32 {
  using T = float;
  using reg = __m256;
  static constexpr int width = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg loadu(const T* p) { return _mm256_loadu_ps(p); }
  static void storeu(T* p, reg r) { _mm256_storeu_ps(p, r); }
  static reg broadcast(T x) { return _mm256_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
};

struct Ymm64 {
  using T = double;
  using reg = __m256d;
  static constexpr int width = 4;
  static reg zero() { return _mm256_setzero_pd(); }
  static reg loadu(const T* p) { return _mm256_loadu_pd(p); }
  static void storeu(T* p, reg r) { _mm256_storeu_pd(p, r); }
  static reg broadcast(T x) { return _mm256_set1_pd(x); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
};


template <PanelLayout layout>
void kernel_f32(long k, const float* a, long lda, const float* b, long ldb, float* c, long ldc, float alpha, float beta,
                long runs, long run_step) {
  microkernel_body<Ymm32, 6, 2, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
template <PanelLayout layout>
void kernel_f64(long k, const double* a, long lda, const double* b, long ldb, double* c, long ldc, double alpha, double beta,
                long runs, long run_step) {
  microkernel_body<Ymm64, 6, 2, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}

}  // namespace

const MicroKernel<float>& microkernel_avx2_f32() {
  static const MicroKernel<float> table{kernel_f32<PanelLayout::column_major>, kernel_f32<PanelLayout::row_major>, 6, 16, 144, 256, 4096};
  return table;
}
const MicroKernel<double>& microkernel_avx2_f64() {
  static const MicroKernel<double> table{kernel_f64<PanelLayout::column_major>, kernel_f64<PanelLayout::row_major>, 6, 8, 96, 256, 2048};
  return table;
}

}  // namespace zg
