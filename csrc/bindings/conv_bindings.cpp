// The convolution kernels of zengrad._cpu (checks: checked_args.h). `geometry` is a
// kernels/_validate.Window for the forward convolution, worked out (and checked) in Python.
#include "checked_args.h"
#include "cpu/conv2d.h"

namespace zg {
namespace {

// Sizes Python refuses (an empty image, channel or filter dimension); N may be 0.
bool nonempty(const Window& g, long o) { return g.h > 0 && g.w > 0 && g.c > 0 && o > 0; }

// y = conv2d(x, w) + b, then max(y, 0) when relu: x (N, H, W, C) and w (kh, kw, C, O) of one dtype,
// b (O,) or None -> a new y (N, Ho, Wo, O); None (declined).
py::object conv2d_py(py::handle x, py::handle w, py::handle b, const py::tuple& geometry, bool relu) {
  const Window g = window_from(geometry);
  const auto X = plain_array(x, 4, false), W = plain_array(w, 4, false);
  if (!X || !W || X->is_float != W->is_float) return py::none();
  const long o = W->dim(3);
  if (!nonempty(g, o) || !has_shape(*X, {g.n, g.h, g.w, g.c}) || !has_shape(*W, {g.kh, g.kw, g.c, o}))
    return py::none();
  std::optional<Operand> B;
  if (!b.is_none()) {
    B = plain_array(b, 1, false);
    if (!B || B->is_float != X->is_float || B->dim(0) != o) return py::none();
  }
  Operand Y{new_array({g.n, g.ho, g.wo, o}, X->is_float), X->is_float};
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    conv2d_forward<T>(X->in<T>(), W->in<T>(), B ? B->in<T>() : nullptr, Y.out<T>(), o, g, relu);
  });
  return Y.array;
}

// dL/dx: dy (N, Ho, Wo, O) and w (kh, kw, C, O) of one dtype, x_shape the tuple (N, H, W, C)
// -> a new dx; None (declined).
py::object conv2d_backward_data_py(py::handle dy, py::handle w, py::handle x_shape, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const auto DY = plain_array(dy, 4, false), W = plain_array(w, 4, false);
  if (!DY || !W || DY->is_float != W->is_float) return py::none();
  const long o = W->dim(3);
  if (!nonempty(g, o) || !is_shape(x_shape, {g.n, g.h, g.w, g.c}) || !has_shape(*W, {g.kh, g.kw, g.c, o}) ||
      !has_shape(*DY, {g.n, g.ho, g.wo, o}))
    return py::none();
  Operand DX{new_array({g.n, g.h, g.w, g.c}, DY->is_float), DY->is_float};
  run_kernel(DY->is_float, [&](auto zero) {
    using T = decltype(zero);
    conv2d_backward_data<T>(DY->in<T>(), W->in<T>(), DX.out<T>(), o, g);
  });
  return DX.array;
}

// dL/dw (and dL/db = dy summed over N, Ho, Wo when with_bias): x (N, H, W, C) and dy (N, Ho, Wo, O)
// of one dtype, w_shape the tuple (kh, kw, C, O) -> a new dw, or (dw, db); None (declined).
py::object conv2d_backward_weight_py(py::handle x, py::handle dy, py::handle w_shape, const py::tuple& geometry,
                                     bool with_bias) {
  const Window g = window_from(geometry);
  const auto X = plain_array(x, 4, false), DY = plain_array(dy, 4, false);
  if (!X || !DY || X->is_float != DY->is_float) return py::none();
  const long o = DY->dim(3);
  if (!nonempty(g, o) || !has_shape(*X, {g.n, g.h, g.w, g.c}) || !is_shape(w_shape, {g.kh, g.kw, g.c, o}) ||
      !has_shape(*DY, {g.n, g.ho, g.wo, o}))
    return py::none();
  Operand DW{new_array({g.kh, g.kw, g.c, o}, X->is_float), X->is_float};
  std::optional<Operand> DB;
  if (with_bias) DB = Operand{new_array({o}, X->is_float), X->is_float};
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    conv2d_backward_weight<T>(X->in<T>(), DY->in<T>(), DW.out<T>(), DB ? DB->out<T>() : nullptr, o, g);
  });
  if (DB) return py::make_tuple(DW.array, DB->array);
  return DW.array;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d", &conv2d_py, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("geometry"), py::arg("relu"),
        "conv2d(x, w) + b (then ReLU): a new (N, Ho, Wo, O) array, or None when declined");
  m.def("conv2d_backward_data", &conv2d_backward_data_py, py::arg("dy"), py::arg("w"), py::arg("x_shape"),
        py::arg("geometry"), "dL/dx of conv2d: a new (N, H, W, C) array, or None when declined");
  m.def("conv2d_backward_weight", &conv2d_backward_weight_py, py::arg("x"), py::arg("dy"), py::arg("w_shape"),
        py::arg("geometry"), py::arg("with_bias"),
        "dL/dw of conv2d (and dL/db with with_bias: (dw, db)): new arrays, or None when declined");
}

}  // namespace zg
