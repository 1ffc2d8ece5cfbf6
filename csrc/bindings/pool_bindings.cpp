// pybind11 bindings of the CPU pooling kernels (see common.h for the checks).
#include "common.h"
#include "cpu/pool2d.h"

namespace zg {
namespace {

template <class T>
void max_pool2d_py(const Array<T>& x, Array<T> y, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const T* xp = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  T* yp = out_ptr<T>(y, g.n * g.ho * g.wo * g.c, "y");
  py::gil_scoped_release release;
  max_pool2d(xp, yp, g);
}

template <class T>
void max_pool2d_backward_py(const Array<T>& dy, const Array<T>& x, Array<T> dx, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const T* dyp = in_ptr<T>(dy, g.n * g.ho * g.wo * g.c, "dy");
  const T* xp = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  T* dxp = out_ptr<T>(dx, g.n * g.h * g.w * g.c, "dx");
  py::gil_scoped_release release;
  max_pool2d_backward(dyp, xp, dxp, g);
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
  m.def("max_pool2d", &max_pool2d_py<T>, py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("g"),
        "max pooling: x (N, H, W, C) -> y (N, Ho, Wo, C), written in place");
  m.def("max_pool2d_backward", &max_pool2d_backward_py<T>, py::arg("dy").noconvert(), py::arg("x").noconvert(),
        py::arg("dx").noconvert(), py::arg("g"), "max pooling backward: dy, x -> dx (N, H, W, C), written in place");
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
