"""NumPy oracles for every kernel: short, plainly correct, no cleverness.

Each public function has the signature of its namesake in `zengrad.kernels` and checks its
arguments the same way. The `_compute_*` functions take already-checked arguments; they are
also the "numpy" backend. Layouts: activations NHWC, filters HWIO (kh, kw, in, out).
"""
from __future__ import annotations

import numpy as np

from . import _validate as V


# ---- GEMM ----

def _compute_gemm(a, b, out, trans_a, trans_b, alpha, beta, bias=None, relu=False):
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    result = alpha * product if beta == 0.0 else alpha * product + beta * out
    if bias is not None:
        result = result + bias
    out[...] = np.maximum(result, 0) if relu else result
    return out


def gemm(a, b, out=None, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bias=None, activation=None,
         precision=None):
    """out = act(alpha * op(a) @ op(b) + beta * out + bias); op(a) (M, K), op(b) (K, N), out
    (M, N), bias (N,), act None or "relu".
    precision: None or "float32" (the oracle computes in full precision)."""
    if precision is not None:
        V.cpu_precision("gemm", precision)
    return _compute_gemm(*V.gemm_args("gemm", a, b, out, trans_a, trans_b, alpha, beta, bias, activation))


def _compute_dense_backward(dy, x, w, relu_output, with_dx, with_dw, with_bias):
    g = dy if relu_output is None else _compute_relu_backward(dy, relu_output)
    return (g @ w.T if with_dx else None, x.T @ g if with_dw else None, g.sum(axis=0) if with_bias else None)


def dense_backward(dy, x, w, *, relu_output=None, with_dx=True, with_dw=True, with_bias=False):
    """The gradients of y = act(x @ w + b) from dy (N, out): (dx (N, in), dw (in, out), db (out,)),
    each None unless asked; through the ReLU (y = relu_output) when given."""
    return _compute_dense_backward(*V.dense_backward_args("dense_backward", dy, x, w, relu_output, with_dx, with_dw,
                                                          with_bias))


# ---- convolution ----

def _pad(x, g):
    return np.pad(x, ((0, 0), (g.pt, g.pb), (g.pl, g.pr), (0, 0)))


def _tap(xp, g, i, j):
    """The input pixels that kernel tap (i, j) meets, one per output pixel: (N, Ho, Wo, C)."""
    top, left = i * g.dh, j * g.dw
    return xp[:, top:top + g.sh * (g.ho - 1) + 1:g.sh, left:left + g.sw * (g.wo - 1) + 1:g.sw, :]


def _compute_conv2d(x, w, b, g, relu=False):
    y = np.zeros((g.n, g.ho, g.wo, w.shape[3]), x.dtype)
    xp = _pad(x, g)
    for i in range(g.kh):
        for j in range(g.kw):
            y += _tap(xp, g, i, j) @ w[i, j]
    if b is not None:
        y += b
    return _compute_relu(y) if relu else y


def _compute_relu(x):
    return np.maximum(x, x.dtype.type(0))  # a 0-d x stays of its dtype under NumPy 1.x promotion too


def _compute_adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    t = param.dtype.type
    m += (grad - m) * t(1 - beta_1)
    v += (grad * grad - v) * t(1 - beta_2)
    tiny = np.finfo(param.dtype).tiny  # moments below the smallest normal number are stored as 0
    m[np.abs(m) < tiny] = 0
    v[np.abs(v) < tiny] = 0
    param -= t(alpha) * m / (np.sqrt(v) + t(epsilon))


def _compute_relu_backward(dy, y):
    return np.where(y > 0, dy, 0).astype(dy.dtype)


def _compute_conv2d_backward_data(dy, w, g):
    dxp = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dy.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            _tap(dxp, g, i, j)[...] += dy @ w[i, j].T
    return dxp[:, g.pt:g.pt + g.h, g.pl:g.pl + g.w, :].copy()


def _compute_conv2d_backward_weight(x, dy, w_shape, g, with_bias):
    xp = _pad(x, g)
    dy2 = dy.reshape(-1, w_shape[3])
    dw = np.empty(w_shape, x.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            dw[i, j] = _tap(xp, g, i, j).reshape(-1, g.c).T @ dy2
    return (dw, dy2.sum(axis=0)) if with_bias else dw


def conv2d(x, w, b=None, *, stride=1, padding="valid", dilation=1, activation=None):
    """y = conv(x, w) + b; x (N, H, W, C), w (kh, kw, C, O), b (O,) -> y (N, Ho, Wo, O); max(y, 0)
    with activation="relu"."""
    relu = V.activation("conv2d", activation)
    return _compute_conv2d(*V.conv2d_args("conv2d", x, w, b, stride, padding, dilation), relu)


def relu(x):
    """max(x, 0), elementwise (NaN stays NaN)."""
    return _compute_relu(V.array("relu", "x", x))


def adam_update(param, grad, m, v, *, alpha, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step in place on param, m, v, or on each of four lists of them (see
    zengrad.kernels.adam_update)."""
    if type(param) is list or type(param) is tuple:
        count = V.adam_lists("adam_update", param, grad, m, v)
        steps = [V.adam_args("adam_update", param[i], grad[i], m[i], v[i], alpha, beta_1, beta_2, epsilon, f"[{i}]")
                 for i in range(count)]
    else:
        steps = [V.adam_args("adam_update", param, grad, m, v, alpha, beta_1, beta_2, epsilon)]
    for args in steps:
        _compute_adam_update(*args)


def relu_backward(dy, y):
    """dy where y > 0, else 0."""
    return _compute_relu_backward(*V.relu_backward_args("relu_backward", dy, y))


def conv2d_backward_data(dy, w, x_shape, *, stride=1, padding="valid", dilation=1):
    """dL/dx from dy (N, Ho, Wo, O) and w (kh, kw, C, O) -> dx of x_shape (N, H, W, C)."""
    return _compute_conv2d_backward_data(
        *V.conv2d_backward_data_args("conv2d_backward_data", dy, w, x_shape, stride, padding, dilation))


def conv2d_backward_weight(x, dy, w_shape, *, stride=1, padding="valid", dilation=1, with_bias=False):
    """dL/dw (kh, kw, C, O) from x (N, H, W, C) and dy (N, Ho, Wo, O); with_bias adds dL/db (O,)."""
    args = V.conv2d_backward_weight_args("conv2d_backward_weight", x, dy, w_shape, stride, padding, dilation)
    return _compute_conv2d_backward_weight(*args, V.flag("conv2d_backward_weight", "with_bias", with_bias))


# ---- pooling ----

def _windows(x, g, fill):
    """Every pooling window as (N, Ho, Wo, C, kh*kw); padded positions hold `fill`."""
    xp = np.pad(x, ((0, 0), (g.pt, g.pb), (g.pl, g.pr), (0, 0)), constant_values=fill)
    taps = [_tap(xp, g, i, j) for i in range(g.kh) for j in range(g.kw)]
    return np.stack(taps, axis=-1)


def _window_counts(g):
    """How many real (unpadded) elements each window covers: (Ho, Wo, 1)."""
    return _real_positions(g).sum(axis=-1)[0]


def _first_max(windows, real):
    """Index of each window's first maximum among its real (unpadded) elements; a NaN counts
    as the maximum (as in np.argmax). `real` marks the unpadded positions of each window."""
    winner = np.argmax(np.where(real, windows, -np.inf), axis=-1)
    # Padding ties with a real -inf only when every real element is -inf: take the first real one.
    on_padding = ~np.take_along_axis(np.broadcast_to(real, windows.shape), winner[..., None], axis=-1)[..., 0]
    return np.where(on_padding, np.argmax(real, axis=-1), winner)


def _real_positions(g):
    """Which window positions are real input elements: (1, Ho, Wo, 1, kh*kw) booleans."""
    return _windows(np.ones((1, g.h, g.w, 1)), g, 0.0) > 0


def _tap_to_pixel(tap, g):
    """Window tap index (i * kw + j) of each output -> the input pixel ih * W + iw it names."""
    i, j = np.divmod(tap, g.kw)
    oh = np.arange(g.ho)[None, :, None, None]
    ow = np.arange(g.wo)[None, None, :, None]
    return ((oh * g.sh - g.pt + i * g.dh) * g.w + (ow * g.sw - g.pl + j * g.dw)).astype(np.int32)


def _pixel_to_tap(pixel, g):
    ih, iw = np.divmod(pixel.astype(np.int64), g.w)
    oh = np.arange(g.ho)[None, :, None, None]
    ow = np.arange(g.wo)[None, None, :, None]
    return (ih - (oh * g.sh - g.pt)) // g.dh * g.kw + (iw - (ow * g.sw - g.pl)) // g.dw


def _compute_max_pool2d(x, g, with_indices=False):
    windows = _windows(x, g, -np.inf)
    winner = _first_max(windows, _real_positions(g))
    y = np.take_along_axis(windows, winner[..., None], axis=-1)[..., 0]
    return (y, _tap_to_pixel(winner, g)) if with_indices else y


def _compute_max_pool2d_backward(dy, x, g, indices=None):
    if indices is None:
        winner = _first_max(_windows(x, g, -np.inf), _real_positions(g))
    else:
        V.pool_indices_in_image("max_pool2d_backward", indices, g)
        winner = _pixel_to_tap(indices, g)
    dxp = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dy.dtype)
    for t in range(g.kh * g.kw):
        i, j = divmod(t, g.kw)
        _tap(dxp, g, i, j)[...] += np.where(winner == t, dy, 0)
    return dxp[:, g.pt:g.pt + g.h, g.pl:g.pl + g.w, :].copy()


def _compute_avg_pool2d(x, g):
    return (_windows(x, g, 0.0).sum(axis=-1) / _window_counts(g)).astype(x.dtype)


def _compute_avg_pool2d_backward(dy, x, g):
    share = dy / _window_counts(g).astype(dy.dtype)
    dxp = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dy.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            _tap(dxp, g, i, j)[...] += share
    return dxp[:, g.pt:g.pt + g.h, g.pl:g.pl + g.w, :].copy()


def max_pool2d(x, pool_size=2, *, stride=None, padding="valid", return_indices=False):
    """Max over each window; x (N, H, W, C) -> (N, Ho, Wo, C). Padding is never the maximum.
    return_indices: also the pixel (ih * W + iw, int32) of each window's first maximum."""
    with_indices = V.flag("max_pool2d", "return_indices", return_indices)
    return _compute_max_pool2d(*V.pool_args("max_pool2d", x, pool_size, stride, padding), with_indices)


def max_pool2d_backward(dy, x, pool_size=2, *, stride=None, padding="valid", indices=None, relu_output=None):
    """dL/dx: each dy goes to the first maximum of its window (or to `indices`, from the forward);
    with relu_output, the output of relu(max_pool2d(x)), only where relu_output > 0."""
    func = "max_pool2d_backward"
    dy, x, g = V.pool_backward_args(func, dy, x, pool_size, stride, padding)
    winners = None if indices is None else V.pool_indices(func, indices, g)
    if relu_output is not None:
        dy = _compute_relu_backward(dy, V.relu_output(func, relu_output, dy))
    return _compute_max_pool2d_backward(dy, x, g, winners)


def avg_pool2d(x, pool_size=2, *, stride=None, padding="valid"):
    """Mean over the real (unpadded) elements of each window; x (N, H, W, C) -> (N, Ho, Wo, C)."""
    return _compute_avg_pool2d(*V.pool_args("avg_pool2d", x, pool_size, stride, padding))


def avg_pool2d_backward(dy, x, pool_size=2, *, stride=None, padding="valid"):
    """dL/dx: each dy shared equally among the real elements of its window."""
    return _compute_avg_pool2d_backward(
        *V.pool_backward_args("avg_pool2d_backward", dy, x, pool_size, stride, padding))


# ---- softmax cross-entropy ----

def _compute_softmax_cross_entropy(logits, labels):
    n, c = logits.shape
    V.labels_in_range("softmax_cross_entropy", labels, c)
    with np.errstate(invalid="ignore"):  # NaN rows (from NaN or infinite logits), and no rows: NaN
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        rows = np.log(total[:, 0]) - shifted[np.arange(n), labels]
        loss = np.asarray(rows.sum(dtype=np.float64) / n).astype(logits.dtype)
        return loss, e / total


def _compute_softmax_cross_entropy_backward(probs, labels, dloss):
    n, c = probs.shape
    V.labels_in_range("softmax_cross_entropy_backward", labels, c)
    onehot = np.zeros_like(probs)
    onehot[np.arange(n), labels] = 1
    with np.errstate(divide="ignore"):  # no rows: a scale for nothing
        return (probs - onehot) * (dloss / probs.dtype.type(n))


def softmax_cross_entropy(logits, labels):
    """(mean over rows of -log softmax(logits)[label], softmax(logits)); logits (N, C), labels (N,)."""
    return _compute_softmax_cross_entropy(*V.softmax_cross_entropy_args("softmax_cross_entropy", logits, labels))


def softmax_cross_entropy_backward(probs, labels, dloss):
    """(probs - onehot(labels)) * dloss / N: the gradient of that loss for the logits."""
    return _compute_softmax_cross_entropy_backward(
        *V.softmax_cross_entropy_backward_args("softmax_cross_entropy_backward", probs, labels, dloss))
