// The CUDA kernels of csrc/cuda, compiled as C++ for the CPU emulation (include/zg_emulation.h),
// behind a C interface that tests/test_cuda_emulation.py calls through ctypes with NumPy arrays.
// Build: c++ -std=c++17 -shared -fPIC -I csrc -I tests/cuda_emulation/include <this file>
#include <exception>
#include <string>

#include "cuda/conv2d.cu"
#include "cuda/gemm.cu"
#include "cuda/pool2d.cu"

namespace {

using zg::cuda::Geometry;
using zg::cuda::Precision;

std::string& last_error() {
  static std::string e;
  return e;
}

Geometry geometry(const long* v) {
  return {int(v[0]), int(v[1]), int(v[2]),  int(v[3]),  int(v[4]),  int(v[5]),  int(v[6]),  int(v[7]),
          int(v[8]), int(v[9]), int(v[10]), int(v[11]), int(v[12]), int(v[13]), int(v[14]), int(v[15])};
}

// Runs fn(T{}) for the dtype (f64: double, else float); 0, or 1 with the message kept.
template <class Fn>
int run(int f64, Fn&& fn) {
  try {
    if (f64)
      fn(double{});
    else
      fn(float{});
    return 0;
  } catch (const std::exception& e) {
    last_error() = e.what();
    return 1;
  }
}

template <class T>
const T* in(const void* p) {
  return static_cast<const T*>(p);
}
template <class T>
T* out(void* p) {
  return static_cast<T*>(p);
}

}  // namespace

extern "C" {

const char* zg_emu_error() { return last_error().c_str(); }

int zg_emu_gemm(int f64, int precision, int trans_a, int trans_b, int m, int n, long k, double alpha, const void* a,
                long lda, const void* b, long ldb, double beta, void* c, long ldc) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::gemm<T>(trans_a, trans_b, m, n, k, T(alpha), in<T>(a), lda, in<T>(b), ldb, T(beta), out<T>(c), ldc,
                      Precision(precision), nullptr);
  });
}

int zg_emu_conv2d(int f64, int precision, const void* x, const void* w, const void* bias, void* y, int o,
                  const long* g, int relu) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::conv2d_forward<T>(in<T>(x), in<T>(w), in<T>(bias), out<T>(y), o, geometry(g), relu,
                                Precision(precision), nullptr);
  });
}

int zg_emu_conv2d_backward_data(int f64, int precision, const void* dy, const void* w, void* dx, int o,
                                const long* g) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::conv2d_backward_data<T>(in<T>(dy), in<T>(w), out<T>(dx), o, geometry(g), Precision(precision),
                                      nullptr);
  });
}

long zg_emu_conv2d_backward_weight_workspace(int o, const long* g, int with_bias) {
  return long(zg::cuda::conv2d_backward_weight_workspace(o, geometry(g), with_bias));
}

int zg_emu_conv2d_backward_weight(int f64, int precision, const void* x, const void* dy, void* dw, void* db,
                                  void* workspace, int o, const long* g) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::conv2d_backward_weight<T>(in<T>(x), in<T>(dy), out<T>(dw), out<T>(db), out<T>(workspace), o,
                                        geometry(g), Precision(precision), nullptr);
  });
}

int zg_emu_max_pool2d(int f64, const void* x, void* y, int* indices, const long* g) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::max_pool2d<T>(in<T>(x), out<T>(y), indices, geometry(g), nullptr);
  });
}

int zg_emu_max_pool2d_backward(int f64, const void* dy, const void* x, const int* indices, void* dx, const long* g) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::max_pool2d_backward<T>(in<T>(dy), in<T>(x), indices, out<T>(dx), geometry(g), nullptr);
  });
}

int zg_emu_avg_pool2d(int f64, const void* x, void* y, const long* g) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::avg_pool2d<T>(in<T>(x), out<T>(y), geometry(g), nullptr);
  });
}

int zg_emu_avg_pool2d_backward(int f64, const void* dy, void* dx, const long* g) {
  return run(f64, [&](auto tag) {
    using T = decltype(tag);
    zg::cuda::avg_pool2d_backward<T>(in<T>(dy), out<T>(dx), geometry(g), nullptr);
  });
}

}  // extern "C"
