// GEMM on the GPU: C = alpha * op(A) op(B) + beta * C, row-major, on the tiles of gemm_tile.cuh.
#include "cuda/gemm_tile.cuh"

namespace zg {
namespace cuda {
namespace {

template <class T>
struct GemmEpilogue {
  T* c;
  i64 ldc;
  T alpha, beta;
  // beta == 0 writes without reading: NaN or garbage already in C must not leak into the result.
  __device__ void operator()(int m, int n, T acc) const {
    T* p = c + i64(m) * ldc + n;
    *p = beta == T(0) ? alpha * acc : alpha * acc + beta * *p;
  }
};

template <class T, bool TransA, bool TransB>
void gemm_typed(int m, int n, i64 k, T alpha, const T* a, i64 lda, const T* b, i64 ldb, T beta, T* c, i64 ldc,
                Precision precision, cudaStream_t stream) {
  constexpr int V = Vec16<T>::kN;
  // op(A) is M x K: stored as it is (m, k), the k index is contiguous; stored transposed, m is.
  const MatrixOperand<T, !TransA> opa{a, lda, m, aligned16(a) && lda % V == 0};
  // B is addressed as N x K: stored (k, n), n is contiguous; stored transposed (n, k), k is.
  const MatrixOperand<T, TransB> opb{b, ldb, n, aligned16(b) && ldb % V == 0};
  run_gemm<T>(opa, opb, GemmEpilogue<T>{c, ldc, alpha, beta}, m, n, k, 1, k, precision, stream, "gemm");
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, i64 k, T alpha, const T* a, i64 lda, const T* b, i64 ldb,
          T beta, T* c, i64 ldc, Precision precision, cudaStream_t stream) {
  if (trans_a && trans_b)
    gemm_typed<T, true, true>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision, stream);
  else if (trans_a)
    gemm_typed<T, true, false>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision, stream);
  else if (trans_b)
    gemm_typed<T, false, true>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision, stream);
  else
    gemm_typed<T, false, false>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision, stream);
}

template void gemm<float>(bool, bool, int, int, i64, float, const float*, i64, const float*, i64, float, float*, i64,
                          Precision, cudaStream_t);
template void gemm<double>(bool, bool, int, int, i64, double, const double*, i64, const double*, i64, double,
                           double*, i64, Precision, cudaStream_t);

}  // namespace cuda
}  // namespace zg
