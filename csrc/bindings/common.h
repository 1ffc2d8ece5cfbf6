// Helpers shared by the binding files of both modules.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cpu/window.h"

namespace zg {
namespace py = pybind11;

// (n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr), as kernels/_validate.Window.
// Every field is below 2^31 (Python clamps strides and refuses larger windows), so products of
// two fields, and so all index arithmetic, fit in a long.
inline Window window_from(const py::tuple& t) {
  const auto bad = [](const std::string& why) { return std::invalid_argument("window geometry: " + why); };
  if (t.size() != 16) throw bad("expected a tuple of 16 ints");
  long v[16];
  for (int i = 0; i < 16; ++i) {
    PyObject* item = PyTuple_GET_ITEM(t.ptr(), i);
    if (!PyLong_Check(item)) throw bad("expected a tuple of 16 ints");
    int overflow = 0;
    v[i] = PyLong_AsLongAndOverflow(item, &overflow);
    if (overflow) v[i] = -1;  // out of range below
    const bool at_least_one = (i >= 4 && i <= 5) || (i >= 8 && i <= 11);  // kh, kw, strides, dilations
    if (v[i] < (at_least_one ? 1 : 0) || v[i] >= (1L << 31))
      throw bad("field " + std::to_string(i) + " out of range: " + std::to_string(v[i]));
  }
  const Window g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]};
  const long span_h = (g.kh - 1) * g.dh + 1, span_w = (g.kw - 1) * g.dw + 1;
  if (g.h + g.pt + g.pb < span_h || g.w + g.pl + g.pr < span_w || g.ho != (g.h + g.pt + g.pb - span_h) / g.sh + 1 ||
      g.wo != (g.w + g.pl + g.pr - span_w) / g.sw + 1)
    throw bad("inconsistent");
  return g;
}

}  // namespace zg
