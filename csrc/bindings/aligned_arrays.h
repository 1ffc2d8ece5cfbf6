// NumPy arrays whose data start on a 64-byte boundary (a cache line, one AVX-512 vector), for the
// arrays zengrad's CPU kernels create. NumPy's own allocator aligns to 16 bytes: a kernel that
// reads or writes such an array a vector at a time splits most accesses across two cache lines
// (conv1's backward-weight took 1.4x as long on a dy at 16 bytes as at 64, C++ harness).
#pragma once

#include <pybind11/pybind11.h>

namespace zg {

// Readies the NumPy C API and the allocator; call once, from the module's init.
void init_aligned_arrays();

// An uninitialised C-contiguous array of `shape` and `dtype` (anything np.dtype() takes), with
// aligned data. It owns its data (.base is None) and frees it itself, like any NumPy array.
pybind11::object aligned_empty(pybind11::handle shape, pybind11::handle dtype);

// The same, for the kernels' outputs: `ndim` sizes and a NumPy type number (NPY_FLOAT, ...).
pybind11::object aligned_array(int ndim, const long* shape, int type_number);

}  // namespace zg
