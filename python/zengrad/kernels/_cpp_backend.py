"""The "cpp" backend: zengrad._cpu, the compiled SIMD kernels. Outputs are allocated here, with
their data on 64-byte boundaries (_cpu.empty): the next kernel reads them a vector at a time."""
import types

import numpy as np

from zengrad import _cpu  # ImportError here marks the backend unavailable

from . import _validate as V

_empty = _cpu.empty


def _declined(func):
    return RuntimeError(f"{func}(): the compiled kernel declined arguments that passed the checks (a zengrad bug)")


def gemm(a, b, out, trans_a, trans_b, alpha, beta):
    if _cpu.gemm(a, b, out, trans_a, trans_b, alpha, beta) is None:
        raise _declined("gemm")
    return out


def conv2d(x, w, b, g, relu):
    y = _empty((g.n, g.ho, g.wo, w.shape[3]), x.dtype)
    _cpu.conv2d(x, w, b, y, g, relu)
    return y


def relu(x):
    y = _empty(x.shape, x.dtype)
    _cpu.relu(x, y)
    return y


def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    if not _cpu.adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
        raise _declined("adam_update")


def relu_backward(dy, y):
    dx = _empty(dy.shape, dy.dtype)
    _cpu.relu_backward(dy, y, dx)
    return dx


def conv2d_backward_data(dy, w, g):
    dx = _empty(g.x_shape, dy.dtype)
    _cpu.conv2d_backward_data(dy, w, dx, g)
    return dx


def conv2d_backward_weight(x, dy, w_shape, g, with_bias):
    dw = _empty(w_shape, x.dtype)
    db = _empty(w_shape[3], x.dtype) if with_bias else None
    _cpu.conv2d_backward_weight(x, dy, dw, db, g)
    return (dw, db) if with_bias else dw


def max_pool2d(x, g, with_indices):
    y = _empty((g.n, g.ho, g.wo, g.c), x.dtype)
    indices = _empty(y.shape, np.int32) if with_indices else None
    _cpu.max_pool2d(x, y, indices, g)
    return (y, indices) if with_indices else y


def max_pool2d_backward(dy, x, g, indices):
    dx = _empty(g.x_shape, dy.dtype)
    if not _cpu.max_pool2d_backward(dy, x, indices, dx, g):    # the kernel checks the indices' range
        V.pool_indices_in_image("max_pool2d_backward", indices, g)
        raise _declined("max_pool2d_backward")
    return dx


def avg_pool2d(x, g):
    y = _empty((g.n, g.ho, g.wo, g.c), x.dtype)
    _cpu.avg_pool2d(x, y, g)
    return y


def avg_pool2d_backward(dy, x, g):
    dx = _empty(g.x_shape, dy.dtype)
    _cpu.avg_pool2d_backward(dy, dx, g)
    return dx


BACKEND = types.SimpleNamespace(
    # the fast paths of kernels.gemm and kernels.adam_update: the same kernels, tried before the
    # checks (None / False: declined, take the general path)
    try_gemm=_cpu.gemm, try_adam_update=_cpu.adam_update,
    gemm=gemm, conv2d=conv2d, conv2d_backward_data=conv2d_backward_data,
    conv2d_backward_weight=conv2d_backward_weight, max_pool2d=max_pool2d,
    max_pool2d_backward=max_pool2d_backward, avg_pool2d=avg_pool2d, avg_pool2d_backward=avg_pool2d_backward,
    relu=relu, relu_backward=relu_backward, adam_update=adam_update,
)
