// zengrad's CUDA kernels: the host-side entry points that the binding (bindings/cuda_module.cpp)
// calls. Every function takes raw device pointers of arrays that the Python layer has checked
// (sizes, layout, dtype), launches on `stream` and returns without synchronising; a failed
// launch throws std::runtime_error. Layouts are those of the CPU kernels: row-major GEMM
// operands, NHWC activations, HWIO filters.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace zg {
namespace cuda {

// How float32 matrix products are computed: plain FP32 FMAs, or tensor cores with inputs
// rounded to TF32 or BF16 (float32 accumulation either way). float64 always uses FP64.
enum class Precision { kFloat32 = 0, kTF32 = 1, kBF16 = 2 };

// Geometry of a sliding-window op on an NHWC input, as kernels/_validate.Window: input
// n*h*w*c, window kh*kw, output ho*wo, stride, dilation, padding top/bottom/left/right.
// Every field is below 2^31 (the binding checks), so the fields are ints on the device.
struct Geometry {
  int n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr;
};

// c (m, n) = alpha * op(a) @ op(b) + beta * c, row-major; op(a) is (m, k), a is (k, m) when
// trans_a; likewise b. beta == 0 never reads c. m, n < 2^31.
template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, std::int64_t k, T alpha, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc, Precision precision, cudaStream_t stream);

// y (n, ho, wo, o) = conv(x, w (kh, kw, c, o)) + bias (o,) (bias may be null), then max(y, 0)
// when relu.
template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, int o, const Geometry& g, bool relu,
                    Precision precision, cudaStream_t stream);

// dx (n, h, w, c) from dy (n, ho, wo, o) and w (kh, kw, c, o).
template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, int o, const Geometry& g, Precision precision,
                          cudaStream_t stream);

// Elements of scratch memory conv2d_backward_weight needs (0: none). Depends on the shapes only,
// so the order of every sum, and so every bit of the result, does too.
std::size_t conv2d_backward_weight_workspace(int o, const Geometry& g, bool with_bias);

// dw (kh, kw, c, o) and, unless null, db (o,) from x (n, h, w, c) and dy (n, ho, wo, o).
// `workspace` holds conv2d_backward_weight_workspace(o, g, db != nullptr) elements.
template <class T>
void conv2d_backward_weight(const T* x, const T* dy, T* dw, T* db, T* workspace, int o, const Geometry& g,
                            Precision precision, cudaStream_t stream);

// Pooling (dilation 1). indices: int32 ih * w + iw of each window's first maximum, or null.
template <class T>
void max_pool2d(const T* x, T* y, std::int32_t* indices, const Geometry& g, cudaStream_t stream);
// indices null: the winners are searched again in x; else x is not read. An index outside
// [0, h*w) routes its gradient nowhere (never out of bounds).
template <class T>
void max_pool2d_backward(const T* dy, const T* x, const std::int32_t* indices, T* dx, const Geometry& g,
                         cudaStream_t stream);
template <class T>
void avg_pool2d(const T* x, T* y, const Geometry& g, cudaStream_t stream);
template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const Geometry& g, cudaStream_t stream);

}  // namespace cuda
}  // namespace zg
