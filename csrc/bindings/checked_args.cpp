#include "checked_args.h"

#include <Python.h>

#include <cmath>

#include "aligned_arrays.h"

namespace zg {
namespace {

using npy = py::detail::npy_api;

bool native_order(const py::dtype& dtype) {
  const char order = dtype.byteorder();  // '=' native, or '<' / '>' spelled out ('|' for bytes)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return order == '=' || order == '<';
#else
  return order == '=' || order == '>';
#endif
}

// The array behind `h` when it is a C-contiguous NumPy array of `ndim` dimensions (any when -1),
// writeable when asked; its dtype is the caller's to check.
std::optional<py::array> contiguous_array(py::handle h, int ndim, bool writeable) {
  if (!py::isinstance<py::array>(h)) return std::nullopt;
  auto a = py::reinterpret_borrow<py::array>(h);
  if ((ndim >= 0 && a.ndim() != ndim) || !(a.flags() & py::array::c_style) || (writeable && !a.writeable()))
    return std::nullopt;
  return a;
}

}  // namespace

std::optional<Operand> plain_array(py::handle h, int ndim, bool writeable) {
  auto a = contiguous_array(h, ndim, writeable);
  if (!a) return std::nullopt;
  const py::dtype dtype = a->dtype();
  const int type = dtype.num();
  if ((type != npy::NPY_FLOAT_ && type != npy::NPY_DOUBLE_) || !native_order(dtype)) return std::nullopt;
  return Operand{std::move(*a), type == npy::NPY_FLOAT_};
}

std::optional<Operand> plain_int_array(py::handle h, int ndim, int bytes) {
  auto a = contiguous_array(h, ndim, false);
  if (!a) return std::nullopt;
  const py::dtype dtype = a->dtype();
  if (dtype.kind() != 'i' || dtype.itemsize() != bytes || !native_order(dtype)) return std::nullopt;
  return Operand{std::move(*a), false};
}

bool same_kind(const Operand& x, const Operand& y) {
  if (x.is_float != y.is_float || x.array.ndim() != y.array.ndim()) return false;
  for (int d = 0; d < x.array.ndim(); ++d)
    if (x.dim(d) != y.dim(d)) return false;
  return true;
}

bool has_shape(const Operand& x, std::initializer_list<long> shape) {
  if (x.array.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  int d = 0;
  for (long size : shape)
    if (x.dim(d++) != size) return false;
  return true;
}

bool is_shape(py::handle h, std::initializer_list<long> shape) {
  PyObject* t = h.ptr();
  if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != static_cast<Py_ssize_t>(shape.size())) return false;
  Py_ssize_t i = 0;
  for (long size : shape) {
    PyObject* v = PyTuple_GET_ITEM(t, i++);
    if (!PyLong_CheckExact(v)) return false;
    int overflow = 0;
    const long value = PyLong_AsLongAndOverflow(v, &overflow);
    if (overflow || value != size) {
      PyErr_Clear();
      return false;
    }
  }
  return true;
}

bool apart(const Operand& x, const Operand& y) {
  const long xb = static_cast<long>(x.array.nbytes()), yb = static_cast<long>(y.array.nbytes());
  return xb == 0 || yb == 0 || x.begin() + xb <= y.begin() || y.begin() + yb <= x.begin();
}

std::optional<double> finite_number(py::handle h) {
  double v;
  if (PyFloat_CheckExact(h.ptr())) {
    v = PyFloat_AS_DOUBLE(h.ptr());
  } else if (PyLong_CheckExact(h.ptr())) {
    int overflow = 0;
    const long long i = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
    if (overflow || (i == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return std::nullopt;
    }
    v = static_cast<double>(i);
  } else {
    return std::nullopt;
  }
  return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

namespace {

py::array aligned(int ndim, const long* shape, int type_number) {
  return py::reinterpret_steal<py::array>(aligned_array(ndim, shape, type_number).release());
}

int float_type(bool is_float) { return is_float ? npy::NPY_FLOAT_ : npy::NPY_DOUBLE_; }

}  // namespace

py::array new_array(std::initializer_list<long> shape, bool is_float) {
  return aligned(static_cast<int>(shape.size()), shape.begin(), float_type(is_float));
}

py::array new_array_like(const Operand& x) {
  const int ndim = static_cast<int>(x.array.ndim());
  long shape[64];  // NumPy allows at most 64 dimensions
  for (int d = 0; d < ndim; ++d) shape[d] = x.dim(d);
  return aligned(ndim, shape, float_type(x.is_float));
}

py::array new_index_array(std::initializer_list<long> shape) {
  return aligned(static_cast<int>(shape.size()), shape.begin(), npy::NPY_INT32_);
}

}  // namespace zg
