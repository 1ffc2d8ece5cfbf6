"""The "cuda" backend: zengrad._cuda, the CUDA kernels, on CuPy arrays.

The API calls these functions under `with array.device:`, with arguments checked by _validate.
Outputs are allocated here with CuPy on that device; every kernel is launched on CuPy's current
stream of the device and nothing here waits for the GPU. Elementwise kernels (relu, Adam, softmax
cross-entropy) are CuPy ElementwiseKernels with the formulas of the CPU kernels.
"""
import types

import numpy as np

from zengrad import _cuda  # ImportError here: built without a CUDA toolkit

import cupy  # ImportError here: CuPy is not installed

from ._backends import get_matmul_precision

_count, _why = _cuda.device_status()
if _count == 0:
    raise RuntimeError(f"no usable CUDA device: {_why}")
cupy.cuda.runtime.getDeviceCount()  # CuPy must see the device as well (its own runtime)

_DTYPE = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_PRECISION = {"float32": 0, "tf32": 1, "bf16": 2}


def _code(dtype, precision: str) -> int:
    """The kernels' precision code: float64 is always FP64."""
    return _PRECISION[precision] if dtype == np.float32 else 0


def _where(array):
    """(stream, device) for a launch on the current stream of the array's (= the current) device."""
    return cupy.cuda.get_current_stream().ptr, array.device.id


def _ptr(array) -> int:
    return 0 if array is None else array.data.ptr


def gemm(a, b, out, trans_a, trans_b, alpha, beta, bias, relu, precision):
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    _cuda.gemm(_DTYPE[a.dtype], _code(a.dtype, precision), trans_a, trans_b, m, n, k, alpha, a.data.ptr,
               a.shape[1], b.data.ptr, b.shape[1], beta, out.data.ptr, n, *_where(out))
    if bias is not None:
        out += bias
    if relu:
        cupy.maximum(out, 0, out=out)   # NaN kept, as NumPy's maximum
    return out


def _precision(dtype) -> int:
    return _code(dtype, get_matmul_precision())


def conv2d(x, w, b, g, relu):
    o = w.shape[3]
    y = cupy.empty((g.n, g.ho, g.wo, o), x.dtype)
    _cuda.conv2d(_DTYPE[x.dtype], _precision(x.dtype), x.data.ptr, w.data.ptr, _ptr(b), y.data.ptr, o, g, relu,
                 *_where(x))
    return y


def conv2d_backward_data(dy, w, g):
    dx = cupy.empty(g.x_shape, dy.dtype)
    _cuda.conv2d_backward_data(_DTYPE[dy.dtype], _precision(dy.dtype), dy.data.ptr, w.data.ptr, dx.data.ptr,
                               w.shape[3], g, *_where(w))
    return dx


def conv2d_backward_weight(x, dy, w_shape, g, with_bias):
    o = w_shape[3]
    dw = cupy.empty(w_shape, x.dtype)
    db = cupy.empty(o, x.dtype) if with_bias else None
    # Scratch for the partial sums, from CuPy's pool: freed here, reused only by later work on
    # this stream, so it outlives the kernels that use it.
    size = _cuda.conv2d_backward_weight_workspace(o, g, with_bias)
    workspace = cupy.empty(size, x.dtype) if size else None
    _cuda.conv2d_backward_weight(_DTYPE[x.dtype], _precision(x.dtype), x.data.ptr, dy.data.ptr, dw.data.ptr,
                                 _ptr(db), _ptr(workspace), size, o, g, *_where(dw))
    return (dw, db) if with_bias else dw


def max_pool2d(x, g, with_indices):
    y = cupy.empty((g.n, g.ho, g.wo, g.c), x.dtype)
    indices = cupy.empty(y.shape, np.int32) if with_indices else None
    _cuda.max_pool2d(_DTYPE[x.dtype], x.data.ptr, y.data.ptr, _ptr(indices), g, *_where(x))
    return (y, indices) if with_indices else y


def max_pool2d_backward(dy, x, g, indices):
    dx = cupy.empty(g.x_shape, dy.dtype)
    _cuda.max_pool2d_backward(_DTYPE[dy.dtype], dy.data.ptr, x.data.ptr, _ptr(indices), dx.data.ptr, g, *_where(dx))
    return dx


def avg_pool2d(x, g):
    y = cupy.empty((g.n, g.ho, g.wo, g.c), x.dtype)
    _cuda.avg_pool2d(_DTYPE[x.dtype], x.data.ptr, y.data.ptr, g, *_where(x))
    return y


def avg_pool2d_backward(dy, x, g):
    dx = cupy.empty(g.x_shape, dy.dtype)
    _cuda.avg_pool2d_backward(_DTYPE[dy.dtype], dy.data.ptr, dx.data.ptr, g, *_where(dx))
    return dx


# The CPU kernels' formulas (elementwise.cpp): NaN passes relu; 1 - beta rounded once to T;
# moments below the smallest normal number are stored as 0 (as the reference).
_relu = cupy.ElementwiseKernel("T x", "T y", "y = x < (T)0 ? (T)0 : x", "zengrad_relu")
_relu_backward = cupy.ElementwiseKernel("T dy, T y", "T dx", "dx = y > (T)0 ? dy : (T)0", "zengrad_relu_backward")
_adam = cupy.ElementwiseKernel(
    "T g, T keep_1, T keep_2, T alpha, T epsilon, T tiny", "T p, T m, T v",
    """
    const T mi = m + (g - m) * keep_1;
    const T vi = v + (g * g - v) * keep_2;
    m = fabs(mi) < tiny ? (T)0 : mi;
    v = fabs(vi) < tiny ? (T)0 : vi;
    p -= alpha * m / (sqrt(v) + epsilon);
    """,
    "zengrad_adam_update")


# Softmax cross-entropy, the CPU kernel's formulas (cross_entropy.cpp), one thread per row. The
# labels' range is not checked here (that would wait for the GPU): a row whose label is outside
# [0, C) gets a NaN loss and NaN gradients.
_softmax_cross_entropy_rows = cupy.ElementwiseKernel(
    "raw T z, raw int64 labels, int64 c, T nan", "raw T probs, T row_loss",
    """
    const long long base = i * c, label = labels[i];
    T top = z[base];
    for (long long j = 1; j < c; ++j) {
      const T v = z[base + j];
      if (v > top || v != v) top = v;
    }
    T sum = 0;
    for (long long j = 0; j < c; ++j) {
      const T e = exp(z[base + j] - top);
      probs[base + j] = e;
      sum += e;
    }
    for (long long j = 0; j < c; ++j) probs[base + j] /= sum;
    row_loss = (label < 0 || label >= c) ? nan : (T)(log(sum) - (z[base + label] - top));
    """,
    "zengrad_softmax_cross_entropy")
_softmax_cross_entropy_backward = cupy.ElementwiseKernel(
    "T p, raw int64 labels, raw T dloss, int64 c, T rows, T nan", "T dz",
    """
    const long long label = labels[i / c];
    const T scale = dloss[0] / rows;
    dz = (label < 0 || label >= c) ? nan : (p - (i % c == label ? (T)1 : (T)0)) * scale;
    """,
    "zengrad_softmax_cross_entropy_backward")


def softmax_cross_entropy(logits, labels):
    n, c = logits.shape
    probs = cupy.empty_like(logits)
    rows = cupy.empty(n, logits.dtype)
    # the raw arrays flat (views of contiguous arrays), indexed row * c + column in the kernel
    _softmax_cross_entropy_rows(logits.reshape(-1), labels, c, logits.dtype.type(np.nan), probs.reshape(-1), rows)
    return (rows.sum(dtype=np.float64) / n).astype(logits.dtype), probs


def softmax_cross_entropy_backward(probs, labels, dloss):
    n, c = probs.shape
    t = probs.dtype.type
    return _softmax_cross_entropy_backward(probs, labels, dloss.reshape(1), c, t(n), t(np.nan))


def relu(x):
    return _relu(x)


def relu_backward(dy, y):
    return _relu_backward(dy, y)


def dense_backward(dy, x, w, relu_output, with_dx, with_dw, with_bias, precision):
    g = dy if relu_output is None else _relu_backward(dy, relu_output)
    dx = gemm(g, w, cupy.empty((g.shape[0], x.shape[1]), g.dtype), False, True, 1.0, 0.0, None, False,
              precision) if with_dx else None
    dw = gemm(x, g, cupy.empty(w.shape, g.dtype), True, False, 1.0, 0.0, None, False, precision) if with_dw else None
    return dx, dw, g.sum(axis=0) if with_bias else None


def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    t = param.dtype.type
    _adam(grad, t(1.0 - beta_1), t(1.0 - beta_2), t(alpha), t(epsilon), np.finfo(param.dtype).tiny, param, m, v)


BACKEND = types.SimpleNamespace(
    gemm=gemm, conv2d=conv2d, conv2d_backward_data=conv2d_backward_data,
    conv2d_backward_weight=conv2d_backward_weight, max_pool2d=max_pool2d,
    max_pool2d_backward=max_pool2d_backward, avg_pool2d=avg_pool2d, avg_pool2d_backward=avg_pool2d_backward,
    relu=relu, relu_backward=relu_backward, dense_backward=dense_backward, adam_update=adam_update,
    softmax_cross_entropy=softmax_cross_entropy, softmax_cross_entropy_backward=softmax_cross_entropy_backward,
)
