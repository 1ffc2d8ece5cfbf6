// zengrad._cuda: the CUDA kernels. Thin: the Python layer (kernels/_cuda_backend.py) validates the
// CuPy arrays and passes their device pointers, the current CuPy stream and the arrays' device.
// Each function selects that device, releases the GIL, launches on the stream and returns
// without synchronising. The module links the CUDA runtime statically: it imports on machines
// with no GPU or driver, where device_count() is 0.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/kernels.h"

#ifndef ZG_CUDA_ARCHS
#define ZG_CUDA_ARCHS ""
#endif

namespace zg {
namespace {

namespace py = pybind11;
using cuda::Precision;
using Ptr = std::uintptr_t;

// The kernels index rows, columns and pixels with int, with a tile's worth of headroom.
constexpr long kMaxDim = (1L << 31) - 4096;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("zengrad._cuda: ") + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

long dim(long v, const char* what) {
  if (v < 0 || v > kMaxDim)
    throw std::invalid_argument(std::string(what) + " = " + std::to_string(v) + ": the GPU kernels take sizes in [0, " +
                                std::to_string(kMaxDim) + "]");
  return v;
}

template <class T>
T* pointer(Ptr p, const char* what) {
  if (p == 0) throw std::invalid_argument(std::string(what) + ": null device pointer");
  return reinterpret_cast<T*>(p);
}

template <class T>
T* optional_pointer(Ptr p) {
  return reinterpret_cast<T*>(p);
}

int compute_capability(int device) {
  static std::atomic<int> cache[64];  // 0: not read yet
  std::atomic<int>* slot = device >= 0 && device < 64 ? &cache[device] : nullptr;
  if (slot != nullptr && slot->load() != 0) return slot->load();
  int major = 0, minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability");
  const int cc = major * 10 + minor;
  if (slot != nullptr) slot->store(cc);
  return cc;
}

// Makes `device` current for this thread in this module's CUDA runtime (CuPy's runtime is another
// copy: both act on the driver's primary context of the device) and returns the stream.
cudaStream_t enter(int device, Ptr stream) {
  check(cudaSetDevice(device), "selecting the device");
  return reinterpret_cast<cudaStream_t>(stream);
}

// 0: float32 (CUDA cores), 1: TF32, 2: BF16 tensor cores (compute capability 8.0 and newer).
Precision precision_of(int code, int device) {
  if (code < 0 || code > 2) throw std::invalid_argument("precision code must be 0, 1 or 2");
  const auto p = static_cast<Precision>(code);
  if (p != Precision::kFloat32 && compute_capability(device) < 80)
    throw std::invalid_argument("TF32/BF16 matrix products need a GPU of compute capability 8.0 or newer; device " +
                                std::to_string(device) + " has " + std::to_string(compute_capability(device) / 10) +
                                "." + std::to_string(compute_capability(device) % 10));
  return p;
}

// Calls fn(T{}) with T the C++ type of `dtype`.
template <class Fn>
void dispatch(const std::string& dtype, Fn&& fn) {
  if (dtype == "float32")
    fn(float{});
  else if (dtype == "float64")
    fn(double{});
  else
    throw std::invalid_argument("dtype must be 'float32' or 'float64', got '" + dtype + "'");
}

cuda::Geometry geometry(const py::tuple& t) {
  const Window g = window_from(t);  // every field in [0, 2^31), consistent
  return {int(g.n),  int(g.h),  int(g.w),  int(g.c),  int(g.kh), int(g.kw), int(g.ho), int(g.wo),
          int(g.sh), int(g.sw), int(g.dh), int(g.dw), int(g.pt), int(g.pb), int(g.pl), int(g.pr)};
}

// A convolution's implicit GEMMs have P = n*ho*wo, Q = n*h*w and R = kh*kw*c (or kh*kw*o) rows.
cuda::Geometry conv_geometry(const py::tuple& t, long o) {
  const cuda::Geometry g = geometry(t);
  dim(o, "output channels");
  dim(long(g.n) * g.ho * g.wo, "n * ho * wo");
  dim(long(g.n) * g.h * g.w, "n * h * w");
  dim(long(g.kh) * g.kw * g.c, "kh * kw * c");
  dim(long(g.kh) * g.kw * o, "kh * kw * o");
  return g;
}

// Pooling indexes an image's pixels with int, as the CPU kernels.
cuda::Geometry pool_geometry(const py::tuple& t) {
  const cuda::Geometry g = geometry(t);
  if (long(g.h) * g.w >= (1L << 31))
    throw std::invalid_argument("pooling: images of 2^31 pixels or more are not supported");
  return g;
}

void gemm(const std::string& dtype, int precision, bool trans_a, bool trans_b, long m, long n, long k, double alpha,
          Ptr a, long lda, Ptr b, long ldb, double beta, Ptr c, long ldc, Ptr stream, int device) {
  dim(m, "m");
  dim(n, "n");
  dim(k, "k");
  if (m == 0 || n == 0) return;
  const Precision p = precision_of(precision, device);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* pa = k > 0 ? pointer<const T>(a, "a") : nullptr;
    const T* pb = k > 0 ? pointer<const T>(b, "b") : nullptr;
    T* pc = pointer<T>(c, "out");
    py::gil_scoped_release release;
    cuda::gemm<T>(trans_a, trans_b, int(m), int(n), k, T(alpha), pa, lda, pb, ldb, T(beta), pc, ldc, p,
                  enter(device, stream));
  });
}

void conv2d(const std::string& dtype, int precision, Ptr x, Ptr w, Ptr bias, Ptr y, long o,
            const py::tuple& geometry_tuple, bool relu, Ptr stream, int device) {
  const cuda::Geometry g = conv_geometry(geometry_tuple, o);
  if (long(g.n) * g.ho * g.wo == 0) return;
  const Precision p = precision_of(precision, device);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *px = pointer<const T>(x, "x"), *pw = pointer<const T>(w, "w");
    T* py_ = pointer<T>(y, "y");
    py::gil_scoped_release release;
    cuda::conv2d_forward<T>(px, pw, optional_pointer<const T>(bias), py_, int(o), g, relu, p, enter(device, stream));
  });
}

void conv2d_backward_data(const std::string& dtype, int precision, Ptr dy, Ptr w, Ptr dx, long o,
                          const py::tuple& geometry_tuple, Ptr stream, int device) {
  const cuda::Geometry g = conv_geometry(geometry_tuple, o);
  if (long(g.n) * g.h * g.w == 0) return;
  const Precision p = precision_of(precision, device);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = pointer<const T>(dy, "dy");
    const T* pw = pointer<const T>(w, "w");
    T* pdx = pointer<T>(dx, "dx");
    py::gil_scoped_release release;
    cuda::conv2d_backward_data<T>(pdy, pw, pdx, int(o), g, p, enter(device, stream));
  });
}

std::size_t conv2d_backward_weight_workspace(long o, const py::tuple& geometry_tuple, bool with_bias) {
  return cuda::conv2d_backward_weight_workspace(int(dim(o, "output channels")), conv_geometry(geometry_tuple, o),
                                                with_bias);
}

void conv2d_backward_weight(const std::string& dtype, int precision, Ptr x, Ptr dy, Ptr dw, Ptr db, Ptr workspace,
                            std::size_t workspace_size, long o, const py::tuple& geometry_tuple, Ptr stream,
                            int device) {
  const cuda::Geometry g = conv_geometry(geometry_tuple, o);
  const std::size_t needed = cuda::conv2d_backward_weight_workspace(int(o), g, db != 0);
  if (workspace_size < needed || (needed > 0 && workspace == 0))
    throw std::invalid_argument("conv2d_backward_weight: workspace of " + std::to_string(workspace_size) +
                                " elements, needs " + std::to_string(needed));
  const Precision p = precision_of(precision, device);
  const bool empty = long(g.n) * g.ho * g.wo == 0;  // then x and dy may have no memory at all
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* px = empty ? nullptr : pointer<const T>(x, "x");
    const T* pdy = empty ? nullptr : pointer<const T>(dy, "dy");
    T* pdw = pointer<T>(dw, "dw");
    py::gil_scoped_release release;
    cuda::conv2d_backward_weight<T>(px, pdy, pdw, optional_pointer<T>(db), optional_pointer<T>(workspace), int(o), g,
                                    p, enter(device, stream));
  });
}

void max_pool2d(const std::string& dtype, Ptr x, Ptr y, Ptr indices, const py::tuple& geometry_tuple, Ptr stream,
                int device) {
  const cuda::Geometry g = pool_geometry(geometry_tuple);
  if (long(g.n) * g.ho * g.wo * g.c == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* px = pointer<const T>(x, "x");
    T* py_ = pointer<T>(y, "y");
    py::gil_scoped_release release;
    cuda::max_pool2d<T>(px, py_, optional_pointer<std::int32_t>(indices), g, enter(device, stream));
  });
}

void max_pool2d_backward(const std::string& dtype, Ptr dy, Ptr x, Ptr indices, Ptr dx,
                         const py::tuple& geometry_tuple, Ptr stream, int device) {
  const cuda::Geometry g = pool_geometry(geometry_tuple);
  if (long(g.n) * g.h * g.w * g.c == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = pointer<const T>(dy, "dy");
    const T* px = indices != 0 ? optional_pointer<const T>(x) : pointer<const T>(x, "x");
    T* pdx = pointer<T>(dx, "dx");
    py::gil_scoped_release release;
    cuda::max_pool2d_backward<T>(pdy, px, optional_pointer<const std::int32_t>(indices), pdx, g,
                                 enter(device, stream));
  });
}

void avg_pool2d(const std::string& dtype, Ptr x, Ptr y, const py::tuple& geometry_tuple, Ptr stream, int device) {
  const cuda::Geometry g = pool_geometry(geometry_tuple);
  if (long(g.n) * g.ho * g.wo * g.c == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* px = pointer<const T>(x, "x");
    T* py_ = pointer<T>(y, "y");
    py::gil_scoped_release release;
    cuda::avg_pool2d<T>(px, py_, g, enter(device, stream));
  });
}

void avg_pool2d_backward(const std::string& dtype, Ptr dy, Ptr dx, const py::tuple& geometry_tuple, Ptr stream,
                         int device) {
  const cuda::Geometry g = pool_geometry(geometry_tuple);
  if (long(g.n) * g.h * g.w * g.c == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = pointer<const T>(dy, "dy");
    T* pdx = pointer<T>(dx, "dx");
    py::gil_scoped_release release;
    cuda::avg_pool2d_backward<T>(pdy, pdx, g, enter(device, stream));
  });
}

// (count, None), or (0, the runtime's reason) when there is no usable device.
py::tuple device_status() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: leave no error for the next call to find
    return py::make_tuple(0, std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
  }
  if (count == 0) return py::make_tuple(0, std::string("the CUDA runtime sees no device"));
  return py::make_tuple(count, py::none());
}

// CMAKE_CUDA_ARCHITECTURES as built, e.g. "80-real,90-real,90-virtual" -> [80, 90]: the GPUs with
// machine code here (a -virtual entry adds PTX, compiled by the driver for newer GPUs).
std::vector<int> compiled_architectures() {
  std::vector<int> archs;
  std::stringstream list(ZG_CUDA_ARCHS);
  for (std::string item; std::getline(list, item, ',');) {
    if (item.empty() || item.find("virtual") != std::string::npos) continue;
    const int arch = std::stoi(item);
    bool seen = false;
    for (int a : archs) seen = seen || a == arch;
    if (!seen) archs.push_back(arch);
  }
  return archs;
}

}  // namespace
}  // namespace zg

PYBIND11_MODULE(_cuda, m) {
  namespace py = pybind11;
  m.doc() = "zengrad's CUDA kernels on device pointers (call them through zengrad.kernels with CuPy arrays)";
  m.def("device_status", &zg::device_status, "(number of CUDA devices, None) or (0, why none is usable)");
  m.def("device_count", [] { return zg::device_status()[0].cast<int>(); });
  m.def("compute_capability", &zg::compute_capability, py::arg("device"));
  m.def("compiled_architectures", &zg::compiled_architectures);
  m.def("architectures_string", [] { return std::string(ZG_CUDA_ARCHS); });
  m.def("runtime_version", [] {
    int v = 0;
    zg::check(cudaRuntimeGetVersion(&v), "runtime version");
    return v;
  });
  m.def("gemm", &zg::gemm, py::arg("dtype"), py::arg("precision"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("m"), py::arg("n"), py::arg("k"), py::arg("alpha"), py::arg("a"), py::arg("lda"), py::arg("b"),
        py::arg("ldb"), py::arg("beta"), py::arg("c"), py::arg("ldc"), py::arg("stream"), py::arg("device"));
  m.def("conv2d", &zg::conv2d, py::arg("dtype"), py::arg("precision"), py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("y"), py::arg("o"), py::arg("geometry"), py::arg("relu"), py::arg("stream"), py::arg("device"));
  m.def("conv2d_backward_data", &zg::conv2d_backward_data, py::arg("dtype"), py::arg("precision"), py::arg("dy"),
        py::arg("w"), py::arg("dx"), py::arg("o"), py::arg("geometry"), py::arg("stream"), py::arg("device"));
  m.def("conv2d_backward_weight_workspace", &zg::conv2d_backward_weight_workspace, py::arg("o"), py::arg("geometry"),
        py::arg("with_bias"));
  m.def("conv2d_backward_weight", &zg::conv2d_backward_weight, py::arg("dtype"), py::arg("precision"), py::arg("x"),
        py::arg("dy"), py::arg("dw"), py::arg("db"), py::arg("workspace"), py::arg("workspace_size"), py::arg("o"),
        py::arg("geometry"), py::arg("stream"), py::arg("device"));
  m.def("max_pool2d", &zg::max_pool2d, py::arg("dtype"), py::arg("x"), py::arg("y"), py::arg("indices"),
        py::arg("geometry"), py::arg("stream"), py::arg("device"));
  m.def("max_pool2d_backward", &zg::max_pool2d_backward, py::arg("dtype"), py::arg("dy"), py::arg("x"),
        py::arg("indices"), py::arg("dx"), py::arg("geometry"), py::arg("stream"), py::arg("device"));
  m.def("avg_pool2d", &zg::avg_pool2d, py::arg("dtype"), py::arg("x"), py::arg("y"), py::arg("geometry"),
        py::arg("stream"), py::arg("device"));
  m.def("avg_pool2d_backward", &zg::avg_pool2d_backward, py::arg("dtype"), py::arg("dy"), py::arg("dx"),
        py::arg("geometry"), py::arg("stream"), py::arg("device"));
}
