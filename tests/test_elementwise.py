"""relu and relu_backward on every backend against the reference, NaN and signed zeros included."""
import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import reference as R

DTYPES = [np.float32, np.float64]
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (70_001,), (64, 26, 26, 32)]


def special_values(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    flat[: min(flat.size, 5)] = specials[: min(flat.size, 5)]
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu(backend, rng, dtype, shape):
    x = special_values(rng, shape, dtype)
    got = zg.kernels.relu(x)
    assert got.shape == x.shape and got.dtype == dtype
    np.testing.assert_array_equal(got, R.relu(x))
    np.testing.assert_array_equal(got, np.maximum(x, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu_backward(backend, rng, dtype, shape):
    y = np.asarray(np.maximum(special_values(rng, shape, dtype), 0))
    dy = rng.standard_normal(shape).astype(dtype)
    got = zg.kernels.relu_backward(dy, y)
    np.testing.assert_array_equal(got, R.relu_backward(dy, y))
    np.testing.assert_array_equal(got, np.where(y > 0, dy, 0))


def test_relu_does_not_modify_its_input(backend, rng):
    x = rng.standard_normal((100,)).astype(np.float32)
    before = x.copy()
    zg.kernels.relu(x)
    np.testing.assert_array_equal(x, before)


def test_relu_backward_errors(backend):
    with pytest.raises(ValueError, match="argument 'y'"):
        zg.kernels.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="argument 'y'"):
        zg.kernels.relu_backward(np.ones(3, np.float32), np.ones(3, np.float64))
    with pytest.raises(TypeError, match="argument 'x'"):
        zg.kernels.relu(np.ones(3, np.int32))
