"""The compiled kernels' own checks (zengrad._cpu): the common call runs without the Python checks,
anything else is declined, untouched, and left to them.

zengrad.kernels tries a compiled kernel first, with the geometry worked out for the same
stride/padding/dilation before (kernels._validate.known_window); gemm's and adam_update's cases
are in test_gemm.py and test_elementwise.py."""
import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import _backends
from zengrad.kernels import _validate as V
from zengrad.kernels import reference as R

_cpu = pytest.importorskip("zengrad._cpu", reason="the compiled backend is not built here")

K = zg.kernels
DTYPES = [np.float32, np.float64]
CONV = dict(stride=(2, 1), padding="same", dilation=1)
POOL = dict(stride=None, padding="valid")


@pytest.fixture(autouse=True)
def _cpp():
    with K.use_backend("cpp"):
        yield


def operands(dtype, n=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 9, 8, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 5, 16)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    dy = rng.standard_normal(R.conv2d(x, w, **CONV).shape).astype(dtype)
    return x, w, b, dy


def calls(x, w, b, dy):
    """Each kernel's common call through zengrad.kernels, by name."""
    y = K.conv2d(x, w, b, activation="relu", **CONV)
    pooled, winners = K.max_pool2d(y, 2, return_indices=True, **POOL)
    logits, labels = x.reshape(-1, 8), np.arange(len(x.reshape(-1, 8))) % 8
    probs, dloss = K.softmax_cross_entropy(logits, labels)[1], np.asarray(0.5, x.dtype)
    dense_x = x.reshape(len(x), -1)
    dense_w = np.linspace(-1, 1, dense_x.shape[1] * w.shape[3]).astype(x.dtype).reshape(-1, w.shape[3])
    dense_y = K.gemm(dense_x, dense_w, activation="relu")
    dense_dy = dy.reshape(-1, w.shape[3])[:len(x)]
    return {
        "conv2d": lambda: K.conv2d(x, w, b, activation="relu", **CONV),
        "conv2d_backward_data": lambda: K.conv2d_backward_data(dy, w, x.shape, **CONV),
        "conv2d_backward_weight": lambda: K.conv2d_backward_weight(x, dy, w.shape, with_bias=True, **CONV),
        "max_pool2d": lambda: K.max_pool2d(y, 2, return_indices=True, **POOL),
        "max_pool2d_backward": lambda: K.max_pool2d_backward(pooled, y, 2, indices=winners, **POOL),
        "max_pool2d_backward (search)": lambda: K.max_pool2d_backward(pooled, y, (2, 2), **POOL),
        "max_pool2d_backward (relu_output)": lambda: K.max_pool2d_backward(pooled, y, 2, indices=winners,
                                                                           relu_output=pooled, **POOL),
        "avg_pool2d": lambda: K.avg_pool2d(y, 2, **POOL),
        "avg_pool2d_backward": lambda: K.avg_pool2d_backward(pooled, y, 2, **POOL),
        "relu": lambda: K.relu(dy),
        "relu_backward": lambda: K.relu_backward(dy, y),
        "dense_backward": lambda: K.dense_backward(dense_dy, dense_x, dense_w, relu_output=dense_y, with_bias=True),
        "softmax_cross_entropy": lambda: K.softmax_cross_entropy(logits, labels),
        "softmax_cross_entropy_backward": lambda: K.softmax_cross_entropy_backward(probs, labels, dloss),
    }


PYTHON_CHECKS = {  # what each kernel's Python path calls first
    "conv2d": "conv2d_args", "conv2d_backward_data": "conv2d_backward_data_args",
    "conv2d_backward_weight": "conv2d_backward_weight_args", "max_pool2d": "pool_args",
    "max_pool2d_backward": "pool_backward_args", "max_pool2d_backward (search)": "pool_backward_args",
    "max_pool2d_backward (relu_output)": "pool_backward_args",
    "avg_pool2d": "pool_args", "avg_pool2d_backward": "pool_backward_args", "relu": "array",
    "relu_backward": "relu_backward_args", "dense_backward": "dense_backward_args",
    "softmax_cross_entropy": "softmax_cross_entropy_args",
    "softmax_cross_entropy_backward": "softmax_cross_entropy_backward_args",
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", sorted(PYTHON_CHECKS))
def test_the_common_call_skips_the_python_checks_and_gives_the_same_bits(monkeypatch, dtype, kernel):
    call = calls(*operands(dtype))[kernel]
    with monkeypatch.context() as without_fast_path:
        without_fast_path.setattr(_backends._load("cpp"), "fast", None)
        checked = call()   # the Python checks, then the same compiled kernel

    def refused(*args, **kwargs):
        raise AssertionError("the Python checks ran")

    monkeypatch.setattr(V, PYTHON_CHECKS[kernel], refused)
    fast = call()
    for got, want in zip(fast if isinstance(fast, tuple) else (fast,), checked if isinstance(checked, tuple)
                         else (checked,)):
        assert got.dtype == want.dtype and got.flags.c_contiguous and got.base is None
        np.testing.assert_array_equal(got, want)


def test_the_fast_results_match_the_reference():
    x, w, b, dy = operands(np.float64)
    run = calls(x, w, b, dy)
    run["conv2d"]()  # warm
    np.testing.assert_allclose(run["conv2d"](), np.maximum(R.conv2d(x, w, b, **CONV), 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run["conv2d_backward_data"](), R.conv2d_backward_data(dy, w, x.shape, **CONV),
                               rtol=1e-12, atol=1e-12)
    dw, db = run["conv2d_backward_weight"]()
    np.testing.assert_allclose(dw, R.conv2d_backward_weight(x, dy, w.shape, **CONV), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)), rtol=1e-12, atol=1e-12)


def geometry(x_shape, kernel, **kw):
    return V.window("test", x_shape, kernel, kw.get("stride", 1), kw.get("padding", "valid"), kw.get("dilation", 1),
                    allow_explicit=kw.get("allow_explicit", True))


def _conv_args():
    x, w, b, dy = operands(np.float32)
    return x, w, b, dy, geometry(x.shape, w.shape[:2], **CONV)


def _strided(a):
    """a's values in a non-contiguous array."""
    wide = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def _swapped(a):
    return a.astype(a.dtype.newbyteorder())


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


CONV_DECLINES = {
    "conv2d: x a list": lambda x, w, b, dy, g: _cpu.conv2d(x.tolist(), w, b, g, False),
    "conv2d: x float16": lambda x, w, b, dy, g: _cpu.conv2d(x.astype(np.float16), w, b, g, False),
    "conv2d: x byte-swapped": lambda x, w, b, dy, g: _cpu.conv2d(_swapped(x), w, b, g, False),
    "conv2d: x not contiguous": lambda x, w, b, dy, g: _cpu.conv2d(_strided(x), w, b, g, False),
    "conv2d: w float64": lambda x, w, b, dy, g: _cpu.conv2d(x, w.astype(np.float64), b, g, False),
    "conv2d: w of other channels": lambda x, w, b, dy, g: _cpu.conv2d(x, w[:, :, :4], b, g, False),
    "conv2d: w of another window": lambda x, w, b, dy, g: _cpu.conv2d(x, w[:2], b, g, False),
    "conv2d: x of another image": lambda x, w, b, dy, g: _cpu.conv2d(x[:, :8], w, b, g, False),
    "conv2d: b of another length": lambda x, w, b, dy, g: _cpu.conv2d(x, w, b[:5], g, False),
    "conv2d: b 2-D": lambda x, w, b, dy, g: _cpu.conv2d(x, w, b[None], g, False),
    "conv2d: no output channels": lambda x, w, b, dy, g: _cpu.conv2d(x, w[..., :0], None, g, False),
    "backward_data: dy of another shape": lambda x, w, b, dy, g: _cpu.conv2d_backward_data(dy[:, 1:], w, x.shape, g),
    "backward_data: x_shape a list": lambda x, w, b, dy, g: _cpu.conv2d_backward_data(dy, w, list(x.shape), g),
    "backward_data: x_shape of floats": lambda x, w, b, dy, g: _cpu.conv2d_backward_data(
        dy, w, tuple(float(s) for s in x.shape), g),
    "backward_data: x_shape of bools": lambda x, w, b, dy, g: _cpu.conv2d_backward_data(
        dy[:1], w, (True,) + x.shape[1:], geometry((1,) + x.shape[1:], w.shape[:2], **CONV)),
    "backward_data: x_shape of another image": lambda x, w, b, dy, g: _cpu.conv2d_backward_data(
        dy, w, x.shape[:3] + (4,), g),
    "backward_data: dtypes differ": lambda x, w, b, dy, g: _cpu.conv2d_backward_data(dy.astype(np.float64), w,
                                                                                     x.shape, g),
    "backward_weight: dy not contiguous": lambda x, w, b, dy, g: _cpu.conv2d_backward_weight(x, _strided(dy),
                                                                                             w.shape, g, True),
    "backward_weight: w_shape of another output": lambda x, w, b, dy, g: _cpu.conv2d_backward_weight(
        x, dy, w.shape[:3] + (8,), g, True),
    "backward_weight: w_shape of floats": lambda x, w, b, dy, g: _cpu.conv2d_backward_weight(
        x, dy, tuple(float(s) for s in w.shape), g, False),
    "backward_weight: w_shape of 3": lambda x, w, b, dy, g: _cpu.conv2d_backward_weight(x, dy, w.shape[:3], g, True),
    "backward_weight: x of another batch": lambda x, w, b, dy, g: _cpu.conv2d_backward_weight(x[1:], dy, w.shape, g,
                                                                                              True),
}


@pytest.mark.parametrize("case", sorted(CONV_DECLINES))
def test_convolutions_decline_the_rest_and_touch_nothing(case):
    x, w, b, dy, g = args = _conv_args()
    saved = [a.copy() for a in (x, w, b, dy)]
    assert CONV_DECLINES[case](*args) is None
    for a, before in zip((x, w, b, dy), saved):
        np.testing.assert_array_equal(a, before)


def _pool_args():
    x, w, b, dy = operands(np.float32)
    y = K.conv2d(x, w, b, **CONV)
    pooled, winners = K.max_pool2d(y, 2, return_indices=True)
    return y, pooled, winners, geometry(y.shape, (2, 2), stride=(2, 2), allow_explicit=False)


POOL_DECLINES = {
    "max: x 3-D": lambda y, p, i, g: _cpu.max_pool2d(y[0], g, True),
    "max: x of another image": lambda y, p, i, g: _cpu.max_pool2d(y[:, :, :-1], g, False),
    "max: x not contiguous": lambda y, p, i, g: _cpu.max_pool2d(_strided(y), g, False),
    "max backward: winners int64": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, i.astype(np.int64), None, g),
    "max backward: winners byte-swapped": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, _swapped(i), None, g),
    "max backward: winners of another shape": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, i[1:], None, g),
    "max backward: dy float64": lambda y, p, i, g: _cpu.max_pool2d_backward(p.astype(np.float64), y, i, None, g),
    "max backward: dy of another shape": lambda y, p, i, g: _cpu.max_pool2d_backward(p[:, :-1], y, None, None, g),
    "max backward: relu_output float64": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, i, p.astype(np.float64), g),
    "max backward: relu_output of another shape": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, i, p[1:], g),
    "max backward: relu_output not contiguous": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, i, _strided(p), g),
    "max backward: relu_output a list": lambda y, p, i, g: _cpu.max_pool2d_backward(p, y, i, p.tolist(), g),
    "avg: x uint8": lambda y, p, i, g: _cpu.avg_pool2d(y.astype(np.uint8), g),
    "avg backward: x of another shape": lambda y, p, i, g: _cpu.avg_pool2d_backward(p, y[1:], g),
    "relu: x int32": lambda y, p, i, g: _cpu.relu(i),
    "relu_backward: shapes differ": lambda y, p, i, g: _cpu.relu_backward(p, p[1:]),
    "relu_backward: y read-only but of another dtype": lambda y, p, i, g: _cpu.relu_backward(
        p, _read_only(p.astype(np.float64))),
}


@pytest.mark.parametrize("case", sorted(POOL_DECLINES))
def test_pooling_and_relu_decline_the_rest_and_touch_nothing(case):
    y, pooled, winners, g = args = _pool_args()
    saved = [a.copy() for a in (y, pooled, winners)]
    assert POOL_DECLINES[case](*args) is None
    for a, before in zip((y, pooled, winners), saved):
        np.testing.assert_array_equal(a, before)


def _dense_args():
    rng = np.random.default_rng(1)
    dy, x, w = (rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6, 4), (4, 5)))
    return dy, x, w, np.maximum(dy, 0)


DENSE_DECLINES = {
    "dy 1-D": lambda dy, x, w, y: _cpu.dense_backward(dy[0], x, w, None, True, True, True),
    "dy a list": lambda dy, x, w, y: _cpu.dense_backward(dy.tolist(), x, w, None, True, True, True),
    "dy not contiguous": lambda dy, x, w, y: _cpu.dense_backward(_strided(dy), x, w, None, True, True, True),
    "x of other rows": lambda dy, x, w, y: _cpu.dense_backward(dy, x[1:], w, None, True, True, True),
    "x float64": lambda dy, x, w, y: _cpu.dense_backward(dy, x.astype(np.float64), w, None, True, True, True),
    "w transposed": lambda dy, x, w, y: _cpu.dense_backward(dy, x, np.ascontiguousarray(w.T), None, True, True, True),
    "w float64": lambda dy, x, w, y: _cpu.dense_backward(dy, x, w.astype(np.float64), None, True, True, True),
    "relu_output of another shape": lambda dy, x, w, y: _cpu.dense_backward(dy, x, w, y[1:], True, True, True),
    "relu_output float64": lambda dy, x, w, y: _cpu.dense_backward(dy, x, w, y.astype(np.float64), True, True, True),
    "with_bias a NumPy bool": lambda dy, x, w, y: _cpu.dense_backward(dy, x, w, y, True, True, np.True_),
    "with_dx an int": lambda dy, x, w, y: _cpu.dense_backward(dy, x, w, y, 1, True, True),
}


@pytest.mark.parametrize("case", sorted(DENSE_DECLINES))
def test_dense_backward_declines_the_rest_and_touches_nothing(case):
    args = _dense_args()
    saved = [a.copy() for a in args]
    assert DENSE_DECLINES[case](*args) is None
    for a, before in zip(args, saved):
        np.testing.assert_array_equal(a, before)


def test_winners_outside_the_image_are_reported_not_followed():
    y, pooled, winners, g = _pool_args()
    bad = winners.copy()
    bad.flat[5] = g.h * g.w
    assert _cpu.max_pool2d_backward(pooled, y, bad, None, g) is False
    with pytest.raises(ValueError, match="argument 'indices'"):
        K.max_pool2d_backward(pooled, y, 2, indices=bad)


@pytest.mark.parametrize("call, name", [
    (lambda x, w, dy: K.conv2d_backward_data(dy, w, tuple(float(s) for s in x.shape), **CONV), "x_shape"),
    (lambda x, w, dy: K.conv2d_backward_weight(x, dy, tuple(float(s) for s in w.shape), **CONV), "w_shape"),
    (lambda x, w, dy: K.conv2d_backward_weight(x, dy, (True,) + w.shape[1:], **CONV), "w_shape"),
    (lambda x, w, dy: K.max_pool2d(dy, (2.0, 2.0)), "pool_size"),
    (lambda x, w, dy: K.avg_pool2d(dy, 2, stride=2.0), "stride"),
])
def test_look_alike_arguments_are_still_refused_once_the_geometry_is_known(call, name):
    """2.0 and True hash as 2 and 1: the geometry cache answers for them, the kernels do not."""
    x, w, b, dy = operands(np.float32, n=1)
    K.conv2d(x, w, **CONV)
    K.conv2d_backward_weight(x, dy, w.shape, **CONV)
    K.max_pool2d(dy, 2)
    K.avg_pool2d(dy, 2, stride=2)
    with pytest.raises(TypeError, match=f"argument '{name}'"):
        call(x, w, dy)


def test_an_empty_batch_runs():
    x, w, b, dy = operands(np.float32, n=0)
    for _ in range(2):  # the checked call, then the fast one
        y = K.conv2d(x, w, b, **CONV)
        dw, db = K.conv2d_backward_weight(x, dy, w.shape, with_bias=True, **CONV)
        assert y.shape == dy.shape and not dw.any() and not db.any()
        assert K.conv2d_backward_data(dy, w, x.shape, **CONV).shape == x.shape


def _loss_args():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    return logits, labels, K.softmax_cross_entropy(logits, labels)[1], np.asarray(1.0, np.float32)


LOSS_DECLINES = {
    "logits 1-D": lambda z, l, p, g: _cpu.softmax_cross_entropy(z[0], l[:1]),
    "logits of no class": lambda z, l, p, g: _cpu.softmax_cross_entropy(z[:, :0], l),
    "logits not contiguous": lambda z, l, p, g: _cpu.softmax_cross_entropy(_strided(z), l),
    "labels int32": lambda z, l, p, g: _cpu.softmax_cross_entropy(z, l.astype(np.int32)),
    "labels uint64": lambda z, l, p, g: _cpu.softmax_cross_entropy(z, l.astype(np.uint64)),
    "labels float": lambda z, l, p, g: _cpu.softmax_cross_entropy(z, l.astype(np.float64)),
    "labels 2-D": lambda z, l, p, g: _cpu.softmax_cross_entropy(z, l[:, None]),
    "labels of another length": lambda z, l, p, g: _cpu.softmax_cross_entropy(z, l[1:]),
    "labels a list": lambda z, l, p, g: _cpu.softmax_cross_entropy(z, l.tolist()),
    "backward: dloss float64": lambda z, l, p, g: _cpu.softmax_cross_entropy_backward(p, l, g.astype(np.float64)),
    "backward: dloss 1-D": lambda z, l, p, g: _cpu.softmax_cross_entropy_backward(p, l, g[None]),
    "backward: dloss a float": lambda z, l, p, g: _cpu.softmax_cross_entropy_backward(p, l, 1.0),
    "backward: labels byte-swapped": lambda z, l, p, g: _cpu.softmax_cross_entropy_backward(p, _swapped(l), g),
}


@pytest.mark.parametrize("case", sorted(LOSS_DECLINES))
def test_softmax_cross_entropy_declines_the_rest_and_touches_nothing(case):
    logits, labels, probs, dloss = args = _loss_args()
    saved = [a.copy() for a in args]
    assert LOSS_DECLINES[case](*args) is None
    for a, before in zip(args, saved):
        np.testing.assert_array_equal(a, before)


def test_labels_outside_the_classes_are_reported_not_followed():
    logits, labels, probs, dloss = _loss_args()
    for bad in (-1, 4):
        wrong = labels.copy()
        wrong[2] = bad
        assert _cpu.softmax_cross_entropy(logits, wrong) is False
        assert _cpu.softmax_cross_entropy_backward(probs, wrong, dloss) is False
