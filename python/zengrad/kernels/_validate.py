"""Argument checking and normalisation shared by every backend.

Each public kernel checks its arguments here before any backend runs. A bad argument raises
TypeError (wrong type or dtype) or ValueError (wrong shape or value); the message names the
function, the argument, what was expected and what was given.

Inputs that are not C-contiguous are copied to a C-contiguous array (never modified); an
``out`` array must already be C-contiguous, because a copy would hide the result.

Arrays are NumPy arrays (CPU) or CuPy arrays (GPU); all arrays of one call live on one device.
CuPy is never imported here: a CuPy array can only exist once the caller imported CuPy, so
`sys.modules` has it, and NumPy arrays take the first, cheapest branch of every check.
"""
from __future__ import annotations

import math
import sys
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ndarray = np.ndarray


def fail(exc, func: str, name: str, expected: str, got) -> None:
    raise exc(f"{func}(): argument '{name}' must be {expected}, got {got}")


def is_gpu_array(value) -> bool:
    """A CuPy array (without importing CuPy)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(value, cupy.ndarray)


def looks_like_gpu_array(value) -> bool:
    """A GPU array of some library (CuPy, or anything with __cuda_array_interface__)."""
    return is_gpu_array(value) or hasattr(type(value), "__cuda_array_interface__")


def device_name(value) -> str:
    return "cpu" if isinstance(value, np.ndarray) else f"cuda:{value.device.id}"


def array(func: str, name: str, value, ndim: int | None = None):
    """A float32/float64 NumPy or CuPy array of `ndim` dimensions, made C-contiguous."""
    if not isinstance(value, np.ndarray) and not is_gpu_array(value):
        fail(TypeError, func, name, "a NumPy or CuPy array", type(value).__name__)
    if value.dtype not in FLOAT_DTYPES:
        fail(TypeError, func, name, "of dtype float32 or float64", value.dtype)
    if ndim is not None and value.ndim != ndim:
        fail(ValueError, func, name, f"{ndim}-dimensional", f"shape {value.shape}")
    return value if value.flags.c_contiguous else value.copy(order="C")


def same_device(func: str, reference_name: str, reference, name: str, value) -> None:
    """`value` lives where `reference` does: both NumPy, or both CuPy on the same GPU."""
    on_cpu = isinstance(reference, np.ndarray)
    if isinstance(value, np.ndarray) is not on_cpu or (not on_cpu and value.device.id != reference.device.id):
        kind = "a NumPy array" if on_cpu else "a CuPy array"
        fail(TypeError, func, name, f"{kind} on {device_name(reference)} like '{reference_name}' "
             "(all arrays of a call on one device)", f"an array on {device_name(value)}")


def same_dtype(func: str, reference_name: str, reference, **others) -> None:
    """Each of `others` (None skipped) on the device of `reference` and of its dtype."""
    on_cpu = type(reference) is _ndarray
    for name, value in others.items():
        if value is None:
            continue
        if not on_cpu or type(value) is not _ndarray:  # two plain NumPy arrays: nothing to check
            same_device(func, reference_name, reference, name, value)
        if value.dtype != reference.dtype:
            fail(TypeError, func, name, f"{reference.dtype} like '{reference_name}'", value.dtype)


def _overlap(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return np.shares_memory(a, b)
    # CuPy's exact test runs kernels and waits for them; the bounds test is host arithmetic, exact
    # for the contiguous arrays the kernels write, cautious for strided inputs.
    return sys.modules["cupy"].may_share_memory(a, b)


def _writeable(a) -> bool:
    return a.flags.writeable if isinstance(a, np.ndarray) else True  # CuPy arrays always are


def out_array(func: str, out, shape: tuple, dtype, *inputs):
    """Check a caller-supplied output array: right type, device, shape, dtype, layout, no aliasing."""
    reference = inputs[0]
    if not isinstance(out, np.ndarray) and not is_gpu_array(out):
        fail(TypeError, func, "out", "a NumPy or CuPy array", type(out).__name__)
    same_device(func, "a", reference, "out", out)
    if out.dtype != dtype:
        fail(TypeError, func, "out", f"of dtype {np.dtype(dtype)}", out.dtype)
    if out.shape != tuple(shape):
        fail(ValueError, func, "out", f"of shape {tuple(shape)}", f"shape {out.shape}")
    if not out.flags.c_contiguous or not _writeable(out):
        fail(ValueError, func, "out", "a writeable C-contiguous array", "a non-contiguous or read-only one")
    for x in inputs:
        if _overlap(out, x):
            fail(ValueError, func, "out", "memory separate from the inputs", "an array that overlaps an input")
    return out


def empty_like_device(reference, shape, dtype):
    """A new array of `shape` on the device of `reference` (NumPy or CuPy)."""
    if isinstance(reference, np.ndarray):
        return np.empty(shape, dtype)
    cupy = sys.modules["cupy"]
    with reference.device:
        return cupy.empty(shape, dtype)


def cpu_precision(func: str, precision) -> None:
    """A GEMM precision asked for NumPy arrays: the CPU computes in full precision only."""
    from ._backends import check_precision

    if check_precision(func, precision) != "float32":
        fail(ValueError, func, "precision", "'float32' or None for NumPy arrays (the CPU computes in full "
             "precision; 'tf32' and 'bf16' are for float32 CuPy arrays)", repr(precision))


def flag(func: str, name: str, value) -> bool:
    if type(value) is bool:  # the common case first: these checks run on every kernel call
        return value
    if not isinstance(value, (bool, np.bool_)):
        fail(TypeError, func, name, "a bool", type(value).__name__)
    return bool(value)


def scalar(func: str, name: str, value) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        fail(TypeError, func, name, "a real number", type(value).__name__)
    value = float(value)
    if not np.isfinite(value):
        fail(ValueError, func, name, "finite", value)
    return value


def positive_pair(func: str, name: str, value) -> tuple[int, int]:
    """An int or a pair of ints, each >= 1, as (h, w)."""
    if type(value) is int and value >= 1:
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int \
            and value[0] >= 1 and value[1] >= 1:
        return value
    pair = (value, value) if isinstance(value, Integral) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) for v in pair)):
        fail(TypeError, func, name, "an int or a pair of ints", repr(value))
    if min(pair) < 1:
        fail(ValueError, func, name, "positive", repr(value))
    return int(pair[0]), int(pair[1])


def shape_tuple(func: str, name: str, value, ndim: int) -> tuple[int, ...]:
    if type(value) is tuple and len(value) == ndim and all(type(v) is int and v >= 0 for v in value):
        return value  # the common case (an array's .shape) first: this runs on every backward call
    if (not isinstance(value, (tuple, list)) or len(value) != ndim
            or not all(isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) for v in value)):
        fail(TypeError, func, name, f"a tuple of {ndim} ints", repr(value))
    if min(value) < 0:
        fail(ValueError, func, name, "non-negative", repr(value))
    return tuple(int(v) for v in value)


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int, int]:
    """Keras/TensorFlow "same": output ceil(size / stride), extra padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def _explicit_padding(func: str, padding) -> tuple[tuple[int, int], tuple[int, int]]:
    def is_int(v):
        return isinstance(v, Integral) and not isinstance(v, (bool, np.bool_))

    if is_int(padding):
        spec = ((padding, padding), (padding, padding))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(is_int(p) for p in padding):
        spec = ((padding[0], padding[0]), (padding[1], padding[1]))
    elif (isinstance(padding, (tuple, list)) and len(padding) == 2
          and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(v) for v in p) for p in padding)):
        spec = tuple(tuple(p) for p in padding)
    else:
        fail(TypeError, func, "padding",
             "'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right))", repr(padding))
    if min(spec[0] + spec[1]) < 0:
        fail(ValueError, func, "padding", "non-negative", repr(padding))
    return tuple(tuple(int(v) for v in p) for p in spec)


class Window(NamedTuple):
    """Geometry of a sliding-window op on an NHWC input (convolution or pooling); a tuple, so
    that it passes to the compiled kernels as it is."""
    n: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    ho: int
    wo: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int

    @property
    def x_shape(self):
        return (self.n, self.h, self.w, self.c)


# Window extents (padded input, dilated kernel) must stay far from overflowing C's 64-bit index
# arithmetic; a stride beyond the padded input is clamped to it, which changes no result.
MAX_EXTENT = 2**31 - 1


def _int_or_int_pair(value) -> bool:
    return type(value) is int or (type(value) is tuple and len(value) == 2
                                  and type(value[0]) is int and type(value[1]) is int)


# Geometries already worked out, by their exact arguments: a training step asks for the same few
# every time (the forward and both backward passes of each layer). Only plain ints and strings
# make keys: 1.0 == 1 and True == 1, and those must still be refused.
_windows: dict = {}
_MAX_WINDOWS = 4096


def window(func: str, x_shape, kernel, stride, padding, dilation=(1, 1), *, allow_explicit=True,
           x_name="x") -> Window:
    """Normalise stride/padding/dilation for an NHWC input of `x_shape` (ints) and a kernel (kh, kw);
    `x_name` is the argument that holds the input (or its shape), for error messages."""
    key = None
    if type(padding) is str and _int_or_int_pair(stride) and _int_or_int_pair(dilation):
        key = (x_shape, kernel, stride, padding, dilation, allow_explicit)
        known = _windows.get(key)
        if known is not None:
            return known
    g = _window(func, x_shape, kernel, stride, padding, dilation, allow_explicit, x_name)
    if key is not None:
        if len(_windows) >= _MAX_WINDOWS:
            _windows.clear()
        _windows[key] = g
    return g


def known_window(x_shape, kernel, stride, padding, dilation=(1, 1), allow_explicit=True):
    """The geometry `window` worked out and checked before for exactly these arguments, or None.
    The kernels' fast path: a compiled kernel given it checks the arrays against it. Shapes the
    caller gave may hold look-alikes of ints (2.0 hashes as 2); the compiled kernel refuses those."""
    if not (type(padding) is str and _int_or_int_pair(stride) and _int_or_int_pair(dilation)
            and _int_or_int_pair(kernel) and type(x_shape) is tuple):
        return None
    try:
        return _windows.get((x_shape, kernel, stride, padding, dilation, allow_explicit))
    except TypeError:  # an unhashable item in x_shape
        return None


def _window(func, x_shape, kernel, stride, padding, dilation, allow_explicit, x_name) -> Window:
    n, h, w, c = x_shape
    kh, kw = kernel
    sh, sw = positive_pair(func, "stride", stride)
    dh, dw = positive_pair(func, "dilation", dilation)
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if max(span_h, span_w) > MAX_EXTENT:
        fail(ValueError, func, "dilation", f"small enough for a window of at most {MAX_EXTENT} pixels",
             repr(dilation))
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            pads = ((0, 0), (0, 0))
        elif mode == "same":
            _, t, b = _same_padding(h, span_h, sh)
            _, l, r = _same_padding(w, span_w, sw)
            pads = ((t, b), (l, r))
        else:
            fail(ValueError, func, "padding", "'valid' or 'same'", repr(padding))
    elif allow_explicit:
        pads = _explicit_padding(func, padding)
    else:
        fail(TypeError, func, "padding", "'valid' or 'same'", repr(padding))
    (pt, pb), (pl, pr) = pads
    if max(h + pt + pb, w + pl + pr) > MAX_EXTENT:
        fail(ValueError, func, "padding", f"small enough for a padded input of at most {MAX_EXTENT} pixels",
             repr(padding))
    if h + pt + pb < span_h or w + pl + pr < span_w:
        fail(ValueError, func, x_name,
             f"at least as large as the (dilated) window {span_h}x{span_w} after padding",
             f"spatial size {h}x{w} with padding {pads}")
    ho = (h + pt + pb - span_h) // sh + 1
    wo = (w + pl + pr - span_w) // sw + 1
    sh, sw = min(sh, h + pt + pb), min(sw, w + pl + pr)
    return Window(n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr)


def nonempty_dims(func: str, name: str, shape, dims: str) -> None:
    """Refuse zero-sized dims among `dims` (letters naming positions, e.g. 'HWC' of NHWC)."""
    if 0 not in shape:
        return
    for letter, size in zip(dims, shape):
        if letter != "_" and size == 0:
            fail(ValueError, func, name, f"non-empty in dimension {letter}", f"shape {tuple(shape)}")


# ---- per-kernel argument sets (used by the public API and by the reference oracles) ----

def gemm_args(func, a, b, out, trans_a, trans_b, alpha, beta, bias=None, act=None):
    """-> (a, b, out, trans_a, trans_b, alpha, beta, bias, relu) with `out` allocated when None
    (beta 0); bias None or (N,); act the activation's name (None or "relu")."""
    given = (a, b) if bias is None else (a, b, bias)  # before any copy: `out` must not overlap them
    a = array(func, "a", a, 2)
    b = array(func, "b", b, 2)
    if bias is not None:
        bias = array(func, "bias", bias, 1)
    same_dtype(func, "a", a, b=b, bias=bias)
    trans_a = flag(func, "trans_a", trans_a)
    trans_b = flag(func, "trans_b", trans_b)
    alpha = scalar(func, "alpha", alpha)
    beta = scalar(func, "beta", beta)
    relu = activation(func, act)
    m, k = a.shape[::-1] if trans_a else a.shape
    k2, n = b.shape[::-1] if trans_b else b.shape
    if k != k2:
        fail(ValueError, func, "b", f"{k} rows in op(b) to match the {k} columns of op(a)",
             f"op(b) of shape {(k2, n)} (a {a.shape}, trans_a={trans_a}; b {b.shape}, trans_b={trans_b})")
    if bias is not None and bias.shape != (n,):
        fail(ValueError, func, "bias", f"of shape ({n},) (a value per column of the result)", f"shape {bias.shape}")
    if out is None:
        out, beta = (np.empty((m, n), a.dtype) if type(a) is _ndarray
                     else empty_like_device(a, (m, n), a.dtype)), 0.0
    else:
        out = out_array(func, out, (m, n), a.dtype, *given)
    return a, b, out, trans_a, trans_b, alpha, beta, bias, relu


def _conv_common(func, x_name, x, w_shape, stride, padding, dilation):
    nonempty_dims(func, x_name, x.shape, "_HWC")
    nonempty_dims(func, "w", w_shape, "HWIO")
    if w_shape[2] != x.shape[3]:
        fail(ValueError, func, "w", f"{x.shape[3]} input channels (w.shape[2]) to match the input",
             f"shape {tuple(w_shape)}")
    return window(func, x.shape, w_shape[:2], stride, padding, dilation)


ACTIVATIONS = (None, "relu")


def activation(func, value) -> bool:
    """True for "relu" (fused into the kernel), False for None."""
    if value not in ACTIVATIONS:
        fail(ValueError, func, "activation", "None or 'relu'", repr(value))
    return value == "relu"


def conv2d_args(func, x, w, b, stride, padding, dilation):
    """-> (x, w, b, g) for y = conv2d(x, w) + b; x NHWC, w HWIO, b (O,)."""
    x = array(func, "x", x, 4)
    w = array(func, "w", w, 4)
    if b is not None:
        b = array(func, "b", b, 1)
    same_dtype(func, "x", x, w=w, b=b)
    g = _conv_common(func, "x", x, w.shape, stride, padding, dilation)
    if b is not None and b.shape != (w.shape[3],):
        fail(ValueError, func, "b", f"of shape ({w.shape[3]},)", f"shape {b.shape}")
    return x, w, b, g


def conv2d_backward_data_args(func, dy, w, x_shape, stride, padding, dilation):
    """-> (dy, w, g) where g describes the forward convolution of an x of `x_shape`."""
    dy = array(func, "dy", dy, 4)
    w = array(func, "w", w, 4)
    same_dtype(func, "dy", dy, w=w)
    x_shape = shape_tuple(func, "x_shape", x_shape, 4)
    nonempty_dims(func, "x_shape", x_shape, "_HWC")
    nonempty_dims(func, "w", w.shape, "HWIO")
    if w.shape[2] != x_shape[3]:
        fail(ValueError, func, "w", f"{x_shape[3]} input channels (w.shape[2]) to match x_shape",
             f"shape {w.shape}")
    g = window(func, x_shape, w.shape[:2], stride, padding, dilation, x_name="x_shape")
    expected = (g.n, g.ho, g.wo, w.shape[3])
    if dy.shape != expected:
        fail(ValueError, func, "dy", f"of shape {expected} (the forward output)", f"shape {dy.shape}")
    return dy, w, g


def conv2d_backward_weight_args(func, x, dy, w_shape, stride, padding, dilation):
    """-> (x, dy, w_shape, g)."""
    x = array(func, "x", x, 4)
    dy = array(func, "dy", dy, 4)
    same_dtype(func, "x", x, dy=dy)
    w_shape = shape_tuple(func, "w_shape", w_shape, 4)
    nonempty_dims(func, "x", x.shape, "_HWC")
    nonempty_dims(func, "w_shape", w_shape, "HWIO")
    if w_shape[2] != x.shape[3]:
        fail(ValueError, func, "w_shape", f"{x.shape[3]} input channels (w_shape[2]) to match x",
             repr(w_shape))
    g = window(func, x.shape, w_shape[:2], stride, padding, dilation)
    expected = (g.n, g.ho, g.wo, w_shape[3])
    if dy.shape != expected:
        fail(ValueError, func, "dy", f"of shape {expected} (the forward output)", f"shape {dy.shape}")
    return x, dy, w_shape, g


def pool_args(func, x, pool_size, stride, padding):
    """-> (x, g) for a pooling of NHWC x; stride None means stride = pool_size."""
    x = array(func, "x", x, 4)
    nonempty_dims(func, "x", x.shape, "_HWC")
    size = positive_pair(func, "pool_size", pool_size)
    g = window(func, x.shape, size, size if stride is None else stride, padding, allow_explicit=False)
    return x, g


def pool_backward_args(func, dy, x, pool_size, stride, padding):
    """-> (dy, x, g): x is the forward input (its shape for average pooling)."""
    x, g = pool_args(func, x, pool_size, stride, padding)
    dy = array(func, "dy", dy, 4)
    same_dtype(func, "x", x, dy=dy)
    expected = (g.n, g.ho, g.wo, g.c)
    if dy.shape != expected:
        fail(ValueError, func, "dy", f"of shape {expected} (the forward output)", f"shape {dy.shape}")
    return dy, x, g


def pool_indices(func, indices, g, dy=None):
    """The winners from max_pool2d(..., return_indices=True): int32 (N, Ho, Wo, C), on the device
    of dy. Their range, [0, H*W), is each CPU backend's to check (pool_indices_in_image) where it
    is cheapest: the compiled kernel while it reads them. On a GPU it is not checked (that would
    wait for the device): the kernel routes the gradient of an index outside [0, H*W) nowhere."""
    if not isinstance(indices, np.ndarray) and not is_gpu_array(indices):
        fail(TypeError, func, "indices", "a NumPy or CuPy array", type(indices).__name__)
    if dy is not None:
        same_device(func, "dy", dy, "indices", indices)
    if indices.dtype != np.int32:
        fail(TypeError, func, "indices", "of dtype int32 (from max_pool2d(..., return_indices=True))",
             indices.dtype)
    if indices.shape != (g.n, g.ho, g.wo, g.c):
        fail(ValueError, func, "indices", f"of shape {(g.n, g.ho, g.wo, g.c)}", f"shape {indices.shape}")
    if not isinstance(indices, np.ndarray):
        return sys.modules["cupy"].ascontiguousarray(indices)
    return np.ascontiguousarray(indices)


# Up to this many values (a batch's labels), Python's min, max or compare over a list beats
# NumPy's calls: in a training step, right after the kernels have swept the caches, a reduction
# over a batch's labels took 13-20 us and the list 3-6 us (the accuracy metric's hits: 6 us less).
SMALL_HOST_ARRAY = 256


def outside_range(values, limit) -> bool:
    """Whether some of the (host) `values` lie outside [0, limit). Signed integers in one pass
    where the limit is within their type: read as unsigned, a negative value is beyond it."""
    if not values.size:
        return False
    if values.size <= SMALL_HOST_ARRAY and values.dtype.kind in "iu":
        listed = values.ravel().tolist()
        return min(listed) < 0 or max(listed) >= limit
    if values.dtype.kind == "i" and limit <= np.iinfo(values.dtype).max:
        return bool(values.view(values.dtype.str.replace("i", "u")).max() >= limit)
    if values.dtype.kind == "u":
        return bool(values.max() >= limit)
    return bool(values.min() < 0 or values.max() >= limit)


def pool_indices_in_image(func, indices, g) -> None:
    """ValueError unless every one of the (host) `indices` is a pixel of the image, in [0, H*W)."""
    if outside_range(indices, g.h * g.w):
        fail(ValueError, func, "indices", f"pixel indices in [0, {g.h * g.w})",
             f"values in [{indices.min()}, {indices.max()}]")


def adam_args(func, param, grad, m, v, alpha, beta_1, beta_2, epsilon, at=""):
    """-> (param, grad, m, v, alpha, beta_1, beta_2, epsilon); param, m, v are updated in place.
    `at` follows the arrays' names in messages: "[3]" for the fourth of lists of them."""
    grad = array(func, "grad" + at, grad)
    state = {"param": param, "m": m, "v": v}
    for name, value in state.items():
        array(func, name + at, value)
        same_dtype(func, "grad" + at, grad, **{name + at: value})
        if value.shape != grad.shape:
            fail(ValueError, func, name + at, f"of shape {grad.shape} like 'grad{at}'", f"shape {value.shape}")
        if not value.flags.c_contiguous or not _writeable(value):
            fail(ValueError, func, name + at, "a writeable C-contiguous array (it is updated in place)",
                 "a non-contiguous or read-only one")
    for first, second in (("param", "m"), ("param", "v"), ("m", "v")):
        if _overlap(state[first], state[second]):
            fail(ValueError, func, second + at, f"memory separate from '{first}{at}'", "an overlapping array")
    return (param, grad, m, v, scalar(func, "alpha", alpha), scalar(func, "beta_1", beta_1),
            scalar(func, "beta_2", beta_2), scalar(func, "epsilon", epsilon))


def adam_lists(func, param, grad, m, v) -> int:
    """The length of param, grad, m and v given as lists (or tuples) of arrays, all of one length."""
    for name, value in (("grad", grad), ("m", m), ("v", v)):
        if type(value) not in (list, tuple):
            fail(TypeError, func, name, "a list of arrays like 'param'", type(value).__name__)
        if len(value) != len(param):
            fail(ValueError, func, name, f"{len(param)} arrays like 'param'", f"{len(value)}")
    return len(param)


def relu_output(func, value, dy):
    """The output of a ReLU that the gradient `dy` passes through: like dy (shape, dtype, device)."""
    value = array(func, "relu_output", value)
    same_dtype(func, "dy", dy, relu_output=value)
    if value.shape != dy.shape:
        fail(ValueError, func, "relu_output", f"of shape {dy.shape} like 'dy'", f"shape {value.shape}")
    return value


def dense_backward_args(func, dy, x, w, relu_output_, with_dx, with_dw, with_bias):
    """(dy, x, w, relu_output, with_dx, with_dw, with_bias) of a dense layer's backward pass:
    dy (N, out), x (N, in), w (in, out), relu_output None or like dy; all of one dtype and device."""
    dy = array(func, "dy", dy, 2)
    x = array(func, "x", x, 2)
    w = array(func, "w", w, 2)
    same_dtype(func, "dy", dy, x=x, w=w)
    if x.shape[0] != dy.shape[0]:
        fail(ValueError, func, "x", f"of {dy.shape[0]} rows like 'dy'", f"shape {x.shape}")
    if w.shape != (x.shape[1], dy.shape[1]):
        fail(ValueError, func, "w", f"of shape {(x.shape[1], dy.shape[1])} (x's columns, dy's columns)",
             f"shape {w.shape}")
    if relu_output_ is not None:
        relu_output_ = relu_output(func, relu_output_, dy)
    return (dy, x, w, relu_output_, flag(func, "with_dx", with_dx), flag(func, "with_dw", with_dw),
            flag(func, "with_bias", with_bias))


def relu_backward_args(func, dy, y):
    dy = array(func, "dy", dy)
    y = array(func, "y", y)
    same_dtype(func, "dy", dy, y=y)
    if y.shape != dy.shape:
        fail(ValueError, func, "y", f"of shape {dy.shape} like 'dy'", f"shape {y.shape}")
    return dy, y


# ---- softmax cross-entropy ----

def class_scores(func: str, name: str, value):
    """A float (N, C) array with at least one class."""
    value = array(func, name, value, 2)
    if value.shape[1] == 0:
        fail(ValueError, func, name, "of shape (N, C) with C >= 1", f"shape {value.shape}")
    return value


def class_labels(func: str, value, scores, scores_name: str):
    """Class indices for the rows of `scores`: an integer array (N,) on its device, as int64.
    Their range, [0, C), is each backend's to check (labels_in_range) where it is cheapest."""
    if not isinstance(value, np.ndarray) and not is_gpu_array(value):
        fail(TypeError, func, "labels", "a NumPy or CuPy array", type(value).__name__)
    same_device(func, scores_name, scores, "labels", value)
    if value.dtype.kind not in "iu":
        fail(TypeError, func, "labels", "integer class indices", f"dtype {value.dtype}")
    if value.shape != scores.shape[:1]:
        fail(ValueError, func, "labels", f"of shape ({scores.shape[0]},), one per row of '{scores_name}'",
             f"shape {value.shape}")
    if value.dtype == np.int64 and value.flags.c_contiguous:
        return value
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value, dtype=np.int64)
    return sys.modules["cupy"].ascontiguousarray(value, dtype=np.int64)


def labels_in_range(func: str, value, classes: int) -> None:
    """ValueError unless every one of the (host) labels is in [0, classes)."""
    if outside_range(value, classes):
        fail(ValueError, func, "labels", f"class indices in [0, {classes})",
             f"values in [{value.min()}, {value.max()}]")


def softmax_cross_entropy_args(func, logits, labels):
    """-> (logits, labels)."""
    logits = class_scores(func, "logits", logits)
    return logits, class_labels(func, labels, logits, "logits")


def softmax_cross_entropy_backward_args(func, probs, labels, dloss):
    """-> (probs, labels, dloss): dloss the gradient of the loss, a 0-d array of probs' dtype (a
    Python number is made one, on probs' device)."""
    probs = class_scores(func, "probs", probs)
    labels = class_labels(func, labels, probs, "probs")
    if isinstance(dloss, Real) and not isinstance(dloss, (bool, np.bool_)) and not isinstance(dloss, np.ndarray):
        value = scalar(func, "dloss", dloss)
        dloss = (np.asarray(value, probs.dtype) if isinstance(probs, np.ndarray)
                 else sys.modules["cupy"].asarray(value, probs.dtype))
    dloss = array(func, "dloss", dloss, 0)
    same_dtype(func, "probs", probs, dloss=dloss)
    return probs, labels, dloss
