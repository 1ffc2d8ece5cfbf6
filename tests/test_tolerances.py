"""The comparisons themselves: they accept rounding and reject real errors."""
import numpy as np
import pytest

from tolerances import assert_close, assert_exact


def _gemm_pair(k, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.random((16, k)).astype(dtype), rng.random((k, 24)).astype(dtype)
    return a, b, a.astype(np.float64) @ b.astype(np.float64)


@pytest.mark.parametrize("k", [1, 31, 4099])
def test_close_accepts_a_sequential_float32_sum(k):
    a, b, expected = _gemm_pair(k)
    acc = np.zeros((16, 24), np.float32)
    for i in range(k):                      # the least accurate order a kernel could use
        acc += np.outer(a[:, i], b[i]).astype(np.float32)
    assert_close(acc, expected, k, dtype=np.float32)


@pytest.mark.parametrize("k", [31, 4099])
def test_close_rejects_one_dropped_term(k):
    a, b, expected = _gemm_pair(k)
    with pytest.raises(AssertionError, match="differ beyond tolerance"):
        assert_close((a[:, 1:] @ b[1:]).astype(np.float32), expected, k, dtype=np.float32)


def test_close_rejects_float32_accuracy_for_float64():
    a, b, expected = _gemm_pair(257, np.float64)
    with pytest.raises(AssertionError):
        assert_close((a.astype(np.float32) @ b.astype(np.float32)).astype(np.float64), expected, 257)


def test_close_rejects_one_wrong_element():
    e = np.random.default_rng(1).standard_normal((50, 50))
    a = e.copy()
    a[7, 9] += 1e-6 * np.abs(e).max()
    assert_close(e.copy(), e, 10)
    with pytest.raises(AssertionError, match=r"\(7, 9\)"):
        assert_close(a, e, 10)


def test_close_checks_nan_inf_dtype_shape():
    e = np.array([1.0, np.nan, np.inf])
    assert_close(e.copy(), e, 1)
    with pytest.raises(AssertionError, match="NaN"):
        assert_close(np.array([1.0, 2.0, np.inf]), e, 1)
    with pytest.raises(AssertionError, match="infinities"):
        assert_close(np.array([1.0, np.nan, -np.inf]), e, 1)
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(e.astype(np.float32), e, 1)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(e[:2], e, 1)


def test_exact_is_bitwise():
    e = np.array([0.0, 1.0, np.nan], np.float32)
    assert_exact(e.copy(), e)
    with pytest.raises(AssertionError):
        assert_exact(np.array([-0.0, 1.0, np.nan], np.float32), e)
    with pytest.raises(AssertionError):
        assert_exact(np.array([0.0, np.nextafter(np.float32(1), np.float32(2)), np.nan], np.float32), e)
    with pytest.raises(AssertionError):
        assert_exact(e.astype(np.float64), e)
