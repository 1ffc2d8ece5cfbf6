// zengrad._cpu: the CPU kernels. Each takes Python objects, checks them in C (checked_args.h),
// releases the GIL and runs; for anything but the common call it declines (None / False) and
// zengrad.kernels checks in Python. Outputs are new arrays with 64-byte aligned data.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "aligned_arrays.h"
#include "checked_args.h"
#include "cpu/cpu_features.h"
#include "cpu/cross_entropy.h"
#include "cpu/dense.h"
#include "cpu/elementwise.h"
#include "cpu/gemm/gemm.h"
#include "cpu/threading.h"

namespace zg {
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);

namespace {

// out = act(alpha op(a) op(b) + beta out + bias): operands 2-D and of one dtype, flags Python
// bools, `out` absent (then new, beta ignored) or of the result's dtype and shape, writeable and
// apart from a, b and bias; bias absent or of shape (n,). Returns out, or None (declined).
py::object gemm_py(py::handle a, py::handle b, py::handle out, py::handle trans_a, py::handle trans_b, py::handle alpha,
                   py::handle beta, py::handle bias, py::handle relu) {
  const auto A = plain_array(a, 2, false), B = plain_array(b, 2, false);
  const auto al = finite_number(alpha), be = finite_number(beta);
  if (!A || !B || A->is_float != B->is_float || !PyBool_Check(trans_a.ptr()) || !PyBool_Check(trans_b.ptr()) || !al ||
      !be || !PyBool_Check(relu.ptr()))
    return py::none();
  const bool ta = trans_a.ptr() == Py_True, tb = trans_b.ptr() == Py_True;
  const long m = A->dim(ta ? 1 : 0), k = A->dim(ta ? 0 : 1), n = B->dim(tb ? 0 : 1);
  if (B->dim(tb ? 1 : 0) != k) return py::none();
  std::optional<Operand> Bias;
  if (!bias.is_none()) {
    Bias = plain_array(bias, 1, false);
    if (!Bias || Bias->is_float != A->is_float || Bias->dim(0) != n) return py::none();
  }
  std::optional<Operand> C;
  double beta_used = *be;
  if (out.is_none()) {
    C = Operand{new_array({m, n}, A->is_float), A->is_float};
    beta_used = 0.0;
  } else {
    C = plain_array(out, 2, true);
    if (!C || C->is_float != A->is_float || C->dim(0) != m || C->dim(1) != n || !apart(*C, *A) || !apart(*C, *B) ||
        (Bias && !apart(*C, *Bias)))
      return py::none();
  }
  const long lda = A->dim(1), ldb = B->dim(1);
  run_kernel(A->is_float, [&](auto zero) {
    using T = decltype(zero);
    const Epilogue<T> epilogue{Bias ? Bias->in<T>() : nullptr, relu.ptr() == Py_True};
    gemm<T>(ta, tb, m, n, k, T(*al), A->in<T>(), lda, B->in<T>(), ldb, T(beta_used), C->out<T>(), n, epilogue);
  });
  return C->array;
}

// A dense layer's gradients: dy (N, out), x (N, in), w (in, out) and relu_output (None, or y
// (N, out)) of one float dtype; with_dx, with_dw, with_bias Python bools. Returns (dx, dw, db),
// new arrays, each None unless asked; or None (declined).
py::object dense_backward_py(py::handle dy, py::handle x, py::handle w, py::handle relu_output, py::handle with_dx,
                             py::handle with_dw, py::handle with_bias) {
  const auto DY = plain_array(dy, 2, false), X = plain_array(x, 2, false), W = plain_array(w, 2, false);
  if (!DY || !X || !W || !PyBool_Check(with_dx.ptr()) || !PyBool_Check(with_dw.ptr()) ||
      !PyBool_Check(with_bias.ptr()))
    return py::none();
  const long n = DY->dim(0), out = DY->dim(1), in = X->dim(1);
  if (X->is_float != DY->is_float || X->dim(0) != n || !has_shape(*W, {in, out}) || W->is_float != DY->is_float)
    return py::none();
  std::optional<Operand> Y;
  if (!relu_output.is_none()) {
    Y = plain_array(relu_output, 2, false);
    if (!Y || !same_kind(*Y, *DY)) return py::none();
  }
  const bool is_float = DY->is_float;
  std::optional<Operand> DX, DW, DB;
  if (with_dx.ptr() == Py_True) DX = Operand{new_array({n, in}, is_float), is_float};
  if (with_dw.ptr() == Py_True) DW = Operand{new_array({in, out}, is_float), is_float};
  if (with_bias.ptr() == Py_True) DB = Operand{new_array({out}, is_float), is_float};
  run_kernel(is_float, [&](auto zero) {
    using T = decltype(zero);
    dense_backward<T>(DY->in<T>(), X->in<T>(), W->in<T>(), Y ? Y->in<T>() : nullptr, n, in, out,
                      DX ? DX->out<T>() : nullptr, DW ? DW->out<T>() : nullptr, DB ? DB->out<T>() : nullptr);
  });
  const auto result = [](const std::optional<Operand>& r) { return r ? py::object(r->array) : py::object(py::none()); };
  return py::make_tuple(result(DX), result(DW), result(DB));
}

// One parameter's Adam step: its four arrays, checked.
struct AdamStep {
  Operand param, grad, m, v;
};

// param, grad, m and v of one dtype and shape, param, m and v writeable and apart from each other.
std::optional<AdamStep> adam_step(py::handle param, py::handle grad, py::handle m, py::handle v) {
  auto P = plain_array(param, -1, true), M = plain_array(m, -1, true), V = plain_array(v, -1, true);
  const auto G = plain_array(grad, -1, false);
  if (!P || !G || !M || !V || !same_kind(*P, *G) || !same_kind(*M, *G) || !same_kind(*V, *G) || !apart(*P, *M) ||
      !apart(*P, *V) || !apart(*M, *V))
    return std::nullopt;
  return AdamStep{*P, *G, *M, *V};
}

// Item i of a list or tuple (borrowed).
py::handle item(py::handle sequence, Py_ssize_t i) {
  return PyList_Check(sequence.ptr()) ? PyList_GET_ITEM(sequence.ptr(), i) : PyTuple_GET_ITEM(sequence.ptr(), i);
}

bool is_sequence(py::handle h) { return PyList_Check(h.ptr()) || PyTuple_Check(h.ptr()); }

// One Adam step in place: param, grad, m and v arrays as adam_step takes them, or four lists (or
// tuples) of such arrays, of one length, each parameter updated as alone, in order; the four
// numbers finite. True when done, False (declined: nothing updated) when any of it is not so.
bool adam_update_py(py::handle param, py::handle grad, py::handle m, py::handle v, py::handle alpha, py::handle beta_1,
                    py::handle beta_2, py::handle epsilon) {
  const auto a = finite_number(alpha), b1 = finite_number(beta_1), b2 = finite_number(beta_2), e = finite_number(epsilon);
  if (!a || !b1 || !b2 || !e) return false;
  std::vector<AdamStep> steps;
  if (is_sequence(param)) {
    const Py_ssize_t count = Py_SIZE(param.ptr());
    for (py::handle other : {grad, m, v})
      if (!is_sequence(other) || Py_SIZE(other.ptr()) != count) return false;
    for (Py_ssize_t i = 0; i < count; ++i) {
      auto step = adam_step(item(param, i), item(grad, i), item(m, i), item(v, i));
      if (!step) return false;
      steps.push_back(std::move(*step));
    }
  } else {
    auto step = adam_step(param, grad, m, v);
    if (!step) return false;
    steps.push_back(std::move(*step));
  }
  for (AdamStep& s : steps) {
    const long n = static_cast<long>(s.grad.array.size());
    run_kernel(s.grad.is_float, [&](auto zero) {
      using T = decltype(zero);
      adam_update<T>(s.param.out<T>(), s.grad.in<T>(), s.m.out<T>(), s.v.out<T>(), n, *a, *b1, *b2, *e);
    });
  }
  return true;
}

// max(x, 0) (NaN stays NaN): x a float array of any shape -> a new array; None (declined).
py::object relu_py(py::handle x) {
  const auto X = plain_array(x, -1, false);
  if (!X) return py::none();
  Operand Y{new_array_like(*X), X->is_float};
  const long n = static_cast<long>(X->array.size());
  run_kernel(X->is_float, [&](auto zero) {
    using T = decltype(zero);
    relu<T>(X->in<T>(), Y.out<T>(), n);
  });
  return Y.array;
}

// dy where y > 0, else 0: dy and y of one dtype and shape -> a new array; None (declined).
py::object relu_backward_py(py::handle dy, py::handle y) {
  const auto DY = plain_array(dy, -1, false), Y = plain_array(y, -1, false);
  if (!DY || !Y || !same_kind(*DY, *Y)) return py::none();
  Operand DX{new_array_like(*DY), DY->is_float};
  const long n = static_cast<long>(DY->array.size());
  run_kernel(DY->is_float, [&](auto zero) {
    using T = decltype(zero);
    relu_backward<T>(DY->in<T>(), Y->in<T>(), DX.out<T>(), n);
  });
  return DX.array;
}

// Softmax cross-entropy: logits (N, C) float, C > 0, labels (N,) int64 -> (loss, probs), a new 0-d
// array (the mean over rows) and a new (N, C) one; None (declined); False when a label is
// outside [0, C) (the caller says so, by name).
py::object softmax_cross_entropy_py(py::handle logits, py::handle labels) {
  const auto Z = plain_array(logits, 2, false);
  const auto L = plain_int_array(labels, 1, 8);
  if (!Z || !L || Z->dim(1) == 0 || L->dim(0) != Z->dim(0)) return py::none();
  const long n = Z->dim(0), c = Z->dim(1);
  Operand P{new_array({n, c}, Z->is_float), Z->is_float}, LOSS{new_array({}, Z->is_float), Z->is_float};
  bool in_range = true;
  run_kernel(Z->is_float, [&](auto zero) {
    using T = decltype(zero);
    in_range = softmax_cross_entropy<T>(Z->in<T>(), L->in<std::int64_t>(), n, c, P.out<T>(), LOSS.out<T>());
  });
  if (!in_range) return py::bool_(false);
  return py::make_tuple(LOSS.array, P.array);
}

// Its gradient: probs (N, C) and dloss (0-d) of one float dtype, labels (N,) int64 -> a new dz
// (N, C) = (probs - onehot(labels)) * (dloss / N); None (declined); False for a label outside [0, C).
py::object softmax_cross_entropy_backward_py(py::handle probs, py::handle labels, py::handle dloss) {
  const auto P = plain_array(probs, 2, false), G = plain_array(dloss, 0, false);
  const auto L = plain_int_array(labels, 1, 8);
  if (!P || !G || !L || G->is_float != P->is_float || P->dim(1) == 0 || L->dim(0) != P->dim(0)) return py::none();
  const long n = P->dim(0), c = P->dim(1);
  Operand DZ{new_array({n, c}, P->is_float), P->is_float};
  bool in_range = true;
  run_kernel(P->is_float, [&](auto zero) {
    using T = decltype(zero);
    in_range = softmax_cross_entropy_backward<T>(P->in<T>(), L->in<std::int64_t>(), n, c, *G->in<T>(), DZ.out<T>());
  });
  if (!in_range) return py::bool_(false);
  return DZ.array;
}

}  // namespace
}  // namespace zg

PYBIND11_MODULE(_cpu, m) {
  namespace py = pybind11;
  m.doc() = "zengrad's compiled CPU kernels (call them through zengrad.kernels)";
  zg::init_aligned_arrays();
  m.def("empty", &zg::aligned_empty, py::arg("shape"), py::arg("dtype"),
        "an uninitialised C-contiguous array whose data start on a 64-byte boundary");
  m.def("set_num_threads", &zg::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &zg::num_threads);
  m.def("set_flush_denormals", &zg::set_flush_denormals, py::arg("on"));
  m.def("get_flush_denormals", &zg::flush_denormals);
  m.def("simd_level", [] { return std::string(zg::simd_name(zg::simd_level())); });
  m.def("supported_simd_levels", [] {
    std::vector<std::string> names;
    for (zg::Simd level : zg::supported_simd()) names.push_back(zg::simd_name(level));
    return names;
  });
  m.def("set_simd_level", [](const std::string& name) { zg::set_simd_level(zg::parse_simd(name)); }, py::arg("name"));
  m.def("gemm", &zg::gemm_py, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("alpha"), py::arg("beta"), py::arg("bias"), py::arg("relu"),
        "out = act(alpha op(a) op(b) + beta out + bias), or None when declined");
  m.def("dense_backward", &zg::dense_backward_py, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("relu_output"),
        py::arg("with_dx"), py::arg("with_dw"), py::arg("with_bias"),
        "(dx, dw, db) of a dense layer from dy, each None unless asked; None when declined");
  m.def("adam_update", &zg::adam_update_py, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
        "one Adam step in place (one per parameter, given lists); False when declined");
  m.def("relu", &zg::relu_py, py::arg("x"), "max(x, 0), a new array; None when declined");
  m.def("relu_backward", &zg::relu_backward_py, py::arg("dy"), py::arg("y"),
        "dy where y > 0, else 0, a new array; None when declined");
  m.def("softmax_cross_entropy", &zg::softmax_cross_entropy_py, py::arg("logits"), py::arg("labels"),
        "(mean loss, softmax) of logits (N, C) against int64 labels (N,); None when declined, False for a "
        "label outside [0, C)");
  m.def("softmax_cross_entropy_backward", &zg::softmax_cross_entropy_backward_py, py::arg("probs"),
        py::arg("labels"), py::arg("dloss"),
        "(probs - onehot(labels)) * dloss / N, a new array; None when declined, False for a label outside [0, C)");
  zg::bind_conv(m);
  zg::bind_pool(m);
}
