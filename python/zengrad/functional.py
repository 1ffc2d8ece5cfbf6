"""Differentiable ops on Tensors, each forward beside its backward; the heavy ones run on
`zengrad.kernels`. Layouts: activations NHWC, filters HWIO, Dense kernels (in, out).

Arguments may be Tensors or arrays (arrays are constants: they get no gradient). Every op runs
on the device of its tensors: array functions come from the data (NumPy or CuPy), kernels
from `zengrad.kernels`, which dispatch on the array type. Operands on different devices are a
TypeError naming the argument; host arrays given as targets or labels follow the tensor's device.
"""
from __future__ import annotations

from numbers import Real

import numpy as np

from . import _device, kernels
from ._device import array_module
from .kernels._validate import labels_in_range
from .random import uniform_like
from .tensor import Tensor, is_grad_enabled

__all__ = [
    "linear", "conv2d", "conv2d_relu_max_pool2d", "max_pool2d", "avg_pool2d", "relu", "sigmoid", "tanh",
    "softmax", "log_softmax", "flatten", "dropout", "batch_norm", "cross_entropy", "cross_entropy_and_softmax",
    "categorical_cross_entropy",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _t(x, name, func) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or array_module(x) is not np:
        return Tensor(x)
    raise TypeError(f"{func}(): argument '{name}' must be a Tensor or an array (NumPy or CuPy), "
                    f"got {type(x).__name__}")


def _same_device(func, **tensors) -> None:
    """TypeError naming the first operand on another device than the first one."""
    if all(t is None or type(t.data) is np.ndarray for t in tensors.values()):
        return
    _device.check_same(f"{func}()", **{k: None if t is None else t.data for k, t in tensors.items()})


def _like(x: Tensor, other, name, func) -> Tensor:
    """`other` as a Tensor of x's float dtype on x's device (targets given as host arrays are
    copied there; tensors on another device are refused)."""
    other = _t(other, name, func)
    if other.shape != x.shape:
        raise ValueError(f"{func}(): argument '{name}' must have shape {x.shape}, got {other.shape}")
    if type(x.data) is np.ndarray and type(other.data) is np.ndarray:
        return other if other.dtype == x.dtype else Tensor(other.data.astype(x.dtype))
    if other.requires_grad or not _device.is_host(other.data):   # device tensors are never copied implicitly
        _same_device(func, **{"x": x, name: other})
        return other if other.dtype == x.dtype else Tensor(other.data.astype(x.dtype))
    return Tensor(_device.like(other.data, x.data, f"{func}()", name))


# ---- dense and convolutional layers ----

def linear(x, w, b=None, activation=None) -> Tensor:
    """x (N, in) @ w (in, out) + b (out,) -> (N, out), on the GEMM kernel; activation None or
    "relu" (fused into the kernel, as the bias: no pass of their own over the output)."""
    x, w = _t(x, "x", "linear"), _t(w, "w", "linear")
    b = None if b is None else _t(b, "b", "linear")
    try:
        y = kernels.gemm(x.data, w.data, bias=None if b is None else b.data, activation=activation)
    except (TypeError, ValueError):  # checked by the kernel; named here where it is linear's own argument
        _linear_checks(x, w, b)
        raise

    def backward(g):
        dx, dw, db = kernels.dense_backward(g, x.data, w.data, relu_output=None if activation is None else y,
                                            with_dx=x.requires_grad, with_dw=w.requires_grad,
                                            with_bias=b is not None and b.requires_grad)
        return (dx, dw) if b is None else (dx, dw, db)

    return Tensor._result(y, (x, w) if b is None else (x, w, b), backward)


def _linear_checks(x, w, b) -> None:
    """TypeError/ValueError naming linear()'s own argument where x, w and b are on different
    devices or do not fit together."""
    _same_device("linear", x=x, w=w, b=b)
    if x.ndim != 2:
        raise ValueError(f"linear(): argument 'x' must be 2-dimensional (N, in), got shape {x.shape}")
    if w.ndim != 2 or w.shape[0] != x.shape[1]:
        raise ValueError(f"linear(): argument 'w' must have shape ({x.shape[1]}, out) for x of shape {x.shape}, "
                         f"got {w.shape}")
    if b is not None and b.shape != (w.shape[1],):
        raise ValueError(f"linear(): argument 'b' must have shape ({w.shape[1]},), got {b.shape}")
    for name, t in (("w", w), ("b", b)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"linear(): argument '{name}' must be of x's dtype {x.dtype}, got {t.dtype}")


def conv2d(x, w, b=None, stride=1, padding="valid", dilation=1, activation=None) -> Tensor:
    """x (N, H, W, C) conv w (kh, kw, C, O) + b (O,) -> (N, Ho, Wo, O); activation=None or "relu"
    (fused into the kernel: relu(conv2d(...)) without a pass of its own)."""
    x, w, b, geometry, y = _conv2d_forward("conv2d", x, w, b, stride, padding, dilation, activation)

    def backward(g):
        if activation == "relu":
            g = kernels.relu_backward(g, y)
        return _conv2d_grads(g, x, w, b, geometry)

    return Tensor._result(y, (x, w) if b is None else (x, w, b), backward)


def _conv2d_forward(func, x, w, b, stride, padding, dilation, activation):
    """(x, w, b as Tensors, the geometry keywords, y) of a convolution's forward pass."""
    x, w = _t(x, "x", func), _t(w, "w", func)
    b = None if b is None else _t(b, "b", func)
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    try:
        y = kernels.conv2d(x.data, w.data, None if b is None else b.data, activation=activation, **geometry)
    except (TypeError, ValueError):  # checked by the kernel; a device mismatch named as func's
        _same_device(func, x=x, w=w, b=b)
        raise
    return x, w, b, geometry, y


def _conv2d_grads(g, x, w, b, geometry):
    """(dx, dw[, db]) of conv2d from the gradient g of its output (before any activation)."""
    dx = kernels.conv2d_backward_data(g, w.data, x.shape, **geometry) if x.requires_grad else None
    if b is None:
        dw = kernels.conv2d_backward_weight(x.data, g, w.shape, **geometry) if w.requires_grad else None
        return dx, dw
    dw, db = kernels.conv2d_backward_weight(x.data, g, w.shape, with_bias=True, **geometry)
    return dx, dw, db


def conv2d_relu_max_pool2d(x, w, b=None, stride=1, padding="valid", dilation=1, pool_size=2, pool_stride=None,
                           pool_padding="valid") -> Tensor:
    """max_pool2d(conv2d(x, w, b, activation="relu")) as one op, for a convolution whose output
    nothing else reads (a Sequential's Conv2D(activation="relu") before MaxPooling2D): the same
    values and gradients, bit for bit, with less memory traffic. A window's gradient reaches its
    winner only, where the ReLU's output is the window's maximum; so the ReLU's mask is applied to
    the pooled gradient (a quarter of the size for 2x2 windows) instead of to the convolution's,
    inside the pooling's backward kernel (relu_output)."""
    x, w, b, geometry, y = _conv2d_forward("conv2d_relu_max_pool2d", x, w, b, stride, padding, dilation, "relu")
    pooling = dict(stride=pool_stride, padding=pool_padding)
    parents = (x, w) if b is None else (x, w, b)
    if not (is_grad_enabled() and any(p.requires_grad for p in parents)):
        return Tensor(kernels.max_pool2d(y, pool_size, **pooling))
    pooled, winners = kernels.max_pool2d(y, pool_size, return_indices=True, **pooling)

    def backward(g):
        g = kernels.max_pool2d_backward(g, y, pool_size, indices=winners, relu_output=pooled, **pooling)
        return _conv2d_grads(g, x, w, b, geometry)

    return Tensor._result(pooled, parents, backward)


def max_pool2d(x, pool_size=2, stride=None, padding="valid") -> Tensor:
    """Max over windows of x (N, H, W, C) -> (N, Ho, Wo, C); gradient to each window's first max."""
    x = _t(x, "x", "max_pool2d")
    geometry = dict(stride=stride, padding=padding)
    if not (is_grad_enabled() and x.requires_grad):
        return Tensor(kernels.max_pool2d(x.data, pool_size, **geometry))
    y, winners = kernels.max_pool2d(x.data, pool_size, return_indices=True, **geometry)
    return Tensor._result(y, (x,), lambda g: (
        kernels.max_pool2d_backward(g, x.data, pool_size, indices=winners, **geometry),))


def avg_pool2d(x, pool_size=2, stride=None, padding="valid") -> Tensor:
    """Mean over the real elements of windows of x (N, H, W, C) -> (N, Ho, Wo, C)."""
    x = _t(x, "x", "avg_pool2d")
    y = kernels.avg_pool2d(x.data, pool_size, stride=stride, padding=padding)
    return Tensor._result(y, (x,), lambda g: (
        kernels.avg_pool2d_backward(g, x.data, pool_size, stride=stride, padding=padding),))


def flatten(x) -> Tensor:
    """(N, ...) -> (N, prod(...))."""
    x = _t(x, "x", "flatten")
    return x.reshape(x.shape[0], -1)


# ---- activations ----

def relu(x) -> Tensor:
    x = _t(x, "x", "relu")
    y = kernels.relu(x.data)
    return Tensor._result(y, (x,), lambda g: (kernels.relu_backward(g, y),))


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow for large |z|."""
    xp = array_module(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def sigmoid(x) -> Tensor:
    x = _t(x, "x", "sigmoid")
    s = _sigmoid(x.data)
    return Tensor._result(s, (x,), lambda g: (g * s * (1 - s),))


def tanh(x) -> Tensor:
    x = _t(x, "x", "tanh")
    t = array_module(x.data).tanh(x.data)
    return Tensor._result(t, (x,), lambda g: (g * (1 - t * t),))


def _softmax(z, axis):
    e = array_module(z).exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(z, axis):
    xp = array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis=-1) -> Tensor:
    x = _t(x, "x", "softmax")
    s = _softmax(x.data, axis)
    return Tensor._result(s, (x,), lambda g: (s * (g - (g * s).sum(axis=axis, keepdims=True)),))


def log_softmax(x, axis=-1) -> Tensor:
    x = _t(x, "x", "log_softmax")
    y = _log_softmax(x.data, axis)
    return Tensor._result(y, (x,), lambda g: (g - array_module(y).exp(y) * g.sum(axis=axis, keepdims=True),))


# ---- regularisation and normalisation ----

def dropout(x, rate, training) -> Tensor:
    """Zero each element with probability `rate` and scale the rest by 1/(1-rate) when training.
    The mask is drawn on x's device from zengrad.random (see there for reproducibility)."""
    x = _t(x, "x", "dropout")
    if isinstance(rate, bool) or not isinstance(rate, Real) or not 0 <= rate < 1:
        raise ValueError(f"dropout(): argument 'rate' must be a number in [0, 1), got {rate!r}")
    if not training or rate == 0:
        return x
    keep = (uniform_like(x.data) >= rate).astype(x.dtype) * x.dtype.type(1 / (1 - rate))
    return Tensor._result(x.data * keep, (x,), lambda g: (g * keep,))


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.99, epsilon=1e-3) -> Tensor:
    """Normalise x over every axis but the last, then scale by gamma and shift by beta (C,).

    Training uses the batch's mean and (biased) variance and updates the running statistics
    (arrays, in place) as Keras does: running = running * momentum + batch * (1 - momentum).
    Inference uses the running statistics."""
    x, gamma, beta = _t(x, "x", "batch_norm"), _t(gamma, "gamma", "batch_norm"), _t(beta, "beta", "batch_norm")
    _same_device("batch_norm", x=x, gamma=gamma, beta=beta)
    if type(x.data) is not np.ndarray:  # the running statistics are updated in place: they must be there too
        _device.check_same("batch_norm()", x=x.data, running_mean=running_mean, running_var=running_var)
    xp = array_module(x.data)
    axes = tuple(range(x.ndim - 1))
    if training:
        mean, var = x.data.mean(axis=axes), x.data.var(axis=axes)
        running_mean *= momentum
        running_mean += (1 - momentum) * mean
        running_var *= momentum
        running_var += (1 - momentum) * var
    else:
        mean, var = running_mean, running_var
    inv_std = (1 / xp.sqrt(var + epsilon)).astype(x.dtype)
    xhat = (x.data - mean) * inv_std
    y = gamma.data * xhat + beta.data
    count = x.size // x.shape[-1]

    def backward(g):
        dgamma, dbeta = (g * xhat).sum(axis=axes), g.sum(axis=axes)
        if training:  # the batch statistics depend on x too
            dx = (gamma.data * inv_std / count) * (count * g - dbeta - xhat * dgamma)
        else:
            dx = g * (gamma.data * inv_std)
        return dx, dgamma, dbeta

    return Tensor._result(y.astype(x.dtype, copy=False), (x, gamma, beta), backward)


# ---- losses (means over the batch) ----

def cross_entropy(logits, labels) -> Tensor:
    """Mean of -log softmax(logits)[label]; logits (N, C), integer labels (N,) in [0, C), on the
    fused kernel (kernels.softmax_cross_entropy).

    Host labels are range-checked; labels already on the GPU are checked for shape and dtype
    only (a range check would stall the GPU every step: Sequential.fit checks the whole label
    array once, on the host)."""
    return cross_entropy_and_softmax(logits, labels)[0]


def cross_entropy_and_softmax(logits, labels):
    """(cross_entropy(logits, labels), softmax(logits) as an array, no gradient): a softmax
    classifier's loss and predictions from one pass over the logits."""
    z = _t(logits, "logits", "cross_entropy")
    labels = labels.data if isinstance(labels, Tensor) else labels
    if type(labels) is not np.ndarray and _device.is_host(labels):
        labels = np.asarray(labels)
    if type(z.data) is not np.ndarray and type(labels) is np.ndarray:   # to the logits' device
        if z.ndim == 2 and labels.dtype.kind in "iu":  # checked here, where it costs no wait
            labels_in_range("cross_entropy", labels, z.shape[1])
        labels = _device.like(labels, z.data, "cross_entropy()", "labels", dtype=labels.dtype)
    loss, probs = kernels.softmax_cross_entropy(z.data, labels)
    return Tensor._result(loss, (z,), lambda g: (kernels.softmax_cross_entropy_backward(probs, labels, g),)), probs


def categorical_cross_entropy(logits, targets) -> Tensor:
    """Mean of -sum(targets * log softmax(logits)); targets (N, C) one-hot or probabilities."""
    z = _t(logits, "logits", "categorical_cross_entropy")
    target = _like(z, targets, "targets", "categorical_cross_entropy")
    t, n = target.data, z.shape[0]
    xp = array_module(z.data)
    logp = _log_softmax(z.data, axis=-1)
    loss = -(t * logp).sum() / n

    def backward(g):
        return (xp.exp(logp) * t.sum(axis=-1, keepdims=True) - t) * (g / n), -logp * (g / n)

    return Tensor._result(xp.asarray(loss, z.dtype), (z, target), backward)


def binary_cross_entropy(probs, targets, epsilon=1e-7) -> Tensor:
    """Mean of -(t log p + (1 - t) log(1 - p)), p clipped to [epsilon, 1 - epsilon] as Keras does."""
    p = _t(probs, "probs", "binary_cross_entropy")
    target = _like(p, targets, "targets", "binary_cross_entropy")
    t = target.data
    xp = array_module(p.data)
    clipped = xp.clip(p.data, epsilon, 1 - epsilon)
    log_p, log_q = xp.log(clipped), xp.log(1 - clipped)
    loss = -(t * log_p + (1 - t) * log_q).mean()
    inside = (p.data > epsilon) & (p.data < 1 - epsilon)  # the clip passes no gradient outside

    def backward(g):
        scale = g / p.size
        return (clipped - t) / (clipped * (1 - clipped)) * inside * scale, (log_q - log_p) * scale

    return Tensor._result(xp.asarray(loss, p.dtype), (p, target), backward)


def binary_cross_entropy_with_logits(logits, targets) -> Tensor:
    """binary_cross_entropy(sigmoid(logits), targets), computed stably from the logits."""
    z = _t(logits, "logits", "binary_cross_entropy_with_logits")
    target = _like(z, targets, "targets", "binary_cross_entropy_with_logits")
    t = target.data
    xp = array_module(z.data)
    loss = (xp.maximum(z.data, 0) - z.data * t + xp.log1p(xp.exp(-xp.abs(z.data)))).mean()
    return Tensor._result(xp.asarray(loss, z.dtype), (z, target),
                          lambda g: ((_sigmoid(z.data) - t) * (g / z.size), -z.data * (g / z.size)))


def mse_loss(pred, target) -> Tensor:
    """Mean of (pred - target) ** 2 over every element."""
    p = _t(pred, "pred", "mse_loss")
    target = _like(p, target, "target", "mse_loss")
    diff = p.data - target.data
    return Tensor._result(array_module(diff).asarray((diff * diff).mean(), p.dtype), (p, target),
                          lambda g: (diff * (2 * g / p.size), diff * (-2 * g / p.size)))

