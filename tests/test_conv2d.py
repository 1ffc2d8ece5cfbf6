"""conv2d and its two backward passes on every backend (every SIMD level of cpp) against the
reference, plus the adjoint identities that tie the three passes together."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import zengrad as zg
from zengrad.kernels import _validate as V
from zengrad.kernels import reference as R
from tolerances import assert_close

pytestmark = pytest.mark.all_simd

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


@dataclass(frozen=True)
class Conv:
    id: str
    x: tuple                 # (N, H, W, C)
    k: tuple                 # (kh, kw)
    o: int
    stride: object = 1
    padding: object = "valid"
    dilation: object = 1
    bias: bool = True

    @property
    def w(self):
        return (*self.k, self.x[3], self.o)

    def geometry(self):
        return V.window("test", self.x, self.k, self.stride, self.padding, self.dilation)

    @property
    def y(self):
        g = self.geometry()
        return (g.n, g.ho, g.wo, self.o)

    def kw(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)


CASES = [
    Conv("1x1", (2, 5, 6, 3), (1, 1), 4),
    Conv("1x1-same-s2", (2, 7, 6, 5), (1, 1), 17, stride=2, padding="same"),
    Conv("3x3", (2, 8, 8, 3), (3, 3), 8),
    Conv("3x3-same", (2, 7, 9, 4), (3, 3), 17, padding="same", bias=False),
    Conv("5x5-same", (2, 11, 9, 3), (5, 5), 5, padding="same"),
    Conv("5x5-valid", (1, 9, 10, 2), (5, 5), 3),
    Conv("2x5", (2, 8, 9, 3), (2, 5), 6),
    Conv("5x2-same", (2, 9, 7, 3), (5, 2), 6, padding="same"),
    Conv("1x3", (1, 4, 7, 2), (1, 3), 1),
    Conv("cin1-seed", (2, 12, 12, 1), (3, 3), 32),
    Conv("cin1-wide-rows", (1, 5, 40, 1), (3, 3), 33, padding=((1, 0), (2, 1))),
    Conv("cin3-dilation-2x1", (2, 9, 30, 3), (3, 3), 5, dilation=(2, 1), padding="same"),
    Conv("cin2-stride-1x2", (1, 6, 41, 2), (2, 3), 40, stride=(1, 2)),
    # backward-weight with few channels: three taps at a time where all land inside, edges alone
    Conv("cin2-cout64-1x7-same-stride", (2, 5, 11, 2), (3, 7), 64, stride=(1, 2), padding="same"),
    Conv("cin1-cout32-padding-past-taps", (1, 6, 4, 1), (3, 3), 32, padding=((1, 2), (3, 3))),
    # forward with few channels, summed directly: tiles of 12 pixels (edges checked), then of 4
    Conv("cin1-cout32-wide-same", (2, 5, 30, 1), (3, 3), 32, padding="same"),
    Conv("cin1-cout32-wide-valid", (1, 4, 29, 1), (2, 3), 32),
    Conv("cin3-cout64-wide-stride2-dilated", (1, 7, 61, 3), (3, 5), 64, stride=2, dilation=(1, 2), bias=False),
    Conv("cout1", (2, 6, 6, 4), (3, 3), 1),
    Conv("cout3", (2, 6, 6, 4), (3, 3), 3),
    Conv("cout16", (2, 6, 6, 5), (3, 3), 16),
    Conv("cout17", (2, 6, 6, 5), (3, 3), 17),
    Conv("cout32", (1, 6, 6, 3), (3, 3), 32),
    Conv("cout33", (1, 6, 6, 3), (3, 3), 33, padding="same"),
    Conv("cout64-cin32", (1, 7, 7, 32), (3, 3), 64),
    Conv("cin17-cout9", (2, 5, 5, 17), (3, 3), 9),
    # wide rows with many channels: the micro-kernel reads the image (or a padded copy) in place
    Conv("conv2-like-valid", (2, 13, 13, 32), (3, 3), 64),       # the last tile would read past x
    Conv("cin16-wide-same", (2, 6, 23, 16), (3, 3), 40, padding="same", bias=False),
    Conv("cin9-wide-stride2", (1, 9, 40, 9), (3, 3), 33, stride=2),
    Conv("cin100-segment-over-kc", (1, 4, 12, 100), (3, 3), 20, padding=((2, 0), (1, 1))),
    Conv("cin10-rows-over-kc", (2, 9, 70, 10), (3, 3), 16),      # backward-weight: 4 + 3 rows a call
    Conv("wide-rows-in-padding", (1, 3, 40, 8), (3, 3), 12, padding=((3, 3), (1, 1))),  # no kernel row inside
    Conv("deep-rows-in-padding", (1, 3, 40, 100), (3, 3), 12, padding=((3, 3), (1, 1))),  # ... and kw*c > KC
    Conv("cin16-copy-padded-columns", (2, 6, 7, 16), (3, 3), 24, dilation=(2, 1), padding=((4, 1), (3, 2))),
    Conv("cin24-copy-wide-padding", (1, 5, 6, 24), (3, 3), 33, padding=((4, 3), (3, 4))),  # rows past both edges
    Conv("cin64-same", (2, 9, 30, 64), (3, 3), 16, padding="same"),    # backward-data: 64 columns, the wide kernel
    Conv("cout128-valid", (1, 8, 21, 8), (3, 3), 128),                 # forward: two panels of the wide kernel
    Conv("same-chunks-split-images", (2, 9, 100, 8), (3, 3), 8, padding="same"),  # backward-weight: 6-row chunks
    Conv("cin12-dilation-h", (2, 11, 24, 12), (3, 3), 8, dilation=(2, 1), padding="same"),
    Conv("batch1", (1, 9, 9, 3), (3, 3), 8, padding="same"),
    Conv("batch64", (64, 5, 5, 3), (3, 3), 8),
    Conv("batch64-same", (64, 4, 3, 2), (3, 3), 5, padding="same", bias=False),
    Conv("stride2", (2, 9, 9, 3), (3, 3), 4, stride=2),
    Conv("stride2-same-odd", (2, 9, 7, 3), (3, 3), 4, stride=2, padding="same"),
    Conv("stride2-same-even", (2, 8, 10, 3), (3, 3), 4, stride=2, padding="same"),
    Conv("stride(2,1)", (2, 9, 8, 3), (3, 3), 5, stride=(2, 1)),
    Conv("stride(1,3)-same", (2, 7, 11, 2), (3, 3), 5, stride=(1, 3), padding="same"),
    Conv("stride3>k2", (2, 10, 11, 3), (2, 2), 4, stride=3),   # input pixels no window touches
    Conv("dilation2", (2, 10, 9, 3), (3, 3), 4, dilation=2),
    Conv("dilation2-same", (2, 9, 8, 3), (3, 3), 4, padding="same", dilation=2),
    Conv("dilation(2,1)-s2", (2, 11, 9, 3), (3, 2), 4, stride=2, dilation=(2, 1)),
    Conv("dilation3-pad", (1, 7, 7, 2), (2, 3), 3, padding=2, dilation=3),
    Conv("pad-int1", (2, 6, 7, 3), (3, 3), 4, padding=1),
    Conv("pad-int0", (2, 6, 7, 3), (3, 3), 4, padding=0),
    Conv("pad(1,2)", (2, 6, 7, 3), (3, 3), 4, padding=(1, 2)),
    Conv("pad-asym", (2, 6, 7, 3), (3, 3), 4, padding=((0, 2), (1, 0))),
    Conv("pad-asym2-s2", (2, 7, 6, 3), (3, 2), 5, stride=2, padding=((2, 1), (0, 3))),
    Conv("pad>k", (1, 3, 4, 2), (3, 3), 3, padding=3),          # windows wholly in the padding
    Conv("kernel=input", (3, 5, 4, 3), (5, 4), 7),               # output 1x1
    Conv("1x1-input", (2, 1, 1, 6), (1, 1), 5),
    Conv("odd13-cin32", (2, 13, 13, 32), (3, 3), 20),
    # grid rows of 8 to 14 pixels: one tile of their own height (AVX-512), read in place or padded
    Conv("rows-of-8-cin8", (2, 6, 10, 8), (3, 3), 32),                       # backward-data: rows of 10
    Conv("rows-of-14-cout64-same", (1, 5, 14, 16), (3, 3), 64, padding="same"),  # instead of the wide kernel
    Conv("rows-of-9-dilated", (2, 9, 13, 10), (3, 3), 33, dilation=(1, 2)),
    Conv("rows-of-13-stride2", (1, 7, 27, 8), (3, 3), 20, stride=2),
    Conv("empty-batch", (0, 5, 5, 3), (3, 3), 4, padding="same"),
]


def data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def red_forward(c: Conv):
    return c.k[0] * c.k[1] * c.x[3]


def red_data(c: Conv):
    return c.k[0] * c.k[1] * c.o


def bias_scale(dy):
    """The size of db's partial sums: the rms over channels of the 2-norm of each channel of dy."""
    norms = np.sqrt(np.square(dy.astype(np.float64)).sum(axis=(0, 1, 2)))
    return float(np.sqrt(np.mean(np.square(norms))))


def term_scale(a, b, reduction: int) -> float:
    """The size of a length-`reduction` sum of products of a's and b's elements (a random walk):
    what its rounding errors scale with, even where the sum cancels to nearly nothing."""
    rms = [math.sqrt(float(np.mean(np.square(v.astype(np.float64))))) if v.size else 0.0 for v in (a, b)]
    return rms[0] * rms[1] * math.sqrt(max(reduction, 1))


def red_weight(c: Conv):
    g = c.geometry()
    return g.n * g.ho * g.wo


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_forward(backend, rng, case, dtype):
    x, w = data(rng, case.x, dtype), data(rng, case.w, dtype)
    b = data(rng, (case.o,), dtype) if case.bias else None
    expected = R.conv2d(*f64(x, w, b), **case.kw())
    got = zg.kernels.conv2d(x, w, b, **case.kw())
    assert got.shape == case.y
    assert_close(got, expected, red_forward(case) + 1, dtype=dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_fused_relu(backend, rng, case, dtype):
    """activation="relu" is relu(conv2d(...)): negatives exactly 0, the rest as without it."""
    x, w = data(rng, case.x, dtype), data(rng, case.w, dtype)
    b = data(rng, (case.o,), dtype) if case.bias else None
    plain = zg.kernels.conv2d(x, w, b, **case.kw())
    fused = zg.kernels.conv2d(x, w, b, activation="relu", **case.kw())
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))
    assert_close(fused, R.conv2d(*f64(x, w, b), activation="relu", **case.kw()), red_forward(case) + 1, dtype=dtype)


def test_conv2d_unknown_activation(backend, rng):
    x, w = data(rng, (1, 4, 4, 2), np.float32), data(rng, (3, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="argument 'activation'"):
        zg.kernels.conv2d(x, w, activation="gelu")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_data(backend, rng, case, dtype):
    dy, w = data(rng, case.y, dtype), data(rng, case.w, dtype)
    expected = R.conv2d_backward_data(*f64(dy, w), case.x, **case.kw())
    got = zg.kernels.conv2d_backward_data(dy, w, case.x, **case.kw())
    assert_close(got, expected, red_data(case), dtype=dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True], ids=["dw", "dw+db"])
def test_conv2d_backward_weight(backend, rng, case, dtype, with_bias):
    x, dy = data(rng, case.x, dtype), data(rng, case.y, dtype)
    expected = R.conv2d_backward_weight(*f64(x, dy), case.w, with_bias=True, **case.kw())
    got = zg.kernels.conv2d_backward_weight(x, dy, case.w, with_bias=with_bias, **case.kw())
    if with_bias:
        assert isinstance(got, tuple) and len(got) == 2
        dw, db = got
        assert_close(db, expected[1], red_weight(case), dtype=dtype, what="db", scale=bias_scale(dy))
    else:
        assert isinstance(got, np.ndarray)
        dw = got
    assert_close(dw, expected[0], red_weight(case), dtype=dtype, what="dw")


def _inner(a, b):
    return float(np.dot(a.ravel().astype(np.float64), b.ravel().astype(np.float64)))


def check_adjoint(api, rng, case):
    """<conv(x, w), dy> == <x, backward_data(dy, w)> == <w, backward_weight(x, dy)>, and
    <conv(x, w, b) - conv(x, w), dy> == <b, db>: the passes are each other's transposes."""
    x, w, dy = (data(rng, s, np.float64) for s in (case.x, case.w, case.y))
    b = data(rng, (case.o,), np.float64)
    y = api.conv2d(x, w, **case.kw())
    dx = api.conv2d_backward_data(dy, w, case.x, **case.kw())
    dw, db = api.conv2d_backward_weight(x, dy, case.w, with_bias=True, **case.kw())
    yb = api.conv2d(x, w, b, **case.kw())
    lhs = _inner(y, dy)
    # Each inner product is a sum of N*Ho*Wo*kh*kw*C*O products of unit-variance terms.
    terms = max(y.size * red_forward(case), 1)
    scale = np.sqrt(terms) * 1e-13 + 1e-300
    assert abs(_inner(x, dx) - lhs) <= scale, (lhs, _inner(x, dx))
    assert abs(_inner(w, dw) - lhs) <= scale, (lhs, _inner(w, dw))
    assert abs(_inner(yb - y, dy) - _inner(b, db)) <= np.sqrt(max(dy.size, 1)) * 1e-12


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_conv2d_adjoint(backend, rng, case):
    check_adjoint(zg.kernels, rng, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_conv2d_adjoint_reference(rng, case):
    check_adjoint(R, rng, case)


@pytest.mark.parametrize("x_shape", [[2, 6, 6, 3], (np.int64(2), np.int64(6), np.int64(6), np.int64(3))],
                         ids=["list", "np.int64"])
def test_shape_arguments_accept_lists_and_numpy_ints(backend, rng, x_shape):
    w_shape = [3, 3, 3, 4] if isinstance(x_shape, list) else tuple(np.int64(v) for v in (3, 3, 3, 4))
    dy = data(rng, (2, 4, 4, 4), np.float64)
    w = data(rng, (3, 3, 3, 4), np.float64)
    x = data(rng, (2, 6, 6, 3), np.float64)
    dx = zg.kernels.conv2d_backward_data(dy, w, x_shape)
    assert_close(dx, R.conv2d_backward_data(dy, w, (2, 6, 6, 3)), 36)
    dw = zg.kernels.conv2d_backward_weight(x, dy, w_shape)
    assert_close(dw, R.conv2d_backward_weight(x, dy, (3, 3, 3, 4)), 32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_noncontiguous_inputs(backend, rng, dtype):
    x = data(rng, (2, 9, 10, 6), dtype)[:, ::2, 1:, ::2]            # (2, 5, 9, 3)
    w = np.asfortranarray(data(rng, (3, 3, 3, 4), dtype))
    b = data(rng, (8,), dtype)[::2]
    dy = data(rng, (2, 3, 7, 8), dtype)[..., ::2]
    copies = [a.copy() for a in (x, w, b, dy)]
    assert_close(zg.kernels.conv2d(x, w, b), R.conv2d(*f64(x, w, b)), 28, dtype=dtype)
    assert_close(zg.kernels.conv2d_backward_data(dy, w, x.shape), R.conv2d_backward_data(*f64(dy, w), x.shape),
                 36, dtype=dtype)
    assert_close(zg.kernels.conv2d_backward_weight(x, dy, w.shape),
                 R.conv2d_backward_weight(*f64(x, dy), w.shape), 42, dtype=dtype)
    for a, before in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, before)


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.sampled_from([1, 2, 3, (1, 2), (2, 1)]))
    dilation = draw(st.sampled_from([1, 1, 2, (1, 2)]))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 3),
                             st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                       st.tuples(st.integers(0, 2), st.integers(0, 2)))))
    x = (draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 6)))
    case = Conv("h", x, (kh, kw), draw(st.integers(1, 19)), stride, padding, dilation)
    try:
        case.geometry()
    except ValueError:
        assume(False)        # the window does not fit: covered by test_validation
    return case


@given(case=geometries(), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_conv2d_hypothesis(backend, case, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = data(rng, case.x, dtype), data(rng, case.w, dtype)
    b, dy = data(rng, (case.o,), dtype), data(rng, case.y, dtype)
    # Tiny outputs (a pixel or two, some all padding) can cancel to nearly nothing: judged on the
    # scale of their terms, not on their own rms.
    assert_close(zg.kernels.conv2d(x, w, b, **case.kw()), R.conv2d(*f64(x, w, b), **case.kw()),
                 red_forward(case) + 1, dtype=dtype, what="forward", scale=term_scale(x, w, red_forward(case)))
    assert_close(zg.kernels.conv2d_backward_data(dy, w, case.x, **case.kw()),
                 R.conv2d_backward_data(*f64(dy, w), case.x, **case.kw()),
                 red_data(case), dtype=dtype, what="backward_data", scale=term_scale(dy, w, red_data(case)))
    dw, db = zg.kernels.conv2d_backward_weight(x, dy, case.w, with_bias=True, **case.kw())
    edw, edb = R.conv2d_backward_weight(*f64(x, dy), case.w, with_bias=True, **case.kw())
    assert_close(dw, edw, red_weight(case), dtype=dtype, what="dw", scale=term_scale(x, dy, red_weight(case)))
    assert_close(db, edb, red_weight(case), dtype=dtype, what="db", scale=bias_scale(dy))


# ---- the oracle itself, against the definition written as plain loops ----

def naive_conv2d(x, w, b, g):
    """y[n, i, j, o] = sum over (p, q, c) of xpad[n, i*sh + p*dh, j*sw + q*dw, c] * w[p, q, c, o]."""
    y = np.zeros((g.n, g.ho, g.wo, w.shape[3]))
    for n in range(g.n):
        for i in range(g.ho):
            for j in range(g.wo):
                for p in range(g.kh):
                    for q in range(g.kw):
                        r, s = i * g.sh + p * g.dh - g.pt, j * g.sw + q * g.dw - g.pl
                        if 0 <= r < g.h and 0 <= s < g.w:
                            y[n, i, j] += x[n, r, s] @ w[p, q]
    return y if b is None else y + b


SMALL = [c for c in CASES if c.x[0] * c.x[1] * c.x[2] <= 250 and c.x[0] > 0]


@pytest.mark.parametrize("case", SMALL, ids=lambda c: c.id)
def test_reference_conv2d_matches_the_definition(rng, case):
    x, w, b = data(rng, case.x, np.float64), data(rng, case.w, np.float64), data(rng, (case.o,), np.float64)
    g = case.geometry()
    assert case.y == (g.n, g.ho, g.wo, case.o)
    np.testing.assert_allclose(R.conv2d(x, w, b, **case.kw()), naive_conv2d(x, w, b, g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding,size,stride,window,expected", [
    # Keras/TensorFlow "same": out = ceil(size / stride), the odd padding pixel at the end.
    ("same", 7, 1, 3, (7, 1, 1)), ("same", 7, 2, 3, (4, 1, 1)), ("same", 8, 2, 3, (4, 0, 1)),
    ("same", 5, 1, 4, (5, 1, 2)), ("same", 5, 3, 1, (2, 0, 0)), ("same", 1, 1, 5, (1, 2, 2)),
    ("valid", 7, 2, 3, (3, 0, 0)), ("valid", 3, 1, 3, (1, 0, 0)),
])
def test_same_and_valid_geometry(padding, size, stride, window, expected):
    g = V.window("t", (1, size, size, 1), (window, window), stride, padding)
    assert (g.ho, g.pt, g.pb) == expected and (g.wo, g.pl, g.pr) == expected
