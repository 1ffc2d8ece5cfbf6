// NumPy's memory-handler API (NumPy >= 1.22) lets an array be allocated through our allocator: the
// array then owns its data and hands it back to that allocator when it dies, whatever handler
// is current by then. The handler is swapped in only around the allocation, so nothing else in
// the process (the user's own arrays) changes.
#include "aligned_arrays.h"

#define PY_ARRAY_UNIQUE_SYMBOL zengrad_ARRAY_API  // this file is the only user of the NumPy C API
#include <numpy/arrayobject.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace zg {
namespace {

constexpr std::size_t kAlignment = 64;

// Each block is [malloc's block ... | Header | data], data aligned; the header says where the
// block starts (for free) and how long the data is (for realloc, which NumPy gives no old size).
struct Header {
  std::size_t offset;  // data - block
  std::size_t size;
};
constexpr std::size_t kExtra = sizeof(Header) + kAlignment - 1;

void* place(void* block, std::size_t size) {
  if (!block) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(block);
  const std::uintptr_t data = (start + sizeof(Header) + kAlignment - 1) & ~std::uintptr_t(kAlignment - 1);
  *reinterpret_cast<Header*>(data - sizeof(Header)) = {data - start, size};
  return reinterpret_cast<void*>(data);
}

const Header& header(void* data) { return *reinterpret_cast<Header*>(static_cast<char*>(data) - sizeof(Header)); }

void* aligned_malloc(void*, std::size_t size) {
  return size > SIZE_MAX - kExtra ? nullptr : place(std::malloc(size + kExtra), size);
}

// calloc, not malloc and memset: large blocks then come as untouched zero pages, as np.zeros'.
void* aligned_calloc(void*, std::size_t count, std::size_t item) {
  if (item && count > (SIZE_MAX - kExtra) / item) return nullptr;
  return place(std::calloc(1, count * item + kExtra), count * item);
}

void aligned_free(void*, void* data, std::size_t) {
  if (data) std::free(static_cast<char*>(data) - header(data).offset);
}

// A new block (the alignment of a realloc'd one could differ), the old data copied over; the old
// block stays valid if that fails, as realloc's contract says.
void* aligned_realloc(void* ctx, void* data, std::size_t size) {
  if (!data) return aligned_malloc(ctx, size);
  void* moved = aligned_malloc(ctx, size);
  if (!moved) return nullptr;
  std::memcpy(moved, data, std::min(size, header(data).size));
  aligned_free(ctx, data, 0);
  return moved;
}

PyDataMem_Handler handler = {
    "zengrad_aligned_64", 1, {nullptr, aligned_malloc, aligned_calloc, aligned_realloc, aligned_free}};
PyObject* handler_capsule = nullptr;  // kept for the life of the process: arrays refer to it

}  // namespace

void init_aligned_arrays() {
  if (_import_array() < 0) throw pybind11::error_already_set();
  handler_capsule = PyCapsule_New(&handler, "mem_handler", nullptr);
  if (!handler_capsule) throw pybind11::error_already_set();
}

namespace {

// PyArray_Empty with our handler swapped in around it; steals descr.
pybind11::object empty_with_handler(int ndim, npy_intp* dims, PyArray_Descr* descr) {
  PyObject* previous = PyDataMem_SetHandler(handler_capsule);
  if (!previous) {
    Py_DECREF(descr);
    throw pybind11::error_already_set();
  }
  PyObject* array = PyArray_Empty(ndim, dims, descr, 0);
  PyObject* ours = PyDataMem_SetHandler(previous);  // restore, even when PyArray_Empty failed
  Py_DECREF(previous);
  if (!ours) {
    Py_XDECREF(array);
    throw pybind11::error_already_set();
  }
  Py_DECREF(ours);
  if (!array) throw pybind11::error_already_set();
  return pybind11::reinterpret_steal<pybind11::object>(array);
}

}  // namespace

pybind11::object aligned_empty(pybind11::handle shape, pybind11::handle dtype) {
  PyArray_Descr* descr = nullptr;
  if (!PyArray_DescrConverter(dtype.ptr(), &descr)) throw pybind11::error_already_set();
  PyArray_Dims dims = {nullptr, 0};
  if (!PyArray_IntpConverter(shape.ptr(), &dims)) {
    Py_DECREF(descr);
    throw pybind11::error_already_set();
  }
  struct FreeDims {
    PyArray_Dims& d;
    ~FreeDims() { PyDimMem_FREE(d.ptr); }
  } free_dims{dims};
  return empty_with_handler(dims.len, dims.ptr, descr);
}

pybind11::object aligned_array(int ndim, const long* shape, int type_number) {
  npy_intp dims[NPY_MAXDIMS];
  for (int d = 0; d < ndim; ++d) dims[d] = static_cast<npy_intp>(shape[d]);
  PyArray_Descr* descr = PyArray_DescrFromType(type_number);
  if (!descr) throw pybind11::error_already_set();
  return empty_with_handler(ndim, dims, descr);
}

}  // namespace zg
