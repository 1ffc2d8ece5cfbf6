// pybind11 bindings of the CPU pooling kernels (see common.h for the checks).
#include <pybind11/stl.h>

#include <limits>
#include <optional>

#include "common.h"
#include "cpu/pool2d.h"

namespace zg {
namespace {

// Pooling indexes an image's pixels with int.
Window pool_window(const py::tuple& geometry) {
  const Window g = window_from(geometry);
  if (g.h * g.w > std::numeric_limits<int>::max())
    throw std::invalid_argument("pooling: images of 2^31 pixels or more are not supported");
  return g;
}

template <class T>
void max_pool2d_py(const Array<T>& x, Array<T> y, std::optional<Array<int>> winners, const py::tuple& geometry) {
  const Window g = pool_window(geometry);
  const T* xp = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  T* yp = out_ptr<T>(y, g.n * g.ho * g.wo * g.c, "y");
  int* wp = winners ? out_ptr<int>(*winners, g.n * g.ho * g.wo * g.c, "winners") : nullptr;
  py::gil_scoped_release release;
  max_pool2d(xp, yp, wp, g);
}

template <class T>
bool max_pool2d_backward_py(const Array<T>& dy, const Array<T>& x, const std::optional<Array<int>>& winners,
                            Array<T> dx, const py::tuple& geometry) {
  const Window g = pool_window(geometry);
  const T* dyp = in_ptr<T>(dy, g.n * g.ho * g.wo * g.c, "dy");
  const T* xp = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  const int* wp = winners ? in_ptr<int>(*winners, g.n * g.ho * g.wo * g.c, "winners") : nullptr;
  T* dxp = out_ptr<T>(dx, g.n * g.h * g.w * g.c, "dx");
  // The kernel range-checks the winners as it reads them and says so (False: Python raises,
  // naming the argument); it only compares them with pixel numbers, so no value can send it
  // out of bounds.
  py::gil_scoped_release release;
  return max_pool2d_backward(dyp, xp, wp, dxp, g);
}

template <class T>
void avg_pool2d_py(const Array<T>& x, Array<T> y, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const T* xp = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  T* yp = out_ptr<T>(y, g.n * g.ho * g.wo * g.c, "y");
  py::gil_scoped_release release;
  avg_pool2d(xp, yp, g);
}

template <class T>
void avg_pool2d_backward_py(const Array<T>& dy, Array<T> dx, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const T* dyp = in_ptr<T>(dy, g.n * g.ho * g.wo * g.c, "dy");
  T* dxp = out_ptr<T>(dx, g.n * g.h * g.w * g.c, "dx");
  py::gil_scoped_release release;
  avg_pool2d_backward(dyp, dxp, g);
}

// noconvert: pybind11 then picks the overload by dtype and never copies an array, so the
// outputs written are the caller's own.
template <class T>
void bind_for(py::module_& m) {
  m.def("max_pool2d", &max_pool2d_py<T>, py::arg("x").noconvert(), py::arg("y").noconvert(),
        py::arg("winners").noconvert(), py::arg("g"),
        "max pooling: x (N, H, W, C) -> y (N, Ho, Wo, C) and, unless None, the winners' pixels, in place");
  m.def("max_pool2d_backward", &max_pool2d_backward_py<T>, py::arg("dy").noconvert(), py::arg("x").noconvert(),
        py::arg("winners").noconvert(), py::arg("dx").noconvert(), py::arg("g"),
        "max pooling backward: dy, x (or the forward's winners) -> dx (N, H, W, C), in place; False when a "
        "winner is outside [0, H*W)");
  m.def("avg_pool2d", &avg_pool2d_py<T>, py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("g"),
        "average pooling: x (N, H, W, C) -> y (N, Ho, Wo, C), written in place");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py<T>, py::arg("dy").noconvert(), py::arg("dx").noconvert(),
        py::arg("g"), "average pooling backward: dy -> dx (N, H, W, C), written in place");
}

}  // namespace

void bind_pool(py::module_& m) {
  bind_for<float>(m);
  bind_for<double>(m);
}

}  // namespace zg
