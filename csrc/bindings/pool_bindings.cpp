// pybind11 bindings of the CPU pooling kernels. Python has already validated every argument;
// the checks here only guarantee that no call can read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cpu/pool2d.h"

namespace py = pybind11;

namespace zg {
namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;

// g: the 16 ints (n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr) of _validate.Window.
Window to_window(const py::tuple& t) {
  if (t.size() != 16) throw std::invalid_argument("pool geometry must be a tuple of 16 ints");
  long v[16];
  for (int i = 0; i < 16; ++i) {
    try {
      v[i] = t[i].cast<long>();
    } catch (const py::cast_error&) {
      throw std::invalid_argument("pool geometry must be a tuple of 16 ints");
    }
  }
  const Window g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                 v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]};
  // Bounded fields keep every product of two of them, and so all index arithmetic, in a long.
  constexpr long kLimit = 1L << 31;
  for (int i = 0; i < 16; ++i) {
    const bool at_least_one = (i >= 4 && i <= 5) || (i >= 8 && i <= 11);  // kh, kw, strides, dilations
    if (v[i] < (at_least_one ? 1 : 0) || v[i] >= kLimit)
      throw std::invalid_argument("pool geometry field " + std::to_string(i) + " out of range: " +
                                  std::to_string(v[i]));
  }
  const long ho = (g.h + g.pt + g.pb - (g.kh - 1) * g.dh - 1) / g.sh + 1;
  const long wo = (g.w + g.pl + g.pr - (g.kw - 1) * g.dw - 1) / g.sw + 1;
  if (g.h + g.pt + g.pb < (g.kh - 1) * g.dh + 1 || g.w + g.pl + g.pr < (g.kw - 1) * g.dw + 1 ||
      g.ho != ho || g.wo != wo)
    throw std::invalid_argument("pool geometry is inconsistent");
  return g;
}

template <class T>
void check_shape(const Array<T>& a, const char* name, long n, long h, long w, long c) {
  if (a.ndim() != 4 || a.shape(0) != n || a.shape(1) != h || a.shape(2) != w || a.shape(3) != c)
    throw std::invalid_argument(std::string("pool kernel: '") + name + "' does not match the geometry");
}

template <class T>
void max_pool2d_py(const Array<T>& x, Array<T> y, const py::tuple& t) {
  const Window g = to_window(t);
  check_shape(x, "x", g.n, g.h, g.w, g.c);
  check_shape(y, "y", g.n, g.ho, g.wo, g.c);
  const T* xp = x.data();
  T* yp = y.mutable_data();
  py::gil_scoped_release release;
  max_pool2d(xp, yp, g);
}

template <class T>
void max_pool2d_backward_py(const Array<T>& dy, const Array<T>& x, Array<T> dx, const py::tuple& t) {
  const Window g = to_window(t);
  check_shape(dy, "dy", g.n, g.ho, g.wo, g.c);
  check_shape(x, "x", g.n, g.h, g.w, g.c);
  check_shape(dx, "dx", g.n, g.h, g.w, g.c);
  const T* dyp = dy.data();
  const T* xp = x.data();
  T* dxp = dx.mutable_data();
  py::gil_scoped_release release;
  max_pool2d_backward(dyp, xp, dxp, g);
}

template <class T>
void avg_pool2d_py(const Array<T>& x, Array<T> y, const py::tuple& t) {
  const Window g = to_window(t);
  check_shape(x, "x", g.n, g.h, g.w, g.c);
  check_shape(y, "y", g.n, g.ho, g.wo, g.c);
  const T* xp = x.data();
  T* yp = y.mutable_data();
  py::gil_scoped_release release;
  avg_pool2d(xp, yp, g);
}

template <class T>
void avg_pool2d_backward_py(const Array<T>& dy, Array<T> dx, const py::tuple& t) {
  const Window g = to_window(t);
  check_shape(dy, "dy", g.n, g.ho, g.wo, g.c);
  check_shape(dx, "dx", g.n, g.h, g.w, g.c);
  const T* dyp = dy.data();
  T* dxp = dx.mutable_data();
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
