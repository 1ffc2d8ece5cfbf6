"""The one place the test tolerances live.

Floating-point kernels may sum in any order (blocking, SIMD lanes, FMA), so a result is
compared with its oracle to within a bound that grows with the length of the sum behind each
output element (`reduction`: K of a GEMM, kh*kw*C of a convolution forward, N*Ho*Wo of a
weight gradient, the window size of an average pool) and with the dtype's epsilon:

    tol  = SAFETY * factor * eps(dtype) * sqrt(reduction)
    |actual - expected| <= tol * rms(expected) + tol * |expected|        (elementwise)

Random rounding errors of a length-K sum grow like sqrt(K) relative to the size of the terms;
the rms of `expected` stands in for that size, so near-zero outputs produced by cancellation
are judged on the scale of the whole result, not their own. Oracles for float32 tests are
computed in float64 from the same float32 inputs, so the bound only has to cover the kernel's
own error. Selections (max pooling) are compared bit for bit with `assert_exact`.
"""
from __future__ import annotations

import math

import numpy as np

# Headroom over the typical random-walk error of a sum: covers the largest of many outputs
# and the worse constant of a plain sequential loop compared to a blocked one.
SAFETY = 8.0


def to_numpy(a) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy array."""
    get = getattr(a, "get", None)
    if get is not None and not isinstance(a, np.ndarray):
        return get()
    return np.asarray(a)


def tolerance(dtype, reduction: int, factor: float = 1.0) -> float:
    return SAFETY * factor * float(np.finfo(dtype).eps) * math.sqrt(max(int(reduction), 1))


def _check_meta(actual: np.ndarray, expected: np.ndarray, dtype) -> None:
    assert isinstance(actual, np.ndarray), f"expected an array, got {type(actual).__name__}"
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"


def assert_close(actual, expected, reduction: int, *, dtype=None, factor: float = 1.0, what: str = "",
                 scale: float | None = None) -> None:
    """`actual` (of `dtype`, default expected's) equals `expected` to within rounding of a
    length-`reduction` sum. NaN and infinities must appear in the same places. `scale`, when
    given, is the size of the partial sums (e.g. the 2-norm of the terms) and replaces the rms of
    `expected`: needed when the whole result is a few sums that may cancel to nearly nothing."""
    actual, expected = to_numpy(actual), np.asarray(expected)
    dtype = np.dtype(dtype if dtype is not None else expected.dtype)
    _check_meta(actual, expected, dtype)
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    prefix = f"{what}: " if what else ""

    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        where = np.argwhere(nan_a != nan_e)[0]
        raise AssertionError(f"{prefix}NaN mismatch at {tuple(where)}: got {a[tuple(where)]}, "
                             f"expected {e[tuple(where)]} ({int((nan_a != nan_e).sum())} places)")
    inf_e = np.isinf(e)
    if not np.array_equal(np.isinf(a), inf_e) or not np.array_equal(a[inf_e], e[inf_e]):
        raise AssertionError(f"{prefix}infinities differ")

    finite = np.isfinite(e)
    if not finite.any():
        return
    tol = tolerance(dtype, reduction, factor)
    rms = scale if scale is not None else math.sqrt(float(np.mean(np.square(e[finite]))))
    with np.errstate(invalid="ignore"):          # inf - inf where both are inf: masked out
        err = np.where(finite, np.abs(a - e), 0.0)
    bound = tol * rms + tol * np.abs(e)
    bad = finite & ~(err <= bound)
    if bad.any():
        ratio = np.where(finite, err / np.maximum(bound, np.finfo(np.float64).tiny), 0.0)
        worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        raise AssertionError(
            f"{prefix}{int(bad.sum())} of {a.size} elements differ beyond tolerance "
            f"(dtype {dtype}, reduction {reduction}, tol {tol:.3g}, rms {rms:.3g}); worst at "
            f"{tuple(int(i) for i in worst)}: got {a[worst]!r}, expected {e[worst]!r}, "
            f"error {err[worst]:.3g} = {ratio[worst]:.3g} x the bound")


def assert_exact(actual, expected, *, what: str = "") -> None:
    """Bit-identical: same dtype, same shape, the same bits in every element (NaN included)."""
    actual, expected = to_numpy(actual), np.asarray(expected)
    _check_meta(actual, expected, expected.dtype)
    uint = {4: np.uint32, 8: np.uint64}[expected.dtype.itemsize]
    ab = np.ascontiguousarray(actual).view(uint)
    eb = np.ascontiguousarray(expected).view(uint)
    if not np.array_equal(ab, eb):
        diff = ab != eb
        where = tuple(int(i) for i in np.argwhere(diff)[0])
        prefix = f"{what}: " if what else ""
        raise AssertionError(f"{prefix}{int(diff.sum())} of {actual.size} elements not bit-identical; first at "
                             f"{where}: got {actual[where]!r}, expected {expected[where]!r}")


# ---- GPU tensor cores: float32 inputs rounded to TF32 or BF16, float32 accumulation ----
# Rounding each input to nearest with p mantissa bits moves a product by at most 2 * 2^-(p+1)
# relative; over a sum of K random terms that is a random walk of the same relative size as the
# sum itself, so the bound on |error| / rms(expected) does not grow with K, unlike the
# accumulation error (which still applies, in float32).
ROUNDED_INPUT_EPS = {"tf32": 2.0**-10, "bf16": 2.0**-7}


def rounded_input_factor(precision: str, reduction: int) -> float:
    """`factor` for assert_close(..., dtype=np.float32) of a result whose inputs were rounded to
    `precision` ("float32": none): tolerance = SAFETY * (2 eps_in + eps32 sqrt(reduction))."""
    if precision == "float32":
        return 1.0
    eps32 = float(np.finfo(np.float32).eps)
    return 1.0 + 2.0 * ROUNDED_INPUT_EPS[precision] / (eps32 * math.sqrt(max(int(reduction), 1)))
