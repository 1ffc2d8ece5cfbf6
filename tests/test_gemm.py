"""zg.kernels.gemm on every backend (and every SIMD level of cpp) against the reference."""
import ctypes
import importlib
import math
import mmap
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import zengrad as zg
from zengrad.kernels import _backends
from zengrad.kernels import reference as R
from tolerances import assert_close, assert_exact

pytestmark = pytest.mark.all_simd

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

# Just under and over every micro-kernel width (tiles up to 14 x 32 and 6 x 64, SIMD 4/8/16
# lanes) and cache block (K 256-768, M up to ~480).
EDGES = [1, 5, 6, 7, 11, 12, 13, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 255, 257, 385, 481]

SHAPES = (
    [(1, 1, 1), (7, 13, 31), (97, 127, 31), (13, 7, 97), (127, 97, 13), (31, 31, 127)]
    + [(m, 33, 29) for m in EDGES]                       # M sweep
    + [(13, n, 29) for n in EDGES]                       # N sweep
    + [(15, 33, k) for k in EDGES]                       # K sweep
    + [(15, 33, 4099), (1, 1, 4099), (14, 32, 4099), (1, 64, 4099)]   # long reductions
    + [(13, 33, 767), (13, 33, 769), (25, 65, 1537)]     # one and two blocks of k at 768
    + [(1000, 40, 800), (1201, 17, 300)]                 # over 960 rows: blocks of rows sized to L2
    + [(481, 257, 385), (257, 96, 513), (29, 481, 300)]  # several blocks in every loop
    + [(m, 64, 29) for m in (5, 6, 7, 13, 1001)] + [(1601, 128, 32), (97, 192, 21)]  # short sums, whole 64-column panels
)


def _ids(shape):
    return "x".join(map(str, shape))


def data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def operands(rng, m, n, k, dtype, trans_a=False, trans_b=False):
    a = data(rng, (k, m) if trans_a else (m, k), dtype)
    b = data(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b


def oracle(a, b, out=None, **kw):
    """The reference in float64 from the same (possibly float32) values."""
    out64 = None if out is None else out.astype(np.float64)
    return R.gemm(a.astype(np.float64), b.astype(np.float64), out64, **kw)


def check(got, expected, k, dtype, what="", scale=None):
    assert_close(got, expected, k + 1, dtype=dtype, what=what, scale=scale)


def term_scale(a, b, out, k, alpha, beta) -> float:
    """The size of alpha * (a length-k sum of products of a's and b's elements) + beta * out: what
    the rounding errors scale with, even where a small output's sums cancel to nearly nothing."""
    rms = [math.sqrt(float(np.mean(np.square(v.astype(np.float64))))) if v is not None and v.size else 0.0
           for v in (a, b, out)]
    return abs(alpha) * rms[0] * rms[1] * math.sqrt(max(k, 1)) + abs(beta) * rms[2]


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_shapes(backend, rng, shape, dtype):
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype)
    got = zg.kernels.gemm(a, b)
    check(got, oracle(a, b), k, dtype)
    assert got.flags.c_contiguous


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 31), (33, 17, 65), (65, 49, 257), (13, 481, 7),
                                   (257, 15, 385), (1601, 128, 32)], ids=_ids)
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_transposes(backend, rng, shape, trans_a, trans_b, dtype):
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    got = zg.kernels.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert got.shape == (m, n)
    check(got, oracle(a, b, trans_a=trans_a, trans_b=trans_b), k, dtype)


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.5, 0.0), (-1.0, 1.0), (0.5, -2.0), (0.0, 1.0),
                                        (0.0, 0.0), (1.0, 1.0), (-3.0, 0.25), (2, 3)])
@pytest.mark.parametrize("shape", [(17, 33, 13), (65, 31, 257)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_alpha_beta_out(backend, rng, shape, alpha, beta, dtype):
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype)
    out = data(rng, (m, n), dtype)
    expected = oracle(a, b, out, alpha=alpha, beta=beta)
    got = zg.kernels.gemm(a, b, out, alpha=alpha, beta=beta)
    check(out, expected, k, dtype, what="out")      # the result is written into `out`
    check(got, expected, k, dtype, what="returned")
    assert np.shares_memory(got, out)


def test_gemm_alpha_zero_beta_one_keeps_out(backend, rng):
    a, b = operands(rng, 9, 10, 11, np.float64)
    out = data(rng, (9, 10), np.float64)
    before = out.copy()
    zg.kernels.gemm(a, b, out, alpha=0.0, beta=1.0)
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(1, 1, 1), (17, 33, 13), (65, 31, 257)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_out(backend, rng, shape, fill, dtype):
    """beta == 0 means out is written, never read: NaN/inf already in out must not leak."""
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype)
    out = np.full((m, n), fill, dtype)
    got = zg.kernels.gemm(a, b, out, alpha=1.5, beta=0.0)
    assert np.isfinite(out).all()
    check(got, oracle(a, b, alpha=1.5), k, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_nonzero_reads_out(backend, rng, dtype):
    a, b = operands(rng, 20, 21, 22, dtype)
    out = data(rng, (20, 21), dtype)
    out[3, 4] = np.nan
    expected = oracle(a, b, out, beta=1.0)
    zg.kernels.gemm(a, b, out, beta=1.0)
    assert np.isnan(out[3, 4]) and np.isnan(out).sum() == 1
    check(out, expected, 22, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_without_out_is_ignored(backend, rng, dtype):
    """Without `out` a fresh array is returned and beta has nothing to scale."""
    a, b = operands(rng, 6, 7, 8, dtype)
    got = zg.kernels.gemm(a, b, alpha=2.0, beta=3.0)
    check(got, oracle(a, b, alpha=2.0), 8, dtype)


@pytest.mark.parametrize("shape", [(0, 5, 7), (5, 0, 7), (5, 7, 0), (0, 0, 0), (0, 5, 0), (1, 1, 0),
                                   (33, 17, 0)], ids=_ids)
@pytest.mark.parametrize("trans", [(False, False), (True, True)], ids=["NN", "TT"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_empty(backend, rng, shape, trans, dtype):
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, *trans)
    got = zg.kernels.gemm(a, b, trans_a=trans[0], trans_b=trans[1])
    assert got.shape == (m, n) and got.dtype == dtype
    assert_exact(got, np.zeros((m, n), dtype))       # an empty sum is exactly zero
    out = data(rng, (m, n), dtype)
    expected = (0.5 * out).astype(dtype)             # K == 0: out = alpha * 0 + beta * out
    zg.kernels.gemm(a, b, out, trans_a=trans[0], trans_b=trans[1], alpha=2.0, beta=0.5)
    assert_exact(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_returns_fresh_array_without_out(backend, rng, dtype):
    a, b = operands(rng, 8, 8, 8, dtype)
    c1 = zg.kernels.gemm(a, b)
    c2 = zg.kernels.gemm(a, b)
    assert not np.shares_memory(c1, c2)
    assert not np.shares_memory(c1, a) and not np.shares_memory(c1, b)
    assert_exact(c1, c2)                             # deterministic


def _noncontiguous_cases():
    """(name, make(rng, dtype) -> (a, b, trans_a, trans_b)) for inputs that are not C-contiguous."""
    def sliced(rng, dtype):
        big_a, big_b = data(rng, (40, 90), dtype), data(rng, (70, 60), dtype)
        return big_a[::2, 1::3], big_b[3:33, ::-2], False, False          # (20, 30) @ (30, 30)

    def fortran(rng, dtype):
        return (np.asfortranarray(data(rng, (37, 19), dtype)), np.asfortranarray(data(rng, (19, 41), dtype)),
                False, False)

    def transposed_views(rng, dtype):
        a, b = data(rng, (33, 17), dtype), data(rng, (17, 29), dtype)
        return a.T, b.T, True, True           # Fortran-order views; op(a) (33, 17), op(b) (17, 29)

    def negative_strides(rng, dtype):
        return data(rng, (16, 48), dtype)[::-1, ::-1], data(rng, (48, 5), dtype)[::-1], False, False

    def broadcast_readonly(rng, dtype):
        a = np.broadcast_to(data(rng, (1, 31), dtype), (13, 31))      # stride 0, read-only
        b = data(rng, (31, 9), dtype)
        b.setflags(write=False)
        return a, b, False, False

    def column_of_wide(rng, dtype):
        return data(rng, (65, 100), dtype)[:, 3:4], data(rng, (7, 3), dtype)[:, 1:2].T, False, False  # K = 1

    return [sliced, fortran, transposed_views, negative_strides, broadcast_readonly, column_of_wide]


@pytest.mark.parametrize("make", _noncontiguous_cases(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_noncontiguous_inputs_are_copied_not_modified(backend, rng, make, dtype):
    a, b, ta, tb = make(rng, dtype)
    a_before, b_before = a.copy(), b.copy()
    strides = (a.strides, b.strides)
    expected = oracle(np.array(a), np.array(b), trans_a=ta, trans_b=tb)
    got = zg.kernels.gemm(a, b, trans_a=ta, trans_b=tb)
    k = a.shape[0] if ta else a.shape[1]
    check(got, expected, k, dtype)
    assert_exact(a, a_before)
    assert_exact(b, b_before)
    assert (a.strides, b.strides) == strides


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_out_given_inputs_untouched(backend, rng, dtype):
    a, b = operands(rng, 40, 50, 60, dtype)
    a0, b0 = a.copy(), b.copy()
    out = data(rng, (40, 50), dtype)
    zg.kernels.gemm(a, b, out, alpha=-1.0, beta=2.0)
    assert_exact(a, a0)
    assert_exact(b, b0)


@given(m=st.integers(0, 70), n=st.integers(0, 70), k=st.integers(0, 300),
       trans_a=st.booleans(), trans_b=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]),
       alpha=st.sampled_from([1.0, -0.5, 2.0, 0.0]), beta=st.sampled_from([0.0, 1.0, -1.5]),
       with_out=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_gemm_hypothesis(backend, m, n, k, trans_a, trans_b, dtype, alpha, beta, with_out, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    out = data(rng, (m, n), dtype) if with_out else None
    kw = dict(trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    expected = oracle(a, b, out, **kw)
    scale = term_scale(a, b, out, k, alpha, beta if with_out else 0.0) or None
    got = zg.kernels.gemm(a, b, out, **kw)
    check(got, expected, k, dtype, scale=scale)
    if with_out:
        check(out, expected, k, dtype, scale=scale)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-1.5, 0.0), (0.5, 2.0), (0.0, 1.0)])
@pytest.mark.parametrize("shape", [(32, 1600, 128), (1, 4, 16), (5, 97, 33), (64, 300, 17), (65, 300, 17)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_few_rows_times_transposed_b(backend, rng, shape, alpha, beta, trans_a, dtype):
    """A few rows times a large transposed B (a dense layer's dX): computed as the transposed
    product; alpha, beta and out as everywhere (beta 0 never reads out, NaN included)."""
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, trans_a=trans_a, trans_b=True)
    out = data(rng, (m, n), dtype) if beta else np.full((m, n), np.nan, dtype)
    expected = oracle(a, b, out, trans_a=trans_a, trans_b=True, alpha=alpha, beta=beta)
    zg.kernels.gemm(a, b, out, trans_a=trans_a, trans_b=True, alpha=alpha, beta=beta)
    check(out, expected, k, dtype)


NARROW = [(m, n, k) for m in (16, 50) for n in (1, 7, 10, 16) for k in (3, 300)]


@pytest.mark.parametrize("trans_a, trans_b, alpha, beta", [(False, False, 1.0, 0.0), (True, False, -1.5, 0.0),
                                                           (False, True, 0.5, 2.0), (True, False, 0.5, 2.0)])
@pytest.mark.parametrize("shape", NARROW, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_narrow_products(backend, rng, shape, trans_a, trans_b, alpha, beta, dtype):
    """At most 16 columns (a 10-way output layer): the narrow tiles, whose partial columns are
    read and written with masks where the ISA has them. Nothing past out is written."""
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    memory = np.full(m * n + 16, 7.0, dtype)
    out = memory[:m * n].reshape(m, n)
    out[...] = data(rng, (m, n), dtype) if beta else np.nan
    expected = oracle(a, b, out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    zg.kernels.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    check(out, expected, k, dtype)
    assert (memory[m * n:] == 7.0).all()


def guarded(values):
    """A copy of `values` that ends where an unreadable page begins: a read past its last
    element kills the process instead of passing unnoticed."""
    page = mmap.PAGESIZE
    size = (values.nbytes + page - 1) // page * page + page
    memory = mmap.mmap(-1, size)
    start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(start + size - page), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
    copy = np.frombuffer(memory, values.dtype, values.size, size - page - values.nbytes).reshape(values.shape)
    copy[...] = values
    return copy


@pytest.mark.skipif(sys.platform != "linux", reason="guard pages through mprotect")
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("shape", [(32, 10, 128), (48, 7, 33), (16, 1, 5), (13, 64, 29)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_reads_no_element_past_its_operands(backend, rng, shape, trans_a, dtype):
    """Operands read in place (a narrow b, with masked loads) are read up to their last element
    and no further."""
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, trans_a)
    got = zg.kernels.gemm(guarded(a), guarded(b), trans_a=trans_a)
    check(got, oracle(a, b, trans_a=trans_a), k, dtype)


# ---- the fused epilogue: bias, then ReLU ----

@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("alpha,beta,with_out", [(1.0, 0.0, False), (-0.5, 0.0, True), (0.5, 2.0, True)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("shape", [(1, 1, 1), (13, 10, 29), (50, 10, 300), (32, 128, 1600), (32, 1600, 128),
                                   (5, 97, 33), (97, 65, 300), (7, 33, 0), (97, 128, 32)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_bias_and_activation(backend, rng, shape, trans_a, trans_b, alpha, beta, with_out, activation, dtype):
    """act(alpha op(a) op(b) + beta out + bias) on every path of the driver (packed, in place, the
    transposed product of few rows times a transposed b, an empty sum)."""
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    bias = data(rng, (n,), dtype) * 3
    out = data(rng, (m, n), dtype) if with_out else None
    kw = dict(trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, bias=bias, activation=activation)
    expected = oracle(a, b, None if out is None else out.copy(), **{**kw, "bias": bias.astype(np.float64)})
    got = zg.kernels.gemm(a, b, out, **kw)
    assert got is out or out is None
    scale = term_scale(a, b, out, k, alpha, beta) + float(np.abs(bias).max())
    check(got, expected, k, dtype, scale=scale)
    if activation == "relu":
        assert (got >= 0).all() and 0 < np.count_nonzero(got == 0) < got.size or got.size < 8


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_relu_keeps_nan_and_bias_reaches_every_row(backend, rng, dtype):
    """NaN survives the ReLU (as NumPy's maximum); an empty sum leaves act(bias) in every row."""
    a, b = operands(rng, 20, 40, 17, dtype)
    a[3, 5] = np.nan
    got = zg.kernels.gemm(a, b, bias=np.zeros(40, dtype), activation="relu")
    assert np.isnan(got[3]).all() and not np.isnan(np.delete(got, 3, axis=0)).any()
    bias = np.linspace(-2, 2, 40).astype(dtype)
    empty = zg.kernels.gemm(np.ones((6, 0), dtype), np.ones((0, 40), dtype), bias=bias, activation="relu")
    assert_exact(empty, np.broadcast_to(np.maximum(bias, 0), (6, 40)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_bias_is_not_modified(backend, rng, dtype):
    a, b = operands(rng, 33, 17, 9, dtype)
    bias = data(rng, (17,), dtype)
    saved = bias.copy()
    zg.kernels.gemm(a, b, bias=bias, activation="relu")
    assert_exact(bias, saved)


# ---- the compiled backend's fast path: the common call, straight to the kernel ----

CPU = importlib.import_module("zengrad._cpu") if "cpp" in zg.kernels.available_backends() else None


@pytest.mark.skipif(CPU is None, reason="needs the cpp backend")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("with_out", [False, True])
def test_fast_path_takes_the_common_call(rng, dtype, trans_a, trans_b, with_out):
    """Plain arrays: gemm returns the product, the same bits as the general path."""
    a, b = operands(rng, 13, 40, 29, dtype, trans_a, trans_b)
    out = data(rng, (13, 40), dtype) if with_out else None
    kw = dict(trans_a=trans_a, trans_b=trans_b, alpha=-0.5, beta=2 if with_out else 0.0)
    expected = oracle(a, b, None if out is None else out.copy(), **kw)
    general = _backends._load("cpp").gemm(a, b, np.array(out) if with_out else np.empty((13, 40), dtype),
                                         trans_a, trans_b, -0.5, 2.0 if with_out else 0.0, None, False)
    got = CPU.gemm(a, b, out, trans_a, trans_b, -0.5, 2 if with_out else 0.0, None, False)
    assert got is not None and (got is out if with_out else got.flags.owndata)
    assert_exact(got, general)
    check(got, expected, 29, dtype)


@pytest.mark.skipif(CPU is None, reason="needs the cpp backend")
@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_takes_bias_and_relu(rng, dtype):
    """The epilogue's common call goes to the kernel and gives the general path's bits."""
    a, b = operands(rng, 13, 40, 29, dtype)
    bias = data(rng, (40,), dtype)
    general = _backends._load("cpp").gemm(a, b, np.empty((13, 40), dtype), False, False, 1.0, 0.0, bias, True)
    got = CPU.gemm(a, b, None, False, False, 1.0, 0.0, bias, True)
    assert_exact(got, general)
    assert_exact(got, zg.kernels.gemm(a, b, bias=bias, activation="relu"))


def _plain(rng):
    return data(rng, (6, 5), np.float32), data(rng, (5, 7), np.float32), np.empty((6, 7), np.float32)


FALLBACKS = {
    "a not an array": lambda a, b, o: ([[1.0]], b, None, False, False, 1.0, 0.0, None, False),
    "a integer": lambda a, b, o: (a.astype(np.int32), b, None, False, False, 1.0, 0.0, None, False),
    "a byte-swapped": lambda a, b, o: (a.astype(a.dtype.newbyteorder()), b, None, False, False, 1.0, 0.0, None, False),
    "dtypes differ": lambda a, b, o: (a, b.astype(np.float64), None, False, False, 1.0, 0.0, None, False),
    "a 3-D": lambda a, b, o: (a[None], b, None, False, False, 1.0, 0.0, None, False),
    "a not contiguous": lambda a, b, o: (np.asfortranarray(a), b, None, False, False, 1.0, 0.0, None, False),
    "shapes disagree": lambda a, b, o: (a, b[:4], None, False, False, 1.0, 0.0, None, False),
    "flag not a bool": lambda a, b, o: (a, b, None, np.bool_(False), False, 1.0, 0.0, None, False),
    "alpha a bool": lambda a, b, o: (a, b, None, False, False, True, 0.0, None, False),
    "alpha a NumPy scalar": lambda a, b, o: (a, b, None, False, False, np.float64(1.0), 0.0, None, False),
    "alpha not finite": lambda a, b, o: (a, b, None, False, False, float("nan"), 0.0, None, False),
    "beta huge int": lambda a, b, o: (a, b, o, False, False, 1.0, 10**30, None, False),
    "out wrong shape": lambda a, b, o: (a, b, o[:5], False, False, 1.0, 0.0, None, False),
    "out wrong dtype": lambda a, b, o: (a, b, o.astype(np.float64), False, False, 1.0, 0.0, None, False),
    "out read-only": lambda a, b, o: (a, b, np.frombuffer(bytes(o.nbytes), np.float32).reshape(o.shape), False,
                                      False, 1.0, 0.0, None, False),
    "out is a": lambda a, b, o: (o, np.empty((7, 7), np.float32), o, False, False, 1.0, 0.0, None, False),
    "out overlaps b": lambda a, b, o: _overlapping(a),
    "bias wrong length": lambda a, b, o: (a, b, None, False, False, 1.0, 0.0, np.zeros(6, np.float32), False),
    "bias 2-D": lambda a, b, o: (a, b, None, False, False, 1.0, 0.0, np.zeros((1, 7), np.float32), False),
    "bias dtype differs": lambda a, b, o: (a, b, None, False, False, 1.0, 0.0, np.zeros(7), False),
    "bias not an array": lambda a, b, o: (a, b, None, False, False, 1.0, 0.0, [0.0] * 7, False),
    "bias not contiguous": lambda a, b, o: (a, b, None, False, False, 1.0, 0.0, np.zeros(14, np.float32)[::2],
                                            False),
    "relu not a bool": lambda a, b, o: (a, b, None, False, False, 1.0, 0.0, None, "relu"),
    "out overlaps bias": lambda a, b, o: (a, b, o, False, False, 1.0, 0.0, o[0], False),
}


def _overlapping(a):
    """b (5 x 7) and out (6 x 7), both C-contiguous, sharing memory."""
    memory = np.zeros(72, np.float32)
    return a, memory[:35].reshape(5, 7), memory[30:].reshape(6, 7), False, False, 1.0, 0.0, None, False


@pytest.mark.skipif(CPU is None, reason="needs the cpp backend")
@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_fast_path_leaves_the_rest_to_the_checks(rng, case):
    """Anything but the common call returns None (the general path then copies or refuses), and
    touches nothing."""
    args = FALLBACKS[case](*_plain(rng))
    arrays = args[:3] + args[7:8]
    before = [np.array(x) if isinstance(x, np.ndarray) else None for x in arrays]
    assert CPU.gemm(*args) is None
    for x, saved in zip(arrays, before):
        if saved is not None:
            assert_exact(x, saved)
