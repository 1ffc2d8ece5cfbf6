// zengrad._cpu: the CPU kernels. Thin: the Python layer validates, these functions check
// sizes once more, release the GIL and run the kernel.
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "cpu/conv2d.h"
#include "cpu/cpu_features.h"
#include "cpu/elementwise.h"
#include "cpu/gemm/gemm.h"
#include "cpu/threading.h"

namespace zg {
void bind_pool(py::module_& m);

namespace {

template <class T>
void gemm_binding(const Array<T>& a, const Array<T>& b, Array<T>& out, bool trans_a, bool trans_b, double alpha,
                  double beta) {
  if (a.ndim() != 2 || b.ndim() != 2 || out.ndim() != 2) throw std::invalid_argument("gemm operands must be 2-D");
  const long m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
  const long kb = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
  if (k != kb || out.shape(0) != m || out.shape(1) != n) throw std::invalid_argument("gemm shapes do not agree");
  const T* pa = a.data();
  const T* pb = b.data();
  T* pc = out_ptr<T>(out, m * n, "out");
  const long lda = a.shape(1), ldb = b.shape(1);
  py::gil_scoped_release release;
  gemm<T>(trans_a, trans_b, m, n, k, T(alpha), pa, lda, pb, ldb, T(beta), pc, n);
}

// zengrad.kernels.gemm's fast path: the common call taken without the Python checks. Operands
// NumPy float32/float64 arrays of one dtype, 2-D, C-contiguous; flags Python bools; alpha and
// beta finite Python floats or ints; shapes that agree; `out` absent, or of the right dtype and
// shape, C-contiguous, writeable and apart from both operands. Returns the result, or None for
// any other call, which then takes the general path (its checks copy, or refuse by name): these
// checks only choose the path, and never decide what an error says.
struct Operand {
  const void* data = nullptr;
  long rows = 0, cols = 0, bytes = 0;  // rows and cols of a 2-D operand
  int type = -1;
  py::array array;
};

// A float32/float64 NumPy array in the machine's byte order, C-contiguous (and writeable when
// asked), of `ndim` dimensions (any number when -1).
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
  const long rows = a.ndim() == 2 ? static_cast<long>(a.shape(0)) : 0, cols = a.ndim() == 2 ? static_cast<long>(a.shape(1)) : 0;
  return Operand{a.data(), rows, cols, static_cast<long>(a.nbytes()), type, std::move(a)};
}

std::optional<Operand> plain_matrix(py::handle h, bool writeable) { return plain_array(h, 2, writeable); }

bool same_shape(const Operand& x, const Operand& y) {
  if (x.array.ndim() != y.array.ndim()) return false;
  for (py::ssize_t d = 0; d < x.array.ndim(); ++d)
    if (x.array.shape(d) != y.array.shape(d)) return false;
  return true;
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

bool apart(const Operand& x, const Operand& y) {
  const auto* a = static_cast<const char*>(x.data);
  const auto* b = static_cast<const char*>(y.data);
  return x.bytes == 0 || y.bytes == 0 || a + x.bytes <= b || b + y.bytes <= a;
}

py::object try_gemm(py::handle a, py::handle b, py::handle out, py::handle trans_a, py::handle trans_b,
                    py::handle alpha, py::handle beta) {
  const auto A = plain_matrix(a, false), B = plain_matrix(b, false);
  const auto al = finite_number(alpha), be = finite_number(beta);
  if (!A || !B || A->type != B->type || !PyBool_Check(trans_a.ptr()) || !PyBool_Check(trans_b.ptr()) || !al || !be)
    return py::none();
  const bool ta = trans_a.ptr() == Py_True, tb = trans_b.ptr() == Py_True;
  const long m = ta ? A->cols : A->rows, k = ta ? A->rows : A->cols;
  const long n = tb ? B->rows : B->cols;
  if ((tb ? B->cols : B->rows) != k) return py::none();
  py::array result;
  double beta_used = *be;
  if (out.is_none()) {
    result = A->type == py::dtype::of<float>().num() ? py::array(py::array_t<float>({m, n}))
                                                     : py::array(py::array_t<double>({m, n}));
    beta_used = 0.0;
  } else {
    const auto C = plain_matrix(out, true);
    if (!C || C->type != A->type || C->rows != m || C->cols != n || !apart(*C, *A) || !apart(*C, *B))
      return py::none();
    result = py::reinterpret_borrow<py::array>(out);
  }
  const long lda = A->cols, ldb = B->cols;
  void* c = result.mutable_data();
  {
    py::gil_scoped_release release;
    if (A->type == py::dtype::of<float>().num())
      gemm<float>(ta, tb, m, n, k, float(*al), static_cast<const float*>(A->data), lda,
                  static_cast<const float*>(B->data), ldb, float(beta_used), static_cast<float*>(c), n);
    else
      gemm<double>(ta, tb, m, n, k, *al, static_cast<const double*>(A->data), lda,
                   static_cast<const double*>(B->data), ldb, beta_used, static_cast<double*>(c), n);
  }
  return std::move(result);
}

// zengrad.kernels.adam_update's fast path, as try_gemm's: param, grad, m and v plain arrays of
// one dtype and shape, param, m and v writeable and apart from each other, the four numbers
// finite Python floats or ints. True when done; False for any other call (the general path's).
bool try_adam_update(py::handle param, py::handle grad, py::handle m, py::handle v, py::handle alpha,
                     py::handle beta_1, py::handle beta_2, py::handle epsilon) {
  auto P = plain_array(param, -1, true), M = plain_array(m, -1, true), V = plain_array(v, -1, true);
  const auto G = plain_array(grad, -1, false);
  const auto a = finite_number(alpha), b1 = finite_number(beta_1), b2 = finite_number(beta_2), e = finite_number(epsilon);
  if (!P || !G || !M || !V || !a || !b1 || !b2 || !e) return false;
  for (const Operand* x : {&*P, &*M, &*V})
    if (x->type != G->type || !same_shape(*x, *G)) return false;
  if (!apart(*P, *M) || !apart(*P, *V) || !apart(*M, *V)) return false;
  const long n = static_cast<long>(G->array.size());
  void* pp = P->array.mutable_data();
  void* pm = M->array.mutable_data();
  void* pv = V->array.mutable_data();
  const void* pg = G->data;
  py::gil_scoped_release release;
  if (G->type == py::dtype::of<float>().num())
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
void adam_update_binding(Array<T>& p, const Array<T>& g, Array<T>& m, Array<T>& v, double alpha, double beta_1,
                         double beta_2, double epsilon) {
  const long n = p.size();
  T* pp = out_ptr<T>(p, n, "param");
  const T* pg = in_ptr<T>(g, n, "grad");
  T* pm = out_ptr<T>(m, n, "m");
  T* pv = out_ptr<T>(v, n, "v");
  py::gil_scoped_release release;
  adam_update<T>(pp, pg, pm, pv, n, alpha, beta_1, beta_2, epsilon);
}

template <class T>
void bind_kernels(py::module_& m) {
  m.def("gemm", &gemm_binding<T>, py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("out").noconvert(),
        py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("beta"));
  m.def("conv2d", &conv2d_binding<T>, py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("b").noconvert(),
        py::arg("y").noconvert(), py::arg("geometry"), py::arg("relu"));
  m.def("relu", &relu_binding<T>, py::arg("x").noconvert(), py::arg("y").noconvert());
  m.def("adam_update", &adam_update_binding<T>, py::arg("param").noconvert(), py::arg("grad").noconvert(),
        py::arg("m").noconvert(), py::arg("v").noconvert(), py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"),
        py::arg("epsilon"));
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
  m.def("try_gemm", &zg::try_gemm, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("alpha"), py::arg("beta"));
  m.def("try_adam_update", &zg::try_adam_update, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"));
  m.def("set_simd_level", [](const std::string& name) { zg::set_simd_level(zg::parse_simd(name)); }, py::arg("name"));
  zg::bind_kernels<float>(m);
  zg::bind_kernels<double>(m);
  zg::bind_pool(m);
}
