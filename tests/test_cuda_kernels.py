"""The "cuda" backend (zengrad._cuda on CuPy arrays) against the NumPy oracles of reference.py.

Every test here is marked `cuda`: without a usable GPU backend (no GPU, driver, CuPy or
zengrad._cuda) they are skipped, with the reason, and only collected. The case tables are those
of the CPU tests (test_gemm, test_conv2d, test_pool2d), so a case added there is a GPU case
too. Oracles run in float64 on the host; float32 results must be within float32 rounding
(tolerances.py), TF32/BF16 results within the rounding of their inputs, selections (max
pooling and its winners) bit-identical.
"""
from __future__ import annotations

import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import _validate as V
from zengrad.kernels import reference as R
from test_conv2d import CASES as CONV_CASES
from test_conv2d import Conv, bias_scale, red_data, red_forward, red_weight
from test_gemm import SHAPES as GEMM_SHAPES
from test_pool2d import GEOMETRIES as POOL_GEOMETRIES
from test_pool2d import SPECIAL as POOL_SPECIAL
from test_pool2d import TIE_GEOMETRIES, overlap, y_shape
from tolerances import assert_close, assert_exact, rounded_input_factor

pytestmark = pytest.mark.cuda

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]
LOW_PRECISIONS = ["tf32", "bf16"]


@pytest.fixture
def cp():
    """CuPy, imported only where a GPU test runs."""
    import cupy

    return cupy


def data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def small_ints(rng, shape, dtype, lo=-8, hi=8):
    return rng.integers(lo, hi, shape).astype(dtype)


def f64(*arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def on_gpu(cp, *arrays):
    return [None if a is None else cp.asarray(a) for a in arrays]


def host(a):
    import cupy

    assert isinstance(a, cupy.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cupy.asnumpy(a)


def _ids(shape):
    return "x".join(map(str, shape))


# ---- GEMM ----

def gemm_case(rng, cp, m, n, k, dtype, trans_a=False, trans_b=False):
    a = data(rng, (k, m) if trans_a else (m, k), dtype)
    b = data(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b, cp.asarray(a), cp.asarray(b)


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_shapes(cp, rng, shape, dtype):
    m, n, k = shape
    a, b, ga, gb = gemm_case(rng, cp, m, n, k, dtype)
    got = zg.kernels.gemm(ga, gb)
    assert isinstance(got, cp.ndarray) and got.flags.c_contiguous and got.device.id == ga.device.id
    assert_close(host(got), R.gemm(*f64(a, b)), k + 1, dtype=dtype)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 31), (33, 17, 65), (65, 49, 257), (13, 481, 7),
                                   (257, 15, 385), (128, 128, 8), (129, 127, 17), (64, 64, 16)], ids=_ids)
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_transposes(cp, rng, shape, trans_a, trans_b, dtype):
    m, n, k = shape
    a, b, ga, gb = gemm_case(rng, cp, m, n, k, dtype, trans_a, trans_b)
    got = zg.kernels.gemm(ga, gb, trans_a=trans_a, trans_b=trans_b)
    assert got.shape == (m, n)
    assert_close(host(got), R.gemm(*f64(a, b), trans_a=trans_a, trans_b=trans_b), k + 1, dtype=dtype)


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.5, 0.0), (-1.0, 1.0), (0.5, -2.0), (0.0, 1.0), (0.0, 0.0),
                                        (-3.0, 0.25)])
@pytest.mark.parametrize("shape", [(17, 33, 13), (65, 131, 257)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_alpha_beta_out(cp, rng, shape, alpha, beta, dtype):
    m, n, k = shape
    a, b, ga, gb = gemm_case(rng, cp, m, n, k, dtype)
    out = data(rng, (m, n), dtype)
    gout = cp.asarray(out)
    got = zg.kernels.gemm(ga, gb, gout, alpha=alpha, beta=beta)
    assert got is gout
    assert_close(host(gout), R.gemm(*f64(a, b, out), alpha=alpha, beta=beta), k + 1, dtype=dtype)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 2.0)])
@pytest.mark.parametrize("shape", [(32, 128, 1600), (17, 33, 13), (7, 5, 0)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_bias_and_activation(cp, rng, shape, alpha, beta, activation, dtype):
    m, n, k = shape
    a, b, ga, gb = gemm_case(rng, cp, m, n, k, dtype)
    out, bias = data(rng, (m, n), dtype), data(rng, (n,), dtype)
    gout = cp.asarray(out)
    got = zg.kernels.gemm(ga, gb, gout, alpha=alpha, beta=beta, bias=cp.asarray(bias), activation=activation)
    assert got is gout
    expected = R.gemm(*f64(a, b, out), alpha=alpha, beta=beta, bias=bias.astype(np.float64), activation=activation)
    assert_close(host(gout), expected, k + 1, dtype=dtype)


@pytest.mark.parametrize("fill", [np.nan, np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_out(cp, rng, fill, dtype):
    a, b, ga, gb = gemm_case(rng, cp, 65, 31, 257, dtype)
    gout = cp.full((65, 31), fill, dtype)
    zg.kernels.gemm(ga, gb, gout, alpha=1.5)
    assert_close(host(gout), R.gemm(*f64(a, b), alpha=1.5), 258, dtype=dtype)


def test_gemm_alpha_zero_beta_one_keeps_out(cp, rng):
    _, _, ga, gb = gemm_case(rng, cp, 9, 10, 11, np.float64)
    out = data(rng, (9, 10), np.float64)
    gout = cp.asarray(out)
    zg.kernels.gemm(ga, gb, gout, alpha=0.0, beta=1.0)
    assert_exact(host(gout), out)


@pytest.mark.parametrize("shape", [(0, 5, 7), (5, 0, 7), (5, 7, 0), (0, 0, 0), (1, 1, 0), (33, 17, 0)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_empty(cp, rng, shape, dtype):
    m, n, k = shape
    _, _, ga, gb = gemm_case(rng, cp, m, n, k, dtype)
    assert_exact(host(zg.kernels.gemm(ga, gb)), np.zeros((m, n), dtype))
    out = data(rng, (m, n), dtype)
    gout = cp.asarray(out)
    zg.kernels.gemm(ga, gb, gout, alpha=2.0, beta=0.5)
    assert_exact(host(gout), (0.5 * out).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_unaligned_and_noncontiguous_operands(cp, rng, dtype):
    """Operands that start off a 16-byte boundary, rows of odd length, strided views: every
    load takes the element-wise path or the copy, and the result is the same."""
    big_a, big_b = cp.asarray(data(rng, (1, 61 * 37 + 1), dtype)), cp.asarray(data(rng, (3, 37 * 45 + 3), dtype))
    ga = big_a[0, 1:].reshape(61, 37)                 # contiguous, misaligned by one element
    gb = big_b[1, 3:].reshape(37, 45)
    assert ga.flags.c_contiguous and ga.data.ptr % 16 != 0
    expected = R.gemm(*f64(host(ga), host(gb)))
    assert_close(host(zg.kernels.gemm(ga, gb)), expected, 38, dtype=dtype)
    gs = cp.asarray(data(rng, (122, 74), dtype))[::2, ::2]  # strided: copied first
    assert_close(host(zg.kernels.gemm(gs, gb)), R.gemm(*f64(host(gs), host(gb))), 38, dtype=dtype)


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 31), (15, 33, 4099), (128, 128, 16), (129, 65, 17),
                                   (257, 96, 513), (481, 257, 385), (64, 40, 8)], ids=_ids)
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["NN", "TN", "NT", "TT"])
def test_gemm_tensor_cores(cp, rng, shape, trans, precision):
    m, n, k = shape
    a, b, ga, gb = gemm_case(rng, cp, m, n, k, np.float32, *trans)
    out = data(rng, (m, n), np.float32)
    gout = cp.asarray(out)
    kw = dict(trans_a=trans[0], trans_b=trans[1])
    zg.kernels.gemm(ga, gb, gout, alpha=-1.5, beta=0.5, precision=precision, **kw)
    expected = R.gemm(*f64(a, b, out), alpha=-1.5, beta=0.5, **kw)
    assert_close(host(gout), expected, k + 1, dtype=np.float32, factor=rounded_input_factor(precision, k + 1))


def test_gemm_precision_setting_selects_the_path(cp, rng):
    """The scoped and the process-wide settings and gemm's precision= all reach the kernel:
    inputs with low mantissa bits set give different float32 and TF32/BF16 results."""
    _, _, ga, gb = gemm_case(rng, cp, 64, 64, 256, np.float32)
    plain = host(zg.kernels.gemm(ga, gb))
    with zg.kernels.matmul_precision("tf32"):
        tf32 = host(zg.kernels.gemm(ga, gb))
        assert_exact(host(zg.kernels.gemm(ga, gb, precision="float32")), plain)
    assert not np.array_equal(tf32, plain)
    assert_exact(host(zg.kernels.gemm(ga, gb, precision="tf32")), tf32)
    zg.kernels.set_matmul_precision("bf16")
    try:
        bf16 = host(zg.kernels.gemm(ga, gb))
    finally:
        zg.kernels.set_matmul_precision("float32")
    assert not np.array_equal(bf16, tf32) and not np.array_equal(bf16, plain)
    assert_exact(host(zg.kernels.gemm(ga, gb, precision="bf16")), bf16)


def test_gemm_float64_ignores_precision(cp, rng):
    _, _, ga, gb = gemm_case(rng, cp, 33, 17, 65, np.float64)
    plain = host(zg.kernels.gemm(ga, gb))
    for precision in LOW_PRECISIONS:
        assert_exact(host(zg.kernels.gemm(ga, gb, precision=precision)), plain)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_is_deterministic(cp, rng, dtype):
    _, _, ga, gb = gemm_case(rng, cp, 257, 129, 1031, dtype)
    assert_exact(host(zg.kernels.gemm(ga, gb)), host(zg.kernels.gemm(ga, gb)))


# ---- convolutions ----

# Beyond the CPU table: channels that are multiples of 4 (16-byte loads), a large weight-gradient
# sum (split over P in fixed order, bias in chunks), several tiles in M and N.
GPU_CONV_CASES = CONV_CASES + [
    Conv("c8-o16-same", (2, 9, 9, 8), (3, 3), 16, padding="same"),
    Conv("c4-o64-s2", (2, 11, 10, 4), (3, 3), 64, stride=2),
    Conv("c32-o132", (1, 9, 9, 32), (3, 3), 132, padding="same"),
    Conv("splitk-p6272", (8, 30, 30, 4), (3, 3), 8),
    Conv("splitk-c3-dil2", (4, 33, 31, 3), (3, 3), 5, dilation=2, padding="same"),
    Conv("resnet-like-small", (2, 14, 14, 64), (3, 3), 64, padding="same"),
]
LOW_PRECISION_CONV_CASES = [c for c in GPU_CONV_CASES if c.id in (
    "3x3", "cin1-seed", "cout64-cin32", "stride2-same-odd", "dilation2", "c8-o16-same", "c32-o132", "splitk-p6272",
    "pad-asym2-s2", "empty-batch")]


@pytest.mark.parametrize("case", GPU_CONV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_forward(cp, rng, case, dtype):
    x, w = data(rng, case.x, dtype), data(rng, case.w, dtype)
    b = data(rng, (case.o,), dtype) if case.bias else None
    got = zg.kernels.conv2d(*on_gpu(cp, x, w, b), **case.kw())
    assert_close(host(got), R.conv2d(*f64(x, w, b), **case.kw()), red_forward(case) + 1, dtype=dtype)
    fused = zg.kernels.conv2d(*on_gpu(cp, x, w, b), activation="relu", **case.kw())
    assert_close(host(fused), R.conv2d(*f64(x, w, b), activation="relu", **case.kw()), red_forward(case) + 1,
                 dtype=dtype)


@pytest.mark.parametrize("case", GPU_CONV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_data(cp, rng, case, dtype):
    dy, w = data(rng, case.y, dtype), data(rng, case.w, dtype)
    got = zg.kernels.conv2d_backward_data(*on_gpu(cp, dy, w), case.x, **case.kw())
    assert_close(host(got), R.conv2d_backward_data(*f64(dy, w), case.x, **case.kw()), red_data(case), dtype=dtype)


@pytest.mark.parametrize("case", GPU_CONV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_weight(cp, rng, case, dtype):
    x, dy = data(rng, case.x, dtype), data(rng, case.y, dtype)
    expected_dw, expected_db = R.conv2d_backward_weight(*f64(x, dy), case.w, with_bias=True, **case.kw())
    dw, db = zg.kernels.conv2d_backward_weight(*on_gpu(cp, x, dy), case.w, with_bias=True, **case.kw())
    assert_close(host(dw), expected_dw, red_weight(case), dtype=dtype, what="dw")
    assert_close(host(db), expected_db, red_weight(case), dtype=dtype, what="db", scale=bias_scale(dy))
    alone = zg.kernels.conv2d_backward_weight(*on_gpu(cp, x, dy), case.w, **case.kw())
    assert isinstance(alone, cp.ndarray)
    assert_exact(host(alone), host(dw))          # the same sums, with or without the bias


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
@pytest.mark.parametrize("case", LOW_PRECISION_CONV_CASES, ids=lambda c: c.id)
def test_conv2d_tensor_cores(cp, rng, case, precision):
    x, w = data(rng, case.x, np.float32), data(rng, case.w, np.float32)
    b = data(rng, (case.o,), np.float32) if case.bias else None
    dy = data(rng, case.y, np.float32)
    with zg.kernels.matmul_precision(precision):
        y = zg.kernels.conv2d(*on_gpu(cp, x, w, b), activation="relu", **case.kw())
        dx = zg.kernels.conv2d_backward_data(*on_gpu(cp, dy, w), case.x, **case.kw())
        dw = zg.kernels.conv2d_backward_weight(*on_gpu(cp, x, dy), case.w, **case.kw())
    for got, expected, red in [(y, R.conv2d(*f64(x, w, b), activation="relu", **case.kw()), red_forward(case) + 1),
                               (dx, R.conv2d_backward_data(*f64(dy, w), case.x, **case.kw()), red_data(case)),
                               (dw, R.conv2d_backward_weight(*f64(x, dy), case.w, **case.kw()), red_weight(case))]:
        assert_close(host(got), expected, red, dtype=np.float32, factor=rounded_input_factor(precision, red))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_weight_is_deterministic(cp, rng, dtype):
    case = Conv("splitk", (16, 30, 30, 8), (3, 3), 16, padding="same")
    gx, gdy = on_gpu(cp, data(rng, case.x, dtype), data(rng, case.y, dtype))
    first = zg.kernels.conv2d_backward_weight(gx, gdy, case.w, with_bias=True, padding="same")
    again = zg.kernels.conv2d_backward_weight(gx, gdy, case.w, with_bias=True, padding="same")
    for a, b in zip(first, again):
        assert_exact(host(a), host(b))


def test_conv2d_noncontiguous_inputs_are_copied(cp, rng):
    x = cp.asarray(data(rng, (2, 12, 11, 6), np.float32))[:, ::2, :, ::2]   # (2, 6, 11, 3)
    w = cp.asarray(data(rng, (3, 3, 4, 5), np.float32))[:, :, 1:]
    x0 = host(x)
    got = zg.kernels.conv2d(x, w, padding="same")
    assert_close(host(got), R.conv2d(*f64(host(x), host(w)), padding="same"), 28, dtype=np.float32)
    assert_exact(host(x), x0)


# ---- pooling ----

X_SHAPE = (2, 7, 9, 3)


@pytest.mark.parametrize("pool,stride,padding", POOL_GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling(cp, rng, pool, stride, padding, dtype):
    kw = dict(stride=stride, padding=padding)
    x = data(rng, X_SHAPE, dtype)
    dy = data(rng, y_shape(X_SHAPE, pool, stride, padding), dtype)
    dyi = small_ints(rng, dy.shape, dtype)
    gx, gdy, gdyi = on_gpu(cp, x, dy, dyi)
    kh, kwid = V.positive_pair("t", "p", pool)
    assert_exact(host(zg.kernels.max_pool2d(gx, pool, **kw)), R.max_pool2d(x, pool, **kw))
    y, indices = zg.kernels.max_pool2d(gx, pool, return_indices=True, **kw)
    y_ref, indices_ref = R.max_pool2d(x, pool, return_indices=True, **kw)
    assert_exact(host(y), y_ref)
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(host(indices), indices_ref)
    # The gather adds the windows in the reference's order: bit-identical, overlapping or not.
    assert_exact(host(zg.kernels.max_pool2d_backward(gdy, gx, pool, **kw)), R.max_pool2d_backward(dy, x, pool, **kw))
    assert_exact(host(zg.kernels.max_pool2d_backward(gdy, gx, pool, indices=indices, **kw)),
                 R.max_pool2d_backward(dy, x, pool, **kw))
    assert_exact(host(zg.kernels.max_pool2d_backward(gdyi, gx, pool, **kw)), R.max_pool2d_backward(dyi, x, pool, **kw))
    assert_close(host(zg.kernels.avg_pool2d(gx, pool, **kw)), R.avg_pool2d(x.astype(np.float64), pool, **kw),
                 kh * kwid, dtype=dtype)
    assert_exact(host(zg.kernels.avg_pool2d_backward(gdy, gx, pool, **kw)), R.avg_pool2d_backward(dy, x, pool, **kw))


@pytest.mark.parametrize("x_shape,pool,stride,padding", POOL_SPECIAL)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_special_shapes(cp, rng, x_shape, pool, stride, padding, dtype):
    kw = dict(stride=stride, padding=padding)
    x = data(rng, x_shape, dtype)
    dy = data(rng, y_shape(x_shape, pool, stride, padding), dtype)
    gx, gdy = on_gpu(cp, x, dy)
    kh, kwid = V.positive_pair("t", "p", pool)
    assert_exact(host(zg.kernels.max_pool2d(gx, pool, **kw)), R.max_pool2d(x, pool, **kw))
    assert_exact(host(zg.kernels.max_pool2d_backward(gdy, gx, pool, **kw)), R.max_pool2d_backward(dy, x, pool, **kw))
    assert_close(host(zg.kernels.avg_pool2d(gx, pool, **kw)), R.avg_pool2d(x.astype(np.float64), pool, **kw),
                 kh * kwid, dtype=dtype)
    assert_close(host(zg.kernels.avg_pool2d_backward(gdy, gx, pool, **kw)),
                 R.avg_pool2d_backward(*f64(dy, x), pool, **kw), overlap(pool, stride), dtype=dtype, factor=2)


@pytest.mark.parametrize("pool,stride,padding", TIE_GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_nan_inf(cp, rng, pool, stride, padding, dtype):
    kw = dict(stride=stride, padding=padding)
    x = small_ints(rng, (3, 9, 8, 4), dtype, 0, 3)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0, :3, :3, 0] = np.nan
    x[1, 4, 4, :] = np.inf
    x[2, :, :, 1] = -np.inf
    dy = small_ints(rng, y_shape(x.shape, pool, stride, padding), dtype, 1, 9)
    gx, gdy = on_gpu(cp, x, dy)
    y, indices = zg.kernels.max_pool2d(gx, pool, return_indices=True, **kw)
    y_ref, indices_ref = R.max_pool2d(x, pool, return_indices=True, **kw)
    assert_exact(host(y), y_ref)
    np.testing.assert_array_equal(host(indices), indices_ref)
    assert_exact(host(zg.kernels.max_pool2d_backward(gdy, gx, pool, **kw)), R.max_pool2d_backward(dy, x, pool, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_padding_never_wins(cp, dtype):
    x = cp.full((1, 2, 2, 1), -np.inf, dtype)
    dy = cp.arange(1, 5, dtype=dtype).reshape(1, 2, 2, 1)
    dx = zg.kernels.max_pool2d_backward(dy, x, 3, stride=1, padding="same")
    np.testing.assert_array_equal(host(dx).reshape(2, 2), [[10, 0], [0, 0]])


def test_max_pool_backward_indices_out_of_range_route_nowhere(cp, rng):
    """On the GPU the indices are not range-checked (that would wait for the device): the kernel
    must still never write out of bounds, and an index outside the image routes nothing."""
    x = cp.asarray(data(rng, (2, 6, 6, 3), np.float32))
    y, indices = zg.kernels.max_pool2d(x, 2, return_indices=True)
    bad = indices.copy()
    bad[0, 0, 0, 0] = 36
    bad[1, 2, 2, 2] = -5
    dx = host(zg.kernels.max_pool2d_backward(cp.ones_like(y), x, 2, indices=bad))
    assert dx.sum() == y.size - 2


# ---- a dense layer's backward pass ----

@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("shape", [(32, 1600, 128), (32, 128, 10), (7, 13, 31), (0, 5, 7), (5, 7, 0)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_backward(cp, rng, dtype, shape, relu):
    n, fan_in, out = shape
    dy, x, w = data(rng, (n, out), dtype), data(rng, (n, fan_in), dtype), data(rng, (fan_in, out), dtype)
    y = np.maximum(data(rng, (n, out), dtype), 0) if relu else None
    got = zg.kernels.dense_backward(*on_gpu(cp, dy, x, w), relu_output=on_gpu(cp, y)[0], with_bias=True)
    want = R.dense_backward(dy, x, w, relu_output=y, with_bias=True)
    for g, r, reduction in zip(got, want, (out, n, n)):
        assert_close(host(g), r, reduction, dtype=dtype)
    dx, dw, db = zg.kernels.dense_backward(*on_gpu(cp, dy, x, w), with_dx=False)
    assert dx is None and db is None and dw.shape == w.shape


# ---- elementwise ----

@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_backward(cp, rng, dtype):
    x = data(rng, (5, 7, 3), dtype)
    x[0, 0, 0] = np.nan
    dy = data(rng, x.shape, dtype)
    gx, gdy = on_gpu(cp, x, dy)
    y = zg.kernels.relu(gx)
    np.testing.assert_array_equal(host(y), R.relu(x))
    np.testing.assert_array_equal(host(zg.kernels.relu_backward(gdy, y)), R.relu_backward(dy, R.relu(x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update(cp, rng, dtype):
    param, grad = data(rng, (33, 5), dtype), data(rng, (33, 5), dtype)
    m, v = data(rng, (33, 5), dtype) * 0.1, np.abs(data(rng, (33, 5), dtype))
    gp, gg, gm, gv = on_gpu(cp, param, grad, m, v)
    kw = dict(alpha=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    zg.kernels.adam_update(gp, gg, gm, gv, **kw)
    R.adam_update(param, grad, m, v, **kw)
    for got, expected in [(gp, param), (gm, m), (gv, v)]:
        assert_close(host(got), expected, 4, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_on_lists(cp, rng, dtype):
    shapes = [(3, 3, 1, 8), (8,), (40, 7)]
    host_lists = [[data(rng, s, dtype) * scale for s in shapes] for scale in (1, 1, 0.1)]
    host_lists.append([np.abs(data(rng, s, dtype)) for s in shapes])
    gpu_lists = [list(on_gpu(cp, *arrays)) for arrays in host_lists]
    kw = dict(alpha=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    zg.kernels.adam_update(*gpu_lists, **kw)
    R.adam_update(*host_lists, **kw)
    for got, expected in zip(gpu_lists, host_lists):
        for a, b in zip(got, expected):
            assert_close(host(a), b, 4, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_stores_tiny_moments_as_zero(cp, dtype):
    tiny = np.finfo(dtype).tiny
    m = np.array([tiny * 1.05, -tiny * 1.05, tiny * 1.05, 0.5, 0.0, np.nan, tiny * 1.05], dtype)
    v = np.array([tiny * 1.0005, tiny * 1.0005, 0.25, 0.25, 0.0, 0.25, np.nan], dtype)
    grad, param = np.zeros_like(m), np.ones_like(m)
    gp, gg, gm, gv = on_gpu(cp, param, grad, m, v)
    zg.kernels.adam_update(gp, gg, gm, gv, alpha=1e-3)
    R.adam_update(param, grad, m, v, alpha=1e-3)
    np.testing.assert_array_equal(host(gm), m)
    np.testing.assert_array_equal(host(gv), v)
    assert_close(host(gp), param, 4, dtype=dtype)


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (32, 10), (65, 17), (7, 1000)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy(cp, rng, shape, dtype):
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    loss, probs = zg.kernels.softmax_cross_entropy(*on_gpu(cp, logits, labels))
    want_loss, want_probs = R.softmax_cross_entropy(logits, labels)
    assert_close(host(probs), want_probs, shape[1])
    if shape[0]:
        assert_close(host(loss), want_loss, shape[0] * shape[1])
    dloss = np.asarray(0.75, dtype)
    dz = zg.kernels.softmax_cross_entropy_backward(probs, *on_gpu(cp, labels, dloss))
    assert_exact(host(dz), R.softmax_cross_entropy_backward(host(probs), labels, dloss))


def test_softmax_cross_entropy_labels_out_of_range_give_nan_rows(cp):
    logits, labels = cp.zeros((3, 4), cp.float32), cp.asarray([0, 4, -1])
    loss, probs = zg.kernels.softmax_cross_entropy(logits, labels)
    assert np.isnan(float(loss))
    dz = host(zg.kernels.softmax_cross_entropy_backward(probs, labels, cp.asarray(1.0, cp.float32)))
    assert np.isfinite(dz[0]).all() and np.isnan(dz[1:]).all()


# ---- devices, errors, streams ----

def test_mixed_devices_are_type_errors_naming_the_argument(cp, rng):
    a = data(rng, (3, 4), np.float32)
    ga = cp.asarray(a)
    with pytest.raises(TypeError, match=r"gemm\(\): argument 'b' must be .*device"):
        zg.kernels.gemm(ga, np.ones((4, 5), np.float32))
    with pytest.raises(TypeError, match=r"gemm\(\): argument 'b' must be .*device"):
        zg.kernels.gemm(a, cp.ones((4, 5), np.float32))
    with pytest.raises(TypeError, match=r"gemm\(\): argument 'out' must be .*device"):
        zg.kernels.gemm(ga, cp.ones((4, 5), np.float32), np.empty((3, 5), np.float32))
    x, w = cp.ones((1, 5, 5, 2), np.float32), np.ones((3, 3, 2, 4), np.float32)
    with pytest.raises(TypeError, match=r"conv2d\(\): argument 'w' must be .*device"):
        zg.kernels.conv2d(x, w)
    with pytest.raises(TypeError, match=r"conv2d\(\): argument 'b' must be .*device"):
        zg.kernels.conv2d(x, cp.asarray(w), np.ones(4, np.float32))
    y, indices = zg.kernels.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match=r"max_pool2d_backward\(\): argument 'indices' must be .*device"):
        zg.kernels.max_pool2d_backward(y, x, 2, indices=cp.asnumpy(indices))
    with pytest.raises(TypeError, match=r"adam_update\(\): argument 'm' must be .*device"):
        zg.kernels.adam_update(cp.ones(3), cp.ones(3), np.ones(3), cp.ones(3), alpha=0.1)


def test_arrays_on_two_gpus_are_refused(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cp.cuda.Device(0):
        a = cp.ones((3, 4), np.float32)
    with cp.cuda.Device(1):
        b = cp.ones((4, 5), np.float32)
    with pytest.raises(TypeError, match=r"argument 'b' must be .*cuda:0"):
        zg.kernels.gemm(a, b)


def test_results_on_the_device_of_the_inputs(cp):
    count = cp.cuda.runtime.getDeviceCount()
    device = count - 1
    with cp.cuda.Device(device):
        a, b = cp.ones((3, 4), np.float32), cp.ones((4, 5), np.float32)
    with cp.cuda.Device(0):                       # another current device: the arrays decide
        c = zg.kernels.gemm(a, b)
    assert c.device.id == device
    assert_exact(host(c), np.full((3, 5), 4, np.float32))


def test_gpu_errors(cp):
    ga = cp.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match=r"gemm\(\): argument 'b' must be .*float32"):
        zg.kernels.gemm(ga, cp.ones((4, 5), np.float64))
    with pytest.raises(TypeError, match=r"gemm\(\): argument 'a' must be .*float32 or float64"):
        zg.kernels.gemm(cp.ones((3, 4), np.int32), cp.ones((4, 5), np.int32))
    with pytest.raises(ValueError, match=r"gemm\(\): argument 'out' must be .*C-contiguous"):
        zg.kernels.gemm(ga, cp.ones((4, 5), np.float32), cp.ones((5, 3), np.float32).T)
    buf = cp.zeros(40, np.float32)
    with pytest.raises(ValueError, match=r"gemm\(\): argument 'out' must be memory separate"):
        zg.kernels.gemm(buf[:12].reshape(3, 4), cp.ones((4, 5), np.float32), buf[10:25].reshape(3, 5))
    with pytest.raises(ValueError, match=r"gemm\(\): argument 'precision' must be"):
        zg.kernels.gemm(ga, cp.ones((4, 5), np.float32), precision="fp8")


def test_kernels_run_on_the_current_stream(cp, rng):
    """Work on a non-default stream: correct once that stream is synchronised, and the call
    returns before the GPU has finished (the kernels never wait for the device). Everything is
    allocated and uploaded beforehand, so nothing but the kernels is queued."""
    a, b = data(rng, (300, 200), np.float32), data(rng, (200, 100), np.float32)
    ga, gb, gc = cp.asarray(a), cp.asarray(b), cp.empty((300, 100), np.float32)
    big, big_out = cp.ones((4096, 4096), np.float32), cp.empty((4096, 4096), np.float32)
    cp.cuda.Device().synchronize()
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        for _ in range(4):                         # milliseconds of work queued ahead
            zg.kernels.gemm(big, big, big_out)
        zg.kernels.gemm(ga, gb, gc)
        done = cp.cuda.Event()
        done.record(stream)
        assert not done.done, "a kernel call waited for the GPU"
    stream.synchronize()
    assert_close(host(gc), R.gemm(*f64(a, b)), 201, dtype=np.float32)


def test_cuda_backend_is_listed_and_selectable():
    assert "cuda" in zg.kernels.available_backends()
    with zg.kernels.use_backend("cuda"):
        assert zg.kernels.get_backend() == "cuda"
        # NumPy arrays still run on the CPU (the automatic CPU backend), results NumPy
        got = zg.kernels.gemm(np.ones((2, 3)), np.ones((3, 2)))
        assert isinstance(got, np.ndarray)
    info = zg.info()
    assert info["cuda"]["built"] and info["cuda"]["devices"] >= 1
