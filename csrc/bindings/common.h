// Helpers shared by the binding files. The Python layer has validated every argument already;
// these checks are the last line of defence: whatever Python passes, no kernel may read or
// write outside the arrays it was given.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cpu/window.h"

namespace zg {
namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style>;

// (n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr), as kernels/_validate.Window.
// Every field is below 2^31 (Python clamps strides and refuses larger windows), so products of
// two fields, and so all index arithmetic, fit in a long.
inline Window window_from(const py::tuple& t) {
  const auto bad = [](const std::string& why) { return std::invalid_argument("window geometry: " + why); };
  if (t.size() != 16) throw bad("expected a tuple of 16 ints");
  long v[16];
  for (int i = 0; i < 16; ++i) {
    try {
      v[i] = t[i].cast<long>();
    } catch (const py::cast_error&) {
      throw bad("expected a tuple of 16 ints");
    }
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

template <class T>
const T* in_ptr(const Array<T>& a, long expected_size, const char* name) {
  if (a.size() != expected_size)
    throw std::invalid_argument(std::string(name) + ": size " + std::to_string(a.size()) + ", expected " +
                                std::to_string(expected_size));
  return a.data();
}

template <class T>
T* out_ptr(Array<T>& a, long expected_size, const char* name) {
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " is read-only");
  in_ptr<T>(a, expected_size, name);
  return a.mutable_data();
}

}  // namespace zg
