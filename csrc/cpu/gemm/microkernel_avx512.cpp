// AVX-512F micro-kernels: 32 zmm registers hold a 12 x 32 float (12 x 16 double) accumulator
// block (24 registers) plus the two B vectors and the A broadcast; the wide float kernels, 6 x 64,
// as many accumulators beside four B vectors.
#include <immintrin.h>

#include "microkernel.h"
#include "microkernel_template.h"

namespace zg {
namespace {

struct Zmm32 {
  using T = float;
  using reg = __m512;
  static constexpr int width = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg loadu(const T* p) { return _mm512_loadu_ps(p); }
  static void storeu(T* p, reg r) { _mm512_storeu_ps(p, r); }
  static reg loadu(const T* p, long n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p); }
  static void storeu(T* p, reg r, long n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), r); }
  static reg broadcast(T x) { return _mm512_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
};

struct Zmm64 {
  using T = double;
  using reg = __m512d;
  static constexpr int width = 8;
  static reg zero() { return _mm512_setzero_pd(); }
  static reg loadu(const T* p) { return _mm512_loadu_pd(p); }
  static void storeu(T* p, reg r) { _mm512_storeu_pd(p, r); }
  static reg loadu(const T* p, long n) { return _mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p); }
  static void storeu(T* p, reg r, long n) { _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), r); }
  static reg broadcast(T x) { return _mm512_set1_pd(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
};


template <PanelLayout layout>
void kernel_f32(long k, const float* a, long lda, const float* b, long ldb, float* c, long ldc, float alpha, float beta,
                long runs, long run_step) {
  microkernel_body<Zmm32, 12, 2, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
template <PanelLayout layout>
void kernel_f32_wide(long k, const float* a, long lda, const float* b, long ldb, float* c, long ldc, float alpha,
                     float beta, long runs, long run_step) {
  microkernel_body<Zmm32, 6, 4, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
template <PanelLayout layout>
void kernel_f64(long k, const double* a, long lda, const double* b, long ldb, double* c, long ldc, double alpha, double beta,
                long runs, long run_step) {
  microkernel_body<Zmm64, 12, 2, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
// One vector of columns and 16 rows: for products of at most 16 (float) or 8 (double) columns.
template <PanelLayout layout>
void kernel_f32_narrow(long k, const float* a, long lda, const float* b, long ldb, float* c, long ldc, float alpha,
                       float beta, long runs, long run_step) {
  microkernel_body<Zmm32, 16, 1, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
template <PanelLayout layout>
void kernel_f64_narrow(long k, const double* a, long lda, const double* b, long ldb, double* c, long ldc, double alpha,
                       double beta, long runs, long run_step) {
  microkernel_body<Zmm64, 16, 1, layout>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}

// Row-major kernels of 8 to 14 rows (28 accumulators at most, beside the two B vectors and the
// broadcast), for convolutions whose grid rows are that wide.
template <class V, int MR>
void kernel_height(long k, const typename V::T* a, long lda, const typename V::T* b, long ldb, typename V::T* c,
                   long ldc, typename V::T alpha, typename V::T beta, long runs, long run_step) {
  microkernel_body<V, MR, 2, PanelLayout::row_major>(k, a, lda, b, ldb, c, ldc, alpha, beta, runs, run_step);
}
template <class V>
constexpr MicroKernelFn<typename V::T> heights[15] = {
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, kernel_height<V, 8>,
    kernel_height<V, 9>, kernel_height<V, 10>, kernel_height<V, 11>, kernel_height<V, 12>, kernel_height<V, 13>,
    kernel_height<V, 14>};

// Their masked forms: the first `width` columns only.
template <PanelLayout layout>
void kernel_f32_masked(long k, const float* a, long lda, const float* b, long ldb, float* c, long ldc, float alpha,
                       float beta, long width) {
  microkernel_body<Zmm32, 16, 1, layout, true>(k, a, lda, b, ldb, c, ldc, alpha, beta, 1, 0, width);
}
template <PanelLayout layout>
void kernel_f64_masked(long k, const double* a, long lda, const double* b, long ldb, double* c, long ldc, double alpha,
                       double beta, long width) {
  microkernel_body<Zmm64, 16, 1, layout, true>(k, a, lda, b, ldb, c, ldc, alpha, beta, 1, 0, width);
}

const MicroKernel<float> narrow_f32{kernel_f32_narrow<PanelLayout::column_major>, kernel_f32_narrow<PanelLayout::row_major>,
                                    16, 16, 960, 256, 4096, nullptr, nullptr,
                                    kernel_f32_masked<PanelLayout::column_major>, kernel_f32_masked<PanelLayout::row_major>};
const MicroKernel<double> narrow_f64{kernel_f64_narrow<PanelLayout::column_major>, kernel_f64_narrow<PanelLayout::row_major>,
                                     16, 8, 480, 256, 2048, nullptr, nullptr,
                                     kernel_f64_masked<PanelLayout::column_major>, kernel_f64_masked<PanelLayout::row_major>};
const MicroKernel<float> wide_f32{kernel_f32_wide<PanelLayout::column_major>, kernel_f32_wide<PanelLayout::row_major>, 6, 64,
                                  960, 256, 4096};

}  // namespace

// kc 768 for floats: an A micro-panel, 12 x 768 floats (36 KiB), stays in a 48 KiB L1 while the
// B micro-panels of its chunk stream past from L2, and C is loaded and stored once per 768 steps
// instead of 256 (against kc 256, in C: 1024^3 7.30 -> 7.09 ms, 2048^3 59.2 -> 57.9 ms, a dense
// layer's forward, 32 x 128 x 1600, 64 -> 55 us). k_block lowers it on CPUs with a smaller L1.
const MicroKernel<float>& microkernel_avx512_f32() {
  static const MicroKernel<float> table{kernel_f32<PanelLayout::column_major>, kernel_f32<PanelLayout::row_major>, 12, 32, 960, 768, 4096,
                                        &narrow_f32, &wide_f32, nullptr, nullptr, heights<Zmm32>, 14};
  return table;
}
const MicroKernel<double>& microkernel_avx512_f64() {
  static const MicroKernel<double> table{kernel_f64<PanelLayout::column_major>, kernel_f64<PanelLayout::row_major>, 12, 16, 480, 256, 2048,
                                         &narrow_f64, nullptr, nullptr, nullptr, heights<Zmm64>, 14};
  return table;
}

}  // namespace zg
