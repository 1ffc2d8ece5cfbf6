// zengrad._cpu: the CPU kernels. Thin: the Python layer validates, these functions check
// sizes once more, release the GIL and run the kernel (gemm and adam_update check everything
// themselves: see below).
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "aligned_arrays.h"
#include "common.h"
#include "cpu/conv2d.h"
#include "cpu/cpu_features.h"
#include "cpu/elementwise.h"
#include "cpu/gemm/gemm.h"
#include "cpu/threading.h"

namespace zg {
void bind_pool(py::module_& m);

namespace {

// gemm and adam_update take their arguments as Python objects and check them here, in C: for the
// common call (plain arrays, Python numbers) zengrad.kernels calls them before, and instead of,
// its Python checks. Anything else makes them decline (None / False), touching nothing; the
// Python layer then checks, copies or refuses by name, and calls them again with arguments that
// pass. These checks only choose the path, and never decide what an error says.

// A NumPy float32/float64 array in the machine's byte order, C-contiguous (and writeable when
// asked), of `ndim` dimensions (any number when -1).
struct Operand {
  py::array array;
  bool is_float;  // else double

  const char* begin() const { return static_cast<const char*>(array.data()); }
  long dim(int d) const { return static_cast<long>(array.shape(d)); }
};

std::optional<Operand> plain_array(py::handle h, int ndim, bool writeable) {
  if (!py::isinstance<py::array>(h)) return std::nullopt;
  auto a = py::reinterpret_borrow<py::array>(h);
  const py::dtype dtype = a.dtype();
  const int type = dtype.num();
  const char order = dtype.byteorder();  // '=' native, or '<' / '>' spelled out
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const bool native = order == '=' || order == '<';
#else
  const bool native = order == '=' || order == '>';
#endif
  if ((ndim >= 0 && a.ndim() != ndim) || (type != py::dtype::of<float>().num() && type != py::dtype::of<double>().num()) ||
      !native || !(a.flags() & py::array::c_style) || (writeable && !a.writeable()))
    return std::nullopt;
  return Operand{std::move(a), type == py::dtype::of<float>().num()};
}

bool same_kind(const Operand& x, const Operand& y) {
  if (x.is_float != y.is_float || x.array.ndim() != y.array.ndim()) return false;
  for (int d = 0; d < x.array.ndim(); ++d)
    if (x.dim(d) != y.dim(d)) return false;
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

// out = alpha op(a) op(b) + beta out: operands 2-D and of one dtype, flags Python bools, `out`
// absent (then new, beta ignored) or of the result's dtype and shape, writeable and apart from
// both operands. Returns out, or None (declined).
py::object gemm_py(py::handle a, py::handle b, py::handle out, py::handle trans_a, py::handle trans_b, py::handle alpha,
                   py::handle beta) {
  const auto A = plain_array(a, 2, false), B = plain_array(b, 2, false);
  const auto al = finite_number(alpha), be = finite_number(beta);
  if (!A || !B || A->is_float != B->is_float || !PyBool_Check(trans_a.ptr()) || !PyBool_Check(trans_b.ptr()) || !al ||
      !be)
    return py::none();
  const bool ta = trans_a.ptr() == Py_True, tb = trans_b.ptr() == Py_True;
  const long m = A->dim(ta ? 1 : 0), k = A->dim(ta ? 0 : 1), n = B->dim(tb ? 0 : 1);
  if (B->dim(tb ? 1 : 0) != k) return py::none();
  std::optional<Operand> C;
  double beta_used = *be;
  if (out.is_none()) {
    const py::dtype type = A->is_float ? py::dtype::of<float>() : py::dtype::of<double>();
    C = Operand{py::reinterpret_borrow<py::array>(aligned_empty(py::make_tuple(m, n), type)), A->is_float};
    beta_used = 0.0;
  } else {
    C = plain_array(out, 2, true);
    if (!C || C->is_float != A->is_float || C->dim(0) != m || C->dim(1) != n || !apart(*C, *A) || !apart(*C, *B))
      return py::none();
  }
  const long lda = A->dim(1), ldb = B->dim(1);
  void* c = C->array.mutable_data();
  {
    py::gil_scoped_release release;
    if (A->is_float)
      gemm<float>(ta, tb, m, n, k, float(*al), static_cast<const float*>(A->array.data()), lda,
                  static_cast<const float*>(B->array.data()), ldb, float(beta_used), static_cast<float*>(c), n);
    else
      gemm<double>(ta, tb, m, n, k, *al, static_cast<const double*>(A->array.data()), lda,
                   static_cast<const double*>(B->array.data()), ldb, beta_used, static_cast<double*>(c), n);
  }
  return C->array;
}

// One Adam step in place: param, grad, m and v of one dtype and shape, param, m and v writeable
// and apart from each other, the four numbers finite. True when done, False (declined).
bool adam_update_py(py::handle param, py::handle grad, py::handle m, py::handle v, py::handle alpha, py::handle beta_1,
                    py::handle beta_2, py::handle epsilon) {
  auto P = plain_array(param, -1, true), M = plain_array(m, -1, true), V = plain_array(v, -1, true);
  const auto G = plain_array(grad, -1, false);
  const auto a = finite_number(alpha), b1 = finite_number(beta_1), b2 = finite_number(beta_2), e = finite_number(epsilon);
  if (!P || !G || !M || !V || !a || !b1 || !b2 || !e || !same_kind(*P, *G) || !same_kind(*M, *G) ||
      !same_kind(*V, *G) || !apart(*P, *M) || !apart(*P, *V) || !apart(*M, *V))
    return false;
  const long n = static_cast<long>(G->array.size());
  void* pp = P->array.mutable_data();
  void* pm = M->array.mutable_data();
  void* pv = V->array.mutable_data();
  const void* pg = G->array.data();
  py::gil_scoped_release release;
  if (G->is_float)
    adam_update<float>(static_cast<float*>(pp), static_cast<const float*>(pg), static_cast<float*>(pm),
                       static_cast<float*>(pv), n, *a, *b1, *b2, *e);
  else
    adam_update<double>(static_cast<double*>(pp), static_cast<const double*>(pg), static_cast<double*>(pm),
                        static_cast<double*>(pv), n, *a, *b1, *b2, *e);
  return true;
}

template <class T>
void conv2d_binding(const Array<T>& x, const Array<T>& w, const std::optional<Array<T>>& b, Array<T>& y,
                    const py::tuple& geometry, bool relu) {
  const Window g = window_from(geometry);
  if (w.ndim() != 4) throw std::invalid_argument("w must be 4-D");
  const long o = w.shape(3);
  const T* px = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  const T* pw = in_ptr<T>(w, g.kh * g.kw * g.c * o, "w");
  const T* pb = b ? in_ptr<T>(*b, o, "b") : nullptr;
  T* py_ = out_ptr<T>(y, g.n * g.ho * g.wo * o, "y");
  py::gil_scoped_release release;
  conv2d_forward<T>(px, pw, pb, py_, o, g, relu);
}

template <class T>
void conv2d_backward_data_binding(const Array<T>& dy, const Array<T>& w, Array<T>& dx, const py::tuple& geometry) {
  const Window g = window_from(geometry);
  if (w.ndim() != 4) throw std::invalid_argument("w must be 4-D");
  const long o = w.shape(3);
  const T* pdy = in_ptr<T>(dy, g.n * g.ho * g.wo * o, "dy");
  const T* pw = in_ptr<T>(w, g.kh * g.kw * g.c * o, "w");
  T* pdx = out_ptr<T>(dx, g.n * g.h * g.w * g.c, "dx");
  py::gil_scoped_release release;
  conv2d_backward_data<T>(pdy, pw, pdx, o, g);
}

template <class T>
void conv2d_backward_weight_binding(const Array<T>& x, const Array<T>& dy, Array<T>& dw, std::optional<Array<T>>& db,
                                    const py::tuple& geometry) {
  const Window g = window_from(geometry);
  if (dw.ndim() != 4) throw std::invalid_argument("dw must be 4-D");
  const long o = dw.shape(3);
  const T* px = in_ptr<T>(x, g.n * g.h * g.w * g.c, "x");
  const T* pdy = in_ptr<T>(dy, g.n * g.ho * g.wo * o, "dy");
  T* pdw = out_ptr<T>(dw, g.kh * g.kw * g.c * o, "dw");
  T* pdb = db ? out_ptr<T>(*db, o, "db") : nullptr;
  py::gil_scoped_release release;
  conv2d_backward_weight<T>(px, pdy, pdw, pdb, o, g);
}

template <class T>
void relu_binding(const Array<T>& x, Array<T>& y) {
  const T* px = x.data();
  T* py_ = out_ptr<T>(y, x.size(), "y");
  py::gil_scoped_release release;
  relu<T>(px, py_, x.size());
}

template <class T>
void relu_backward_binding(const Array<T>& dy, const Array<T>& y, Array<T>& dx) {
  const T* pdy = dy.data();
  const T* py_ = in_ptr<T>(y, dy.size(), "y");
  T* pdx = out_ptr<T>(dx, dy.size(), "dx");
  py::gil_scoped_release release;
  relu_backward<T>(pdy, py_, pdx, dy.size());
}

template <class T>
void bind_kernels(py::module_& m) {
  m.def("conv2d", &conv2d_binding<T>, py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("b").noconvert(),
        py::arg("y").noconvert(), py::arg("geometry"), py::arg("relu"));
  m.def("relu", &relu_binding<T>, py::arg("x").noconvert(), py::arg("y").noconvert());
  m.def("relu_backward", &relu_backward_binding<T>, py::arg("dy").noconvert(), py::arg("y").noconvert(),
        py::arg("dx").noconvert());
  m.def("conv2d_backward_data", &conv2d_backward_data_binding<T>, py::arg("dy").noconvert(),
        py::arg("w").noconvert(), py::arg("dx").noconvert(), py::arg("geometry"));
  m.def("conv2d_backward_weight", &conv2d_backward_weight_binding<T>, py::arg("x").noconvert(),
        py::arg("dy").noconvert(), py::arg("dw").noconvert(), py::arg("db").noconvert(), py::arg("geometry"));
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
  m.def("gemm", &zg::gemm_py, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("alpha"), py::arg("beta"), "out = alpha op(a) op(b) + beta out, or None when declined");
  m.def("adam_update", &zg::adam_update_py, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
        "one Adam step in place; False when declined");
  m.def("set_simd_level", [](const std::string& name) { zg::set_simd_level(zg::parse_simd(name)); }, py::arg("name"));
  zg::bind_kernels<float>(m);
  zg::bind_kernels<double>(m);
  zg::bind_pool(m);
}
