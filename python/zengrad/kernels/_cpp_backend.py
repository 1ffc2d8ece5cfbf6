"""The "cpp" backend: zengrad._cpu, the compiled SIMD kernels.

Each kernel of _cpu checks its own arguments, in C, and declines (None / False) anything but the
common call: plain float arrays whose shapes agree with the geometry. `BACKEND.fast` is _cpu
itself: zengrad.kernels tries it first, before and instead of its Python checks; what it declines
is checked in Python (copied, normalised or refused by name) and comes here, where a decline
would be a zengrad bug. Outputs are new arrays with 64-byte aligned data (the next kernel reads
them a vector at a time)."""
import types

from zengrad import _cpu  # ImportError here marks the backend unavailable

from . import _validate as V


def _declined(func):
    return RuntimeError(f"{func}(): the compiled kernel declined arguments that passed the checks (a zengrad bug)")


def _done(func, result):
    if result is None:
        raise _declined(func)
    return result


def gemm(a, b, out, trans_a, trans_b, alpha, beta, bias, relu):
    return _done("gemm", _cpu.gemm(a, b, out, trans_a, trans_b, alpha, beta, bias, relu))


def dense_backward(dy, x, w, relu_output, with_dx, with_dw, with_bias):
    return _done("dense_backward", _cpu.dense_backward(dy, x, w, relu_output, with_dx, with_dw, with_bias))


def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    if not _cpu.adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
        raise _declined("adam_update")


def conv2d(x, w, b, g, relu):
    return _done("conv2d", _cpu.conv2d(x, w, b, g, relu))


def conv2d_backward_data(dy, w, g):
    return _done("conv2d_backward_data", _cpu.conv2d_backward_data(dy, w, g.x_shape, g))


def conv2d_backward_weight(x, dy, w_shape, g, with_bias):
    return _done("conv2d_backward_weight", _cpu.conv2d_backward_weight(x, dy, w_shape, g, with_bias))


def max_pool2d(x, g, with_indices):
    return _done("max_pool2d", _cpu.max_pool2d(x, g, with_indices))


def max_pool2d_backward(dy, x, g, indices):
    dx = _cpu.max_pool2d_backward(dy, x, indices, None, g)
    if dx is False:  # the kernel checks the winners' range as it reads them
        V.pool_indices_in_image("max_pool2d_backward", indices, g)  # raises, naming them
        raise _declined("max_pool2d_backward")
    return _done("max_pool2d_backward", dx)


def avg_pool2d(x, g):
    return _done("avg_pool2d", _cpu.avg_pool2d(x, g))


def avg_pool2d_backward(dy, x, g):
    return _done("avg_pool2d_backward", _cpu.avg_pool2d_backward(dy, x, g))


def relu(x):
    return _done("relu", _cpu.relu(x))


def relu_backward(dy, y):
    return _done("relu_backward", _cpu.relu_backward(dy, y))


def softmax_cross_entropy(logits, labels):
    result = _cpu.softmax_cross_entropy(logits, labels)
    if result is False:  # the kernel checks the labels' range as it reads them
        V.labels_in_range("softmax_cross_entropy", labels, logits.shape[1])  # raises, naming them
        raise _declined("softmax_cross_entropy")
    return _done("softmax_cross_entropy", result)


def softmax_cross_entropy_backward(probs, labels, dloss):
    dz = _cpu.softmax_cross_entropy_backward(probs, labels, dloss)
    if dz is False:
        V.labels_in_range("softmax_cross_entropy_backward", labels, probs.shape[1])
        raise _declined("softmax_cross_entropy_backward")
    return _done("softmax_cross_entropy_backward", dz)


BACKEND = types.SimpleNamespace(
    fast=_cpu,
    gemm=gemm, conv2d=conv2d, conv2d_backward_data=conv2d_backward_data,
    conv2d_backward_weight=conv2d_backward_weight, max_pool2d=max_pool2d,
    max_pool2d_backward=max_pool2d_backward, avg_pool2d=avg_pool2d, avg_pool2d_backward=avg_pool2d_backward,
    relu=relu, relu_backward=relu_backward, dense_backward=dense_backward, adam_update=adam_update,
    softmax_cross_entropy=softmax_cross_entropy, softmax_cross_entropy_backward=softmax_cross_entropy_backward,
)
