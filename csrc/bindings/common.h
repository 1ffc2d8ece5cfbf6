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
inline Window window_from(const py::tuple& t) {
  if (t.size() != 16) throw std::invalid_argument("window geometry must have 16 fields");
  long v[16];
  for (int i = 0; i < 16; ++i) v[i] = t[i].cast<long>();
  Window g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]};
  bool sane = g.n >= 0 && g.h > 0 && g.w > 0 && g.c > 0 && g.kh > 0 && g.kw > 0 && g.ho > 0 && g.wo > 0 &&
              g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.pt >= 0 && g.pb >= 0 && g.pl >= 0 && g.pr >= 0 &&
              g.ho == (g.h + g.pt + g.pb - (g.kh - 1) * g.dh - 1) / g.sh + 1 &&
              g.wo == (g.w + g.pl + g.pr - (g.kw - 1) * g.dw - 1) / g.sw + 1;
  if (!sane) throw std::invalid_argument("inconsistent window geometry");
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
