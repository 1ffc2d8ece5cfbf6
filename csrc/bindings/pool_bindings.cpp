// The pooling kernels of zengrad._cpu (checks: checked_args.h). `geometry` is a
// kernels/_validate.Window, worked out (and checked) in Python.
#include <limits>

#include "checked_args.h"
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

// A float array (N, H, W, C) of the geometry's input, none of H, W, C empty (N may be).
std::optional<Operand> pool_input(py::handle x, const Window& g) {
  auto X = plain_array(x, 4, false);
  if (!X || g.h == 0 || g.w == 0 || g.c == 0 || !has_shape(*X, {g.n, g.h, g.w, g.c})) return std::nullopt;
  return X;
}

// x (N, H, W, C) -> a new y (N, Ho, Wo, C), or (y, winners) with the pixel ih * W + iw of each
// window's first maximum (int32); None (declined).
py::object max_pool2d_py(py::handle x, const py::tuple& geometry, bool with_winners) {
  const Window g = pool_window(geometry);
  const auto X = pool_input(x, g);
  if (!X) return py::none();
  Operand Y{new_array({g.n, g.ho, g.wo, g.c}, X->is_float), X->is_float};
  std::optional<Operand> WIN;
  if (with_winners) WIN = Operand{new_index_array({g.n, g.ho, g.wo, g.c}), false};
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    max_pool2d<T>(X->in<T>(), Y.out<T>(), WIN ? WIN->out<int>() : nullptr, g);
  });
  if (WIN) return py::make_tuple(Y.array, WIN->array);
  return Y.array;
}

// dy (N, Ho, Wo, C) and x (N, H, W, C) of one dtype, winners None or int32 (N, Ho, Wo, C), relu_out
// None or like dy -> a new dx; None (declined); False when a winner is outside [0, H*W) (the
// caller says so, by name). The winners are only compared with pixel numbers, never used as addresses.
py::object max_pool2d_backward_py(py::handle dy, py::handle x, py::handle winners, py::handle relu_out,
                                  const py::tuple& geometry) {
  const Window g = pool_window(geometry);
  const auto DY = plain_array(dy, 4, false), X = pool_input(x, g);
  if (!DY || !X || DY->is_float != X->is_float || !has_shape(*DY, {g.n, g.ho, g.wo, g.c})) return py::none();
  std::optional<Operand> WIN, GATE;
  if (!winners.is_none()) {
    WIN = plain_int_array(winners, 4, 4);
    if (!WIN || !has_shape(*WIN, {g.n, g.ho, g.wo, g.c})) return py::none();
  }
  if (!relu_out.is_none()) {
    GATE = plain_array(relu_out, 4, false);
    if (!GATE || GATE->is_float != DY->is_float || !has_shape(*GATE, {g.n, g.ho, g.wo, g.c})) return py::none();
  }
  Operand DX{new_array({g.n, g.h, g.w, g.c}, X->is_float), X->is_float};
  bool in_image = true;
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    in_image = max_pool2d_backward<T>(DY->in<T>(), X->in<T>(), WIN ? WIN->in<int>() : nullptr,
                                      GATE ? GATE->in<T>() : nullptr, DX.out<T>(), g);
  });
  if (!in_image) return py::bool_(false);
  return DX.array;
}

// x (N, H, W, C) -> a new y (N, Ho, Wo, C); None (declined).
py::object avg_pool2d_py(py::handle x, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const auto X = pool_input(x, g);
  if (!X) return py::none();
  Operand Y{new_array({g.n, g.ho, g.wo, g.c}, X->is_float), X->is_float};
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    avg_pool2d<T>(X->in<T>(), Y.out<T>(), g);
  });
  return Y.array;
}

// dy (N, Ho, Wo, C), x (N, H, W, C) of one dtype (x for its shape only) -> a new dx; None (declined).
py::object avg_pool2d_backward_py(py::handle dy, py::handle x, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  const auto DY = plain_array(dy, 4, false), X = pool_input(x, g);
  if (!DY || !X || DY->is_float != X->is_float || !has_shape(*DY, {g.n, g.ho, g.wo, g.c})) return py::none();
  Operand DX{new_array({g.n, g.h, g.w, g.c}, X->is_float), X->is_float};
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    avg_pool2d_backward<T>(DY->in<T>(), DX.out<T>(), g);
  });
  return DX.array;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool2d", &max_pool2d_py, py::arg("x"), py::arg("geometry"), py::arg("with_winners"),
        "max pooling: a new (N, Ho, Wo, C) array, or (y, winners); None when declined");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("dy"), py::arg("x"), py::arg("winners"),
        py::arg("relu_output"), py::arg("geometry"),
        "max pooling backward (of relu(max_pool2d(x)) with relu_output): a new (N, H, W, C) array; None when "
        "declined, False when a winner is outside [0, H*W)");
  m.def("avg_pool2d", &avg_pool2d_py, py::arg("x"), py::arg("geometry"),
        "average pooling: a new (N, Ho, Wo, C) array, or None when declined");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("dy"), py::arg("x"), py::arg("geometry"),
        "average pooling backward: a new (N, H, W, C) array, or None when declined");
}

}  // namespace zg
