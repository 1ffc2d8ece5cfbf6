"""max/avg pooling and their backward passes on every backend against the reference.

Max pooling selects, so its forward result must be bit-identical to the reference. Its
backward pass adds the dy of every window that picked an element; where windows overlap the
order of that addition is free, so it is exact only when windows do not overlap or dy holds
small integers (whose sums are exact in any order).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import zengrad as zg
from zengrad.kernels import _validate as V
from zengrad.kernels import reference as R
from tolerances import assert_close, assert_exact

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

POOL_SIZES = [1, 2, 3, (2, 3), (3, 1)]
STRIDES = [None, 1, 2, 3, (1, 2)]
PADDINGS = ["valid", "same"]
GEOMETRIES = [pytest.param(p, s, pad, id=f"p{p}-s{s}-{pad}".replace(" ", ""))
              for p, s, pad in itertools.product(POOL_SIZES, STRIDES, PADDINGS)]


def geometry(x_shape, pool, stride, padding):
    size = V.positive_pair("t", "p", pool)
    return V.window("t", x_shape, size, size if stride is None else stride, padding)


def y_shape(x_shape, pool, stride, padding):
    g = geometry(x_shape, pool, stride, padding)
    return (g.n, g.ho, g.wo, g.c)


def overlap(pool, stride):
    """How many windows may cover one input element (1: windows do not overlap)."""
    kh, kw = V.positive_pair("t", "p", pool)
    sh, sw = (kh, kw) if stride is None else V.positive_pair("t", "s", stride)
    return -(-kh // sh) * -(-kw // sw)


def data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def small_ints(rng, shape, dtype, lo=-8, hi=8):
    return rng.integers(lo, hi, shape).astype(dtype)


X_SHAPE = (2, 7, 9, 3)   # odd sizes


@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d(backend, rng, pool, stride, padding, dtype):
    x = data(rng, X_SHAPE, dtype)
    kw = dict(stride=stride, padding=padding)
    got = zg.kernels.max_pool2d(x, pool, **kw)
    assert_exact(got, R.max_pool2d(x, pool, **kw))


@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_backward(backend, rng, pool, stride, padding, dtype):
    x = data(rng, X_SHAPE, dtype)
    kw = dict(stride=stride, padding=padding)
    dy = data(rng, y_shape(X_SHAPE, pool, stride, padding), dtype)
    got = zg.kernels.max_pool2d_backward(dy, x, pool, **kw)
    n = overlap(pool, stride)
    if n == 1:
        assert_exact(got, R.max_pool2d_backward(dy, x, pool, **kw))
    else:
        assert_close(got, R.max_pool2d_backward(*(a.astype(np.float64) for a in (dy, x)), pool, **kw),
                     n, dtype=dtype)
        dyi = small_ints(rng, dy.shape, dtype)
        assert_exact(zg.kernels.max_pool2d_backward(dyi, x, pool, **kw), R.max_pool2d_backward(dyi, x, pool, **kw))



@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_winners(backend, rng, pool, stride, padding, dtype):
    """return_indices gives each window's winning pixel; the backward pass fed those indices
    gives exactly what it computes without them."""
    x = data(rng, X_SHAPE, dtype)
    kw = dict(stride=stride, padding=padding)
    y, indices = zg.kernels.max_pool2d(x, pool, return_indices=True, **kw)
    y_ref, indices_ref = R.max_pool2d(x, pool, return_indices=True, **kw)
    assert indices.dtype == np.int32
    assert_exact(y, y_ref)
    np.testing.assert_array_equal(indices, indices_ref)
    n, _, width, c = X_SHAPE
    flat = x.reshape(n, -1, c)
    np.testing.assert_array_equal(np.take_along_axis(flat, indices.reshape(n, -1, c), axis=1).reshape(y.shape), y)
    dy = small_ints(rng, y.shape, dtype)
    assert_exact(zg.kernels.max_pool2d_backward(dy, x, pool, indices=indices, **kw),
                 zg.kernels.max_pool2d_backward(dy, x, pool, **kw))


def test_max_pool2d_bad_indices(backend, rng):
    x = data(rng, (2, 6, 6, 3), np.float32)
    y, indices = zg.kernels.max_pool2d(x, 2, return_indices=True)
    one_outside, one_negative = indices.copy(), indices.copy()
    one_outside[1, 2, 1, 2] = 36      # a single index past the 6x6 image, in the last image
    one_negative[0, 0, 2, 1] = -1
    for bad, exc in [(indices.astype(np.int64), TypeError), (indices[:1], ValueError), (indices + 36, ValueError),
                     (indices - 100, ValueError), (indices.tolist(), TypeError), (one_outside, ValueError),
                     (one_negative, ValueError)]:
        with pytest.raises(exc, match="argument 'indices'"):
            zg.kernels.max_pool2d_backward(y, x, 2, indices=bad)
    many = data(rng, (8, 32, 32, 64), np.float32)       # several threads, each checking its own part
    y, indices = zg.kernels.max_pool2d(many, 2, return_indices=True)
    indices[5, 7, 3, 40] = 32 * 32
    with pytest.raises(ValueError, match=r"argument 'indices' must be pixel indices in \[0, 1024\)"):
        zg.kernels.max_pool2d_backward(y, many, 2, indices=indices)


@pytest.mark.parametrize("with_indices", [False, True], ids=["search", "indices"])
@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_backward_through_a_relu(backend, rng, pool, stride, padding, with_indices, dtype):
    """relu_output: the gradient of relu(max_pool2d(x)), in one pass: the same bits as
    relu_backward and then max_pool2d_backward (the reference's composition) on the same backend."""
    x = small_ints(rng, X_SHAPE, dtype, -3, 3)        # ties and non-positive windows aplenty
    kw = dict(stride=stride, padding=padding)
    y, indices = zg.kernels.max_pool2d(x, pool, return_indices=True, **kw)
    relu_out = zg.kernels.relu(y)
    relu_out.flat[::7] = np.nan                        # NaN stops the gradient, as in relu_backward
    dy = small_ints(rng, y.shape, dtype)
    winners = dict(indices=indices) if with_indices else {}
    got = zg.kernels.max_pool2d_backward(dy, x, pool, relu_output=relu_out, **winners, **kw)
    two_kernels = zg.kernels.max_pool2d_backward(zg.kernels.relu_backward(dy, relu_out), x, pool, **winners, **kw)
    assert_exact(got, two_kernels)
    assert_exact(got, R.max_pool2d_backward(dy, x, pool, relu_output=relu_out, **kw))
    assert_exact(R.max_pool2d_backward(dy, x, pool, relu_output=relu_out, **kw),
                 R.max_pool2d_backward(np.where(relu_out > 0, dy, 0), x, pool, **kw))


def test_max_pool2d_backward_bad_relu_output(backend, rng):
    x = data(rng, (2, 6, 6, 3), np.float32)
    y = zg.kernels.max_pool2d(x, 2)
    for bad, exc, why in [(y.astype(np.float64), TypeError, "float32 like 'dy'"), (y[:1], ValueError, "of shape"),
                          (y.tolist(), TypeError, "a NumPy or CuPy array"),
                          (y.astype(np.int32), TypeError, "float32 or float64")]:
        with pytest.raises(exc, match=f"max_pool2d_backward\\(\\): argument 'relu_output' must be .*{why}"):
            zg.kernels.max_pool2d_backward(y, x, 2, relu_output=bad)
    strided = np.empty(y.shape[:-1] + (6,), np.float32)[..., ::2]
    strided[...] = y
    assert_exact(zg.kernels.max_pool2d_backward(y, x, 2, relu_output=strided),
                 zg.kernels.max_pool2d_backward(y, x, 2, relu_output=np.ascontiguousarray(strided)))


@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d(backend, rng, pool, stride, padding, dtype):
    x = data(rng, X_SHAPE, dtype)
    kw = dict(stride=stride, padding=padding)
    kh, kwid = V.positive_pair("t", "p", pool)
    got = zg.kernels.avg_pool2d(x, pool, **kw)
    assert_close(got, R.avg_pool2d(x.astype(np.float64), pool, **kw), kh * kwid, dtype=dtype)


@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d_backward(backend, rng, pool, stride, padding, dtype):
    x = data(rng, X_SHAPE, dtype)
    kw = dict(stride=stride, padding=padding)
    dy = data(rng, y_shape(X_SHAPE, pool, stride, padding), dtype)
    got = zg.kernels.avg_pool2d_backward(dy, x, pool, **kw)
    expected = R.avg_pool2d_backward(dy.astype(np.float64), x.astype(np.float64), pool, **kw)
    assert_close(got, expected, overlap(pool, stride), dtype=dtype, factor=2)  # a divide and a sum


def test_avg_pool2d_backward_uses_only_the_shape_of_x(backend, rng):
    x = data(rng, X_SHAPE, np.float64)
    dy = data(rng, y_shape(X_SHAPE, 3, 1, "same"), np.float64)
    a = zg.kernels.avg_pool2d_backward(dy, x, 3, stride=1, padding="same")
    b = zg.kernels.avg_pool2d_backward(dy, np.full_like(x, np.nan), 3, stride=1, padding="same")
    assert_exact(b, a)


SPECIAL = [
    pytest.param((1, 8, 8, 5), 2, None, "valid", id="batch1"),
    pytest.param((64, 4, 6, 3), 2, None, "valid", id="batch64"),
    pytest.param((64, 5, 5, 2), 3, 2, "same", id="batch64-same"),
    pytest.param((2, 26, 26, 32), 2, None, "valid", id="pool1-like"),
    pytest.param((2, 11, 11, 64), 2, None, "valid", id="pool2-like-odd"),
    pytest.param((2, 6, 6, 33), 2, 1, "same", id="c33-overlap"),
    pytest.param((3, 1, 1, 4), 1, None, "valid", id="1x1-input"),
    pytest.param((2, 1, 7, 3), (1, 3), None, "same", id="h1"),
    pytest.param((2, 5, 5, 3), 5, None, "valid", id="global"),
    pytest.param((2, 5, 5, 3), 7, 1, "same", id="window>input-same"),
    pytest.param((2, 9, 9, 2), 2, 3, "valid", id="stride>window"),
    pytest.param((0, 4, 4, 3), 2, None, "valid", id="empty-batch"),
]


@pytest.mark.parametrize("x_shape,pool,stride,padding", SPECIAL)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_special_shapes(backend, rng, x_shape, pool, stride, padding, dtype):
    kw = dict(stride=stride, padding=padding)
    x = data(rng, x_shape, dtype)
    dy = data(rng, y_shape(x_shape, pool, stride, padding), dtype)
    dyi = small_ints(rng, dy.shape, dtype)
    kh, kwid = V.positive_pair("t", "p", pool)
    assert_exact(zg.kernels.max_pool2d(x, pool, **kw), R.max_pool2d(x, pool, **kw))
    assert_exact(zg.kernels.max_pool2d_backward(dyi, x, pool, **kw), R.max_pool2d_backward(dyi, x, pool, **kw))
    assert_close(zg.kernels.max_pool2d_backward(dy, x, pool, **kw),
                 R.max_pool2d_backward(dy.astype(np.float64), x.astype(np.float64), pool, **kw),
                 overlap(pool, stride), dtype=dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    assert_close(zg.kernels.avg_pool2d(x, pool, **kw), R.avg_pool2d(x64, pool, **kw), kh * kwid, dtype=dtype)
    assert_close(zg.kernels.avg_pool2d_backward(dy, x, pool, **kw), R.avg_pool2d_backward(dy64, x64, pool, **kw),
                 overlap(pool, stride), dtype=dtype, factor=2)


TIE_GEOMETRIES = [pytest.param(p, s, pad, id=f"p{p}-s{s}-{pad}".replace(" ", ""))
                  for p, s, pad in [(2, None, "valid"), (3, 1, "same"), (3, 2, "same"), ((2, 3), 1, "valid"),
                                    (2, 1, "valid"), (3, None, "same")]]


@pytest.mark.parametrize("pool,stride,padding", TIE_GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_first_maximum_wins(backend, rng, pool, stride, padding, dtype):
    """Integer data in {0, 1, 2}: most windows hold several maxima; dy goes to the first."""
    x = small_ints(rng, (3, 9, 8, 4), dtype, 0, 3)
    kw = dict(stride=stride, padding=padding)
    dy = small_ints(rng, y_shape(x.shape, pool, stride, padding), dtype, 1, 9)
    assert_exact(zg.kernels.max_pool2d(x, pool, **kw), R.max_pool2d(x, pool, **kw))
    assert_exact(zg.kernels.max_pool2d_backward(dy, x, pool, **kw), R.max_pool2d_backward(dy, x, pool, **kw))


def test_max_pool_tie_goes_to_first_in_row_major_window_order(backend):
    """A hand-made case, independent of the reference: window [[1, 5], [5, 5]] -> the (0, 1) element."""
    x = np.array([[1, 5], [5, 5]], np.float64).reshape(1, 2, 2, 1)
    dx = zg.kernels.max_pool2d_backward(np.array([[[[3.0]]]]), x, 2)
    np.testing.assert_array_equal(dx.reshape(2, 2), [[0, 3], [0, 0]])


@pytest.mark.parametrize("pool,stride,padding", TIE_GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_first_nan_wins(backend, rng, pool, stride, padding, dtype):
    """NaN counts as the maximum (as np.argmax): the window's first NaN is selected."""
    x = data(rng, (2, 9, 8, 3), dtype)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[0, :3, :3, 0] = np.nan                                  # windows made wholly of NaN
    x[1, 4, 4, :] = np.inf
    x[1, 5, 5, :] = -np.inf
    kw = dict(stride=stride, padding=padding)
    dy = small_ints(rng, y_shape(x.shape, pool, stride, padding), dtype, 1, 9)
    got = zg.kernels.max_pool2d(x, pool, **kw)
    assert np.isnan(got).any()
    assert_exact(got, R.max_pool2d(x, pool, **kw))
    assert_exact(zg.kernels.max_pool2d_backward(dy, x, pool, **kw), R.max_pool2d_backward(dy, x, pool, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_padding_never_wins(backend, dtype):
    """A window whose real elements are all -inf routes its gradient to its first real element,
    never to padding (hand-made, independent of the reference): 3x3 'same' on a 2x2 image."""
    x = np.full((1, 2, 2, 1), -np.inf, dtype)
    dy = np.arange(1, 5, dtype=dtype).reshape(1, 2, 2, 1)
    assert_exact(zg.kernels.max_pool2d(x, 3, stride=1, padding="same"), x)
    dx = zg.kernels.max_pool2d_backward(dy, x, 3, stride=1, padding="same")
    # Every window covers the whole image and starts with padding: all four gradients reach (0, 0).
    np.testing.assert_array_equal(dx.reshape(2, 2), [[10, 0], [0, 0]])


def test_max_pool_nan_hand_made(backend):
    x = np.array([[1.0, np.nan], [7.0, np.nan]]).reshape(1, 2, 2, 1)
    assert np.isnan(zg.kernels.max_pool2d(x, 2)).all()
    dx = zg.kernels.max_pool2d_backward(np.array([[[[2.0]]]]), x, 2)
    np.testing.assert_array_equal(dx.reshape(2, 2), [[0, 2], [0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_noncontiguous_inputs(backend, rng, dtype):
    x = data(rng, (2, 10, 11, 8), dtype)[:, 1::2, ::-1, ::3]   # (2, 5, 11, 3)
    dy = data(rng, (2, 3, 6, 6), dtype)[..., ::2]
    x0, dy0 = x.copy(), dy.copy()
    kw = dict(stride=2, padding="same")
    assert_exact(zg.kernels.max_pool2d(x, 3, **kw), R.max_pool2d(x, 3, **kw))
    assert_close(zg.kernels.max_pool2d_backward(dy, x, 3, **kw),
                 R.max_pool2d_backward(dy.astype(np.float64), x.astype(np.float64), 3, **kw), 4, dtype=dtype)
    assert_close(zg.kernels.avg_pool2d(x, 3, **kw), R.avg_pool2d(x.astype(np.float64), 3, **kw), 9, dtype=dtype)
    assert_close(zg.kernels.avg_pool2d_backward(dy, x, 3, **kw),
                 R.avg_pool2d_backward(dy.astype(np.float64), x.astype(np.float64), 3, **kw), 4, dtype=dtype,
                 factor=2)
    assert_exact(x, x0)
    assert_exact(dy, dy0)


@given(n=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), c=st.integers(1, 9),
       pool=st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))),
       stride=st.one_of(st.none(), st.integers(1, 4), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       padding=st.sampled_from(["valid", "same"]), dtype=st.sampled_from([np.float32, np.float64]),
       ties=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_pool_hypothesis(backend, n, h, w, c, pool, stride, padding, dtype, ties, seed):
    try:
        shape = y_shape((n, h, w, c), pool, stride, padding)
    except ValueError:
        assume(False)
    rng = np.random.default_rng(seed)
    x = small_ints(rng, (n, h, w, c), dtype, 0, 3) if ties else data(rng, (n, h, w, c), dtype)
    dy = small_ints(rng, shape, dtype)
    kw = dict(stride=stride, padding=padding)
    kh, kwid = V.positive_pair("t", "p", pool)
    assert_exact(zg.kernels.max_pool2d(x, pool, **kw), R.max_pool2d(x, pool, **kw))
    assert_exact(zg.kernels.max_pool2d_backward(dy, x, pool, **kw), R.max_pool2d_backward(dy, x, pool, **kw))
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    assert_close(zg.kernels.avg_pool2d(x, pool, **kw), R.avg_pool2d(x64, pool, **kw), kh * kwid, dtype=dtype)
    assert_close(zg.kernels.avg_pool2d_backward(dy, x, pool, **kw), R.avg_pool2d_backward(dy64, x64, pool, **kw),
                 overlap(pool, stride), dtype=dtype, factor=2)


# ---- the oracle itself, against the definition written as plain loops ----

def naive_pools(x, dy, g):
    """Max (first maximum, NaN counting as the maximum) and mean over each window's real
    elements, and both backward passes, element by element."""
    y_max = np.zeros((g.n, g.ho, g.wo, g.c))
    y_avg = np.zeros_like(y_max)
    dx_max = np.zeros(x.shape)
    dx_avg = np.zeros(x.shape)
    for n in range(g.n):
        for i in range(g.ho):
            for j in range(g.wo):
                for c in range(g.c):
                    cells = [(r, s) for p in range(g.kh) for q in range(g.kw)
                             for r, s in [(i * g.sh + p - g.pt, j * g.sw + q - g.pl)]
                             if 0 <= r < g.h and 0 <= s < g.w]
                    best = None
                    for r, s in cells:
                        v = x[n, r, s, c]
                        held = None if best is None else x[n, best[0], best[1], c]
                        if held is None or (not np.isnan(held) and (np.isnan(v) or v > held)):
                            best = (r, s)
                    y_max[n, i, j, c] = x[n, best[0], best[1], c]
                    dx_max[n, best[0], best[1], c] += dy[n, i, j, c]
                    y_avg[n, i, j, c] = sum(x[n, r, s, c] for r, s in cells) / len(cells)
                    for r, s in cells:
                        dx_avg[n, r, s, c] += dy[n, i, j, c] / len(cells)
    return y_max, dx_max, y_avg, dx_avg


@pytest.mark.parametrize("pool,stride,padding", GEOMETRIES)
def test_reference_pools_match_the_definition(rng, pool, stride, padding):
    x = small_ints(rng, (2, 5, 6, 2), np.float64, 0, 4)       # ties
    x[0, 1, 1, 0] = x[1, 3, 2, 1] = np.nan
    g = geometry(x.shape, pool, stride, padding)
    dy = data(rng, (g.n, g.ho, g.wo, g.c), np.float64)
    y_max, dx_max, y_avg, dx_avg = naive_pools(x, dy, g)
    kw = dict(stride=stride, padding=padding)
    np.testing.assert_array_equal(R.max_pool2d(x, pool, **kw), y_max)
    np.testing.assert_allclose(R.max_pool2d_backward(dy, x, pool, **kw), dx_max, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.avg_pool2d(x, pool, **kw), y_avg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.avg_pool2d_backward(dy, x, pool, **kw), dx_avg, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool,stride,padding", [(2, None, "valid"), (3, 3, "same"), (2, 3, "valid"), (3, 2, "same")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_backward_signed_zeros(backend, rng, pool, stride, padding, dtype):
    """dy of -0 gives +0 in dx, as the reference's sum into zeros does, whether the windows
    are disjoint (dx written once) or overlap (dx accumulated); gaps between windows get +0."""
    x = data(rng, (2, 7, 8, 5), dtype)
    kw = dict(stride=stride, padding=padding)
    dy = np.where(rng.random(y_shape(x.shape, pool, stride, padding)) < 0.5, -0.0, 1.5).astype(dtype)
    assert_exact(zg.kernels.max_pool2d_backward(dy, x, pool, **kw), R.max_pool2d_backward(dy, x, pool, **kw))
    assert_exact(zg.kernels.avg_pool2d_backward(dy, x, pool, **kw), R.avg_pool2d_backward(dy, x, pool, **kw))
