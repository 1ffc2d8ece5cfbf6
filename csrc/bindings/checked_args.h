// The compiled kernels' own argument checks. Every kernel of zengrad._cpu takes Python objects and
// checks them here, in C: the common call (plain arrays whose shapes agree, Python numbers) runs
// at once; anything else makes the kernel decline (None / False) and touch nothing. zengrad.kernels
// calls the kernels before its Python checks, and again, after them, with arguments that pass
// (copied, normalised). These checks only choose the path and never decide what an error says.
#pragma once

#include <initializer_list>
#include <optional>

#include "common.h"

namespace zg {

// A NumPy float32/float64 (or integer) array in the machine's byte order, C-contiguous.
struct Operand {
  py::array array;
  bool is_float;  // float32; else float64 (or an integer array)

  const char* begin() const { return static_cast<const char*>(array.data()); }
  long dim(int d) const { return static_cast<long>(array.shape(d)); }
  template <class T>
  const T* in() const { return static_cast<const T*>(array.data()); }
  template <class T>
  T* out() { return static_cast<T*>(array.mutable_data()); }
};

// `h` as a plain float array of `ndim` dimensions (any number when -1), writeable when asked.
std::optional<Operand> plain_array(py::handle h, int ndim, bool writeable);
// `h` as a plain array of signed integers of `bytes` bytes (int32 pooling winners, int64
// labels) and `ndim` dimensions.
std::optional<Operand> plain_int_array(py::handle h, int ndim, int bytes);

// Same dtype and shape.
bool same_kind(const Operand& x, const Operand& y);
// Of exactly this shape.
bool has_shape(const Operand& x, std::initializer_list<long> shape);
// A tuple of exact Python ints equal to `shape` (a shape argument: 2.0 or True are not sizes).
bool is_shape(py::handle h, std::initializer_list<long> shape);
// Memory that does not overlap.
bool apart(const Operand& x, const Operand& y);
// A Python float or int (not a bool, not a NumPy scalar) with a finite value.
std::optional<double> finite_number(py::handle h);

// A new uninitialised C-contiguous float32 (else float64) array with 64-byte aligned data.
py::array new_array(std::initializer_list<long> shape, bool is_float);
// A new array like x: its shape and dtype, C-contiguous, 64-byte aligned, uninitialised.
py::array new_array_like(const Operand& x);
// The same for int32 elements.
py::array new_index_array(std::initializer_list<long> shape);

// Runs fn(float{}) or fn(double{}), as `is_float` says, with the GIL released: fn runs a kernel
// on pointers taken from the checked operands and touches no Python object.
template <class Fn>
void run_kernel(bool is_float, Fn&& fn) {
  py::gil_scoped_release release;
  if (is_float)
    fn(float{});
  else
    fn(double{});
}

}  // namespace zg
