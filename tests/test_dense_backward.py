"""zg.kernels.dense_backward on every backend (and every SIMD level of cpp) against the
reference, and the reference against the formulas; its argument checks."""
import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import reference as R
from tolerances import assert_close, assert_exact

pytestmark = pytest.mark.all_simd

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

# (N, in, out): the seed CNN's two layers, micro-kernel and column-block edges, empty ones
SHAPES = [(32, 1600, 128), (32, 128, 10), (1, 1, 1), (7, 13, 31), (33, 17, 65), (5, 300, 129), (200, 3, 64),
          (0, 5, 7), (5, 0, 7), (5, 7, 0), (0, 0, 0)]


def _ids(shape):
    return "x".join(map(str, shape))


def _operands(rng, shape, dtype):
    n, fan_in, out = shape
    dy = rng.standard_normal((n, out)).astype(dtype)
    x = rng.standard_normal((n, fan_in)).astype(dtype)
    w = rng.standard_normal((fan_in, out)).astype(dtype)
    y = np.maximum(rng.standard_normal((n, out)), 0).astype(dtype)
    y.flat[::5] = np.nan    # NaN stops the gradient, as in relu_backward
    return dy, x, w, y


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_dense_backward_matches_the_reference(backend, rng, shape, dtype, relu):
    dy, x, w, y = _operands(rng, shape, dtype)
    kw = dict(relu_output=y if relu else None, with_bias=True)
    got = zg.kernels.dense_backward(dy, x, w, **kw)
    want = R.dense_backward(dy, x, w, **kw)
    n, fan_in, out = shape
    for name, g, r, shape_, reduction in zip(("dx", "dw", "db"), got, want, ((n, fan_in), (fan_in, out), (out,)),
                                             (out, n, n)):
        assert g.shape == shape_ and g.dtype == dtype and g.flags.c_contiguous
        assert_close(g, r, reduction, dtype=dtype, what=name)


def test_the_reference_is_the_formulas(rng):
    dy, x, w, y = _operands(rng, (9, 6, 5), np.float64)
    g = np.where(y > 0, dy, 0.0)
    dx, dw, db = R.dense_backward(dy, x, w, relu_output=y, with_bias=True)
    np.testing.assert_allclose(dx, np.einsum("no,io->ni", g, w), rtol=1e-13)
    np.testing.assert_allclose(dw, np.einsum("ni,no->io", x, g), rtol=1e-13)
    np.testing.assert_allclose(db, [sum(g[i, j] for i in range(9)) for j in range(5)], rtol=1e-13)
    assert R.dense_backward(dy, x, w)[2] is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_bits_as_the_separate_kernels(backend, rng, dtype):
    """relu_backward, then gemm for dx and dw: the same numbers, element for element."""
    dy, x, w, y = _operands(rng, (33, 70, 129), dtype)
    dx, dw, _ = zg.kernels.dense_backward(dy, x, w, relu_output=y)
    g = zg.kernels.relu_backward(dy, y)
    assert_exact(dx, zg.kernels.gemm(g, w, trans_b=True), what="dx")
    assert_exact(dw, zg.kernels.gemm(x, g, trans_a=True), what="dw")


@pytest.mark.parametrize("with_dx, with_dw, with_bias", [(True, False, False), (False, True, False),
                                                         (False, False, True), (False, False, False)])
def test_only_what_is_asked(backend, rng, with_dx, with_dw, with_bias):
    dy, x, w, y = _operands(rng, (6, 4, 3), np.float32)
    got = zg.kernels.dense_backward(dy, x, w, relu_output=y, with_dx=with_dx, with_dw=with_dw, with_bias=with_bias)
    full = zg.kernels.dense_backward(dy, x, w, relu_output=y, with_bias=True)
    for asked, g, f in zip((with_dx, with_dw, with_bias), got, full):
        if asked:
            assert_exact(g, f)
        else:
            assert g is None


def test_inputs_are_copied_when_not_contiguous_and_never_written(backend, rng):
    dy, x, w, y = _operands(rng, (8, 6, 10), np.float64)
    wide = np.zeros((8, 20))
    wide[:, ::2] = dy
    arrays = (wide[:, ::2], np.asfortranarray(x), w, y)
    saved = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    got = zg.kernels.dense_backward(*arrays[:3], relu_output=arrays[3], with_bias=True)
    for g, r in zip(got, R.dense_backward(dy, x, w, relu_output=y, with_bias=True)):
        assert_close(g, r, 10, dtype=np.float64)
    for a, before in zip(arrays, saved):
        np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("call, exc, name", [
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy[0], x, w), ValueError, "dy"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy.tolist(), x, w), TypeError, "dy"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x[1:], w), ValueError, "x"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x.astype(np.int32), w), TypeError, "x"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w.T), ValueError, "w"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w[:, 1:]), ValueError, "w"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w.astype(np.float64)), TypeError, "w"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w, relu_output=y[1:]), ValueError, "relu_output"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w, relu_output=y.astype(np.float64)), TypeError,
     "relu_output"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w, with_bias=1), TypeError, "with_bias"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w, with_dx="yes"), TypeError, "with_dx"),
    (lambda dy, x, w, y: zg.kernels.dense_backward(dy, x, w, with_dw=None), TypeError, "with_dw"),
])
def test_bad_arguments_are_named(backend, rng, call, exc, name):
    dy, x, w, y = _operands(rng, (6, 4, 3), np.float32)
    with pytest.raises(exc, match=f"dense_backward\\(\\): argument '{name}'"):
        call(dy, x, w, y)
