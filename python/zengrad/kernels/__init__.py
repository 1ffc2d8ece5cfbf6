"""The kernel API: one function per kernel, argument checks, dispatch to a backend.

Arrays are NumPy (CPU) or CuPy (GPU), float32 or float64 (both operands alike), all arrays of a
call on one device; results come back on that device. Layouts: activations NHWC, filters HWIO
(kh, kw, in, out). padding: "valid" | "same" | int | (ph, pw) | ((top, bottom), (left, right))
for convolutions, "valid" | "same" for pooling; stride and dilation: int | (h, w). Inputs that
are not C-contiguous are copied; `out` must be C-contiguous. `zengrad.kernels.reference` holds
the NumPy oracle of each function.

On the GPU the kernels run on CuPy's current stream of the arrays' device and never wait for
it. How float32 matrix products (gemm, the convolutions) compute there is a setting:
set_matmul_precision("float32" | "tf32" | "bf16"), get_matmul_precision(), and
`with matmul_precision("tf32"): ...` (this thread only); gemm(..., precision=...) overrides it
per call. "float32" (the default) is plain FP32; "tf32"/"bf16" use tensor cores with the inputs
rounded, accumulating in float32. float64, and every CPU backend, always compute in full
precision.
"""
import numpy as np

from . import _validate as V
from . import reference
from ._backends import (available_backends, get_backend, get_matmul_precision, matmul_precision, set_backend,
                        set_matmul_precision, use_backend)
from ._backends import check_precision as _check_precision
from ._backends import current as _current
from ._backends import current_gpu as _current_gpu

_ndarray = np.ndarray

__all__ = [
    "gemm", "dense_backward", "conv2d", "conv2d_backward_data", "conv2d_backward_weight",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward",
    "adam_update", "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "available_backends", "get_backend", "set_backend", "use_backend", "reference",
    "set_matmul_precision", "get_matmul_precision", "matmul_precision",
]

# Each kernel tests its first array: a NumPy array goes straight to the CPU path (the hot path
# of small models, kept to an isinstance check); a GPU array runs on the GPU backend, on the
# array's device; anything else takes the CPU path, whose checks refuse it by name.
#
# On the CPU path, a backend whose kernels check their own arguments (`backend.fast`: the
# compiled one) is tried first, with the geometry these stride/padding/dilation arguments were
# checked for before (V.known_window). It runs the common call, plain arrays whose shapes agree,
# without the Python checks: in a training step of a small model those cost as much as some
# kernels. Whatever it declines (None) takes the checks below, which copy, normalise or refuse.


def _gpu(func, first):
    """The GPU backend for a call whose first array is `first`, or None for the CPU path.
    RuntimeError (saying why) for a GPU array when no GPU backend is available here."""
    if not V.looks_like_gpu_array(first):
        return None
    backend = _current_gpu(func)
    return backend if V.is_gpu_array(first) else None  # another library's GPU array: refused by name


def _known_pool(x_shape, pool_size, stride, padding):
    """V.known_window for a pooling's arguments, as pool_args passes them to V.window."""
    size = (pool_size, pool_size) if type(pool_size) is int else pool_size
    return V.known_window(x_shape, size, size if stride is None else stride, padding, allow_explicit=False)


def gemm(a, b, out=None, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bias=None, activation=None,
         precision=None):
    """out = act(alpha * op(a) @ op(b) + beta * out + bias); op(a) (M, K), op(b) (K, N) -> out (M, N).

    op(a) is a.T when trans_a. Without `out` a new array is returned (beta has nothing to scale).
    bias (N,): added to every row; activation: None or "relu", applied last. Both are fused
    into the kernel (no pass of their own over out).
    precision: None (the matmul-precision setting), "float32", "tf32" or "bf16"; only float32
    on a GPU computes in lower precision (NumPy arrays: "float32" or None).
    """
    if type(a) is _ndarray or (gpu := _gpu("gemm", a)) is None:
        backend = _current()
        # The compiled backend takes the common call (plain float arrays whose shapes agree)
        # without the checks below, which see every other one; a dense layer's three products
        # a step each spent 15-20 us here.
        if precision is None and backend.fast is not None and (
                activation is None or (type(activation) is str and activation == "relu")):
            done = backend.fast.gemm(a, b, out, trans_a, trans_b, alpha, beta, bias, activation is not None)
            if done is not None:
                return done
        if precision is not None:
            V.cpu_precision("gemm", precision)
        return backend.gemm(*V.gemm_args("gemm", a, b, out, trans_a, trans_b, alpha, beta, bias, activation))
    with a.device:
        args = V.gemm_args("gemm", a, b, out, trans_a, trans_b, alpha, beta, bias, activation)
        chosen = get_matmul_precision() if precision is None else _check_precision("gemm", precision)
        return gpu.gemm(*args, chosen)


def dense_backward(dy, x, w, *, relu_output=None, with_dx=True, with_dw=True, with_bias=False):
    """The gradients of a dense layer y = act(x @ w + b) from dy (N, out), the gradient of y:
    (dx (N, in), dw (in, out), db (out,)), each None unless asked (with_dx, with_dw, with_bias).

    relu_output: y, when act is ReLU: dy passes only where y > 0, as through relu_backward, in
    the same call. On the CPU one kernel computes all three; on a GPU the products follow the
    matmul-precision setting, as gemm's."""
    func = "dense_backward"
    if type(dy) is _ndarray or (gpu := _gpu(func, dy)) is None:
        backend = _current()
        if backend.fast is not None and (
                grads := backend.fast.dense_backward(dy, x, w, relu_output, with_dx, with_dw, with_bias)) is not None:
            return grads
        return backend.dense_backward(*V.dense_backward_args(func, dy, x, w, relu_output, with_dx, with_dw, with_bias))
    with dy.device:
        args = V.dense_backward_args(func, dy, x, w, relu_output, with_dx, with_dw, with_bias)
        return gpu.dense_backward(*args, get_matmul_precision())


def conv2d(x, w, b=None, *, stride=1, padding="valid", dilation=1, activation=None):
    """y = conv(x, w) + b; x (N, H, W, C), w (kh, kw, C, O), b (O,) -> y (N, Ho, Wo, O).

    activation="relu" returns max(y, 0), applied inside the kernel while y is in cache."""
    relu = V.activation("conv2d", activation)
    if type(x) is _ndarray or (gpu := _gpu("conv2d", x)) is None:
        backend = _current()
        if backend.fast is not None and type(x) is _ndarray and type(w) is _ndarray \
                and (g := V.known_window(x.shape, w.shape[:2], stride, padding, dilation)) \
                and (y := backend.fast.conv2d(x, w, b, g, relu)) is not None:
            return y
        return backend.conv2d(*V.conv2d_args("conv2d", x, w, b, stride, padding, dilation), relu)
    with x.device:
        return gpu.conv2d(*V.conv2d_args("conv2d", x, w, b, stride, padding, dilation), relu)


def conv2d_backward_data(dy, w, x_shape, *, stride=1, padding="valid", dilation=1):
    """dL/dx of conv2d: dy (N, Ho, Wo, O), w (kh, kw, C, O) -> dx of x_shape (N, H, W, C)."""
    func = "conv2d_backward_data"
    if type(dy) is _ndarray or (gpu := _gpu(func, dy)) is None:
        backend = _current()
        if backend.fast is not None and type(w) is _ndarray \
                and (g := V.known_window(x_shape, w.shape[:2], stride, padding, dilation)) \
                and (dx := backend.fast.conv2d_backward_data(dy, w, x_shape, g)) is not None:
            return dx
        return backend.conv2d_backward_data(
            *V.conv2d_backward_data_args(func, dy, w, x_shape, stride, padding, dilation))
    with dy.device:
        return gpu.conv2d_backward_data(*V.conv2d_backward_data_args(func, dy, w, x_shape, stride, padding, dilation))


def conv2d_backward_weight(x, dy, w_shape, *, stride=1, padding="valid", dilation=1, with_bias=False):
    """dL/dw of conv2d: x (N, H, W, C), dy (N, Ho, Wo, O) -> dw of w_shape (kh, kw, C, O).

    with_bias=True returns (dw, db) with db = dy summed over N, Ho, Wo: (O,).
    """
    func = "conv2d_backward_weight"
    if type(x) is _ndarray or (gpu := _gpu(func, x)) is None:
        backend = _current()
        if backend.fast is not None and type(x) is _ndarray and type(w_shape) is tuple and type(with_bias) is bool \
                and (g := V.known_window(x.shape, w_shape[:2], stride, padding, dilation)) \
                and (dw := backend.fast.conv2d_backward_weight(x, dy, w_shape, g, with_bias)) is not None:
            return dw
        args = V.conv2d_backward_weight_args(func, x, dy, w_shape, stride, padding, dilation)
        return backend.conv2d_backward_weight(*args, V.flag(func, "with_bias", with_bias))
    with x.device:
        args = V.conv2d_backward_weight_args(func, x, dy, w_shape, stride, padding, dilation)
        return gpu.conv2d_backward_weight(*args, V.flag(func, "with_bias", with_bias))


def max_pool2d(x, pool_size=2, *, stride=None, padding="valid", return_indices=False):
    """Max over each window; x (N, H, W, C) -> (N, Ho, Wo, C). stride None means pool_size.

    return_indices=True returns (y, indices): int32 (N, Ho, Wo, C), the pixel ih * W + iw of
    each window's first maximum, which max_pool2d_backward can use instead of searching again."""
    with_indices = V.flag("max_pool2d", "return_indices", return_indices)
    if type(x) is _ndarray or (gpu := _gpu("max_pool2d", x)) is None:
        backend = _current()
        if backend.fast is not None and type(x) is _ndarray \
                and (g := _known_pool(x.shape, pool_size, stride, padding)) \
                and (y := backend.fast.max_pool2d(x, g, with_indices)) is not None:
            return y
        return backend.max_pool2d(*V.pool_args("max_pool2d", x, pool_size, stride, padding), with_indices)
    with x.device:
        return gpu.max_pool2d(*V.pool_args("max_pool2d", x, pool_size, stride, padding), with_indices)


def max_pool2d_backward(dy, x, pool_size=2, *, stride=None, padding="valid", indices=None, relu_output=None):
    """dL/dx of max_pool2d: each dy goes to the first maximum of its window; -> x.shape.

    `indices` from max_pool2d(..., return_indices=True) spares the search for the maxima.
    relu_output (N, Ho, Wo, C): the output of a ReLU after the pooling, relu(max_pool2d(x)), of
    which dy is then the gradient: it reaches a winner only where relu_output > 0, as through
    relu_backward first, but in the same pass."""
    func = "max_pool2d_backward"
    if type(dy) is _ndarray or (gpu := _gpu(func, dy)) is None:
        backend = _current()
        if backend.fast is not None and type(x) is _ndarray \
                and (g := _known_pool(x.shape, pool_size, stride, padding)) \
                and (dx := backend.fast.max_pool2d_backward(dy, x, indices, relu_output, g)) is not None \
                and dx is not False:
            return dx
        return backend.max_pool2d_backward(*_max_pool2d_backward_args(backend, dy, x, pool_size, stride, padding,
                                                                      indices, relu_output))
    with dy.device:
        return gpu.max_pool2d_backward(*_max_pool2d_backward_args(gpu, dy, x, pool_size, stride, padding, indices,
                                                                  relu_output))


def _max_pool2d_backward_args(backend, dy, x, pool_size, stride, padding, indices, relu_output):
    """(dy, x, g, winners) checked for `backend`'s max_pool2d_backward; dy through the ReLU's
    gate (`backend`'s relu_backward) when relu_output is given."""
    func = "max_pool2d_backward"
    dy, x, g = V.pool_backward_args(func, dy, x, pool_size, stride, padding)
    winners = None if indices is None else V.pool_indices(func, indices, g, dy)
    if relu_output is not None:
        dy = backend.relu_backward(dy, V.relu_output(func, relu_output, dy))
    return dy, x, g, winners


def relu(x):
    """max(x, 0), elementwise (NaN stays NaN); any shape."""
    if type(x) is _ndarray or (gpu := _gpu("relu", x)) is None:
        backend = _current()
        if backend.fast is not None and (y := backend.fast.relu(x)) is not None:
            return y
        return backend.relu(V.array("relu", "x", x))
    with x.device:
        return gpu.relu(V.array("relu", "x", x))


def relu_backward(dy, y):
    """dL/dx of relu: dy where y = relu(x) > 0, else 0; dy and y of one shape."""
    if type(dy) is _ndarray or (gpu := _gpu("relu_backward", dy)) is None:
        backend = _current()
        if backend.fast is not None and (dx := backend.fast.relu_backward(dy, y)) is not None:
            return dx
        return backend.relu_backward(*V.relu_backward_args("relu_backward", dy, y))
    with dy.device:
        return gpu.relu_backward(*V.relu_backward_args("relu_backward", dy, y))


def adam_update(param, grad, m, v, *, alpha, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step, in place on param, m and v (any shape, all alike), as Keras computes it:
    m += (grad - m)(1 - beta_1); v += (grad² - v)(1 - beta_2); param -= alpha m / (sqrt(v) + epsilon),
    alpha = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t).

    param, grad, m and v may also be four lists of arrays, of one length: one call updates every
    parameter of a model (each as alone, in order), once all of them have passed the checks."""
    func = "adam_update"
    backend = _current()
    if backend.fast is not None and backend.fast.adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
        return  # plain host arrays, or lists of them: checked in C
    if type(param) is list or type(param) is tuple:
        count = V.adam_lists(func, param, grad, m, v)
        steps = [_adam_step(func, param[i], grad[i], m[i], v[i], alpha, beta_1, beta_2, epsilon, f"[{i}]")
                 for i in range(count)]
    else:
        steps = [_adam_step(func, param, grad, m, v, alpha, beta_1, beta_2, epsilon)]
    for run, args in steps:  # once every parameter has passed the checks
        run(*args)


def _adam_step(func, param, grad, m, v, alpha, beta_1, beta_2, epsilon, at=""):
    """(the backend's adam_update, its checked arguments) for one parameter, on grad's device."""
    if type(grad) is _ndarray or (gpu := _gpu(func, grad)) is None:
        return _current().adam_update, V.adam_args(func, param, grad, m, v, alpha, beta_1, beta_2, epsilon, at)

    def on_device(*args):
        with grad.device:
            gpu.adam_update(*args)

    with grad.device:
        return on_device, V.adam_args(func, param, grad, m, v, alpha, beta_1, beta_2, epsilon, at)


def avg_pool2d(x, pool_size=2, *, stride=None, padding="valid"):
    """Mean over the real (unpadded) elements of each window; x (N, H, W, C) -> (N, Ho, Wo, C)."""
    if type(x) is _ndarray or (gpu := _gpu("avg_pool2d", x)) is None:
        backend = _current()
        if backend.fast is not None and type(x) is _ndarray \
                and (g := _known_pool(x.shape, pool_size, stride, padding)) \
                and (y := backend.fast.avg_pool2d(x, g)) is not None:
            return y
        return backend.avg_pool2d(*V.pool_args("avg_pool2d", x, pool_size, stride, padding))
    with x.device:
        return gpu.avg_pool2d(*V.pool_args("avg_pool2d", x, pool_size, stride, padding))


def avg_pool2d_backward(dy, x, pool_size=2, *, stride=None, padding="valid"):
    """dL/dx of avg_pool2d: each dy shared equally among its window's real elements; -> x.shape."""
    func = "avg_pool2d_backward"
    if type(dy) is _ndarray or (gpu := _gpu(func, dy)) is None:
        backend = _current()
        if backend.fast is not None and type(x) is _ndarray \
                and (g := _known_pool(x.shape, pool_size, stride, padding)) \
                and (dx := backend.fast.avg_pool2d_backward(dy, x, g)) is not None:
            return dx
        return backend.avg_pool2d_backward(*V.pool_backward_args(func, dy, x, pool_size, stride, padding))
    with dy.device:
        return gpu.avg_pool2d_backward(*V.pool_backward_args(func, dy, x, pool_size, stride, padding))


def softmax_cross_entropy(logits, labels):
    """A classifier's loss, fused: logits (N, C), integer labels (N,) in [0, C) -> (loss, probs).

    loss: 0-d, the mean over rows of -log softmax(logits)[label] (each row's term in the logits'
    dtype, their sum in float64); probs (N, C): the softmax of each row. On a GPU the labels'
    range is not checked (that would wait for the device): a row whose label is outside it gets a
    NaN loss, and NaN gradients from the backward."""
    func = "softmax_cross_entropy"
    if type(logits) is _ndarray or (gpu := _gpu(func, logits)) is None:
        backend = _current()
        if backend.fast is not None and (result := backend.fast.softmax_cross_entropy(logits, labels)):
            return result
        return backend.softmax_cross_entropy(*V.softmax_cross_entropy_args(func, logits, labels))
    with logits.device:
        return gpu.softmax_cross_entropy(*V.softmax_cross_entropy_args(func, logits, labels))


def softmax_cross_entropy_backward(probs, labels, dloss):
    """The gradient of softmax_cross_entropy's loss for the logits: probs (N, C) from it, labels
    (N,), dloss the gradient of the loss (a 0-d array, or a number) -> (probs - onehot(labels)) *
    dloss / N, (N, C)."""
    func = "softmax_cross_entropy_backward"
    if type(probs) is _ndarray or (gpu := _gpu(func, probs)) is None:
        backend = _current()
        if backend.fast is not None and (dz := backend.fast.softmax_cross_entropy_backward(probs, labels, dloss)) \
                is not None and dz is not False:
            return dz
        return backend.softmax_cross_entropy_backward(
            *V.softmax_cross_entropy_backward_args(func, probs, labels, dloss))
    with probs.device:
        return gpu.softmax_cross_entropy_backward(*V.softmax_cross_entropy_backward_args(func, probs, labels, dloss))
