"""Every documented error path: the exception type and a message that names the function and
the argument ("func(): argument 'name' must be ..., got ..."), on every backend, and the same
from the reference oracles. Bad arguments must be refused before any kernel runs."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import reference as R

F32, F64 = np.float32, np.float64


def z(*shape, dtype=F32):
    return np.zeros(shape, dtype)


@dataclass(frozen=True)
class Bad:
    id: str
    func: str                  # the kernel's name in zengrad.kernels
    call: Callable             # call(k) with k the module (zengrad.kernels or its reference)
    exc: type
    arg: str                   # the argument the message must name


def gemm(k, a=None, b=None, out=None, **kw):
    return k.gemm(z(3, 4) if a is None else a, z(4, 5) if b is None else b, out, **kw)


def conv(k, x=None, w=None, b=None, **kw):
    return k.conv2d(z(2, 6, 6, 3) if x is None else x, z(3, 3, 3, 4) if w is None else w, b, **kw)


def conv_bd(k, dy=None, w=None, x_shape=(2, 6, 6, 3), **kw):
    return k.conv2d_backward_data(z(2, 4, 4, 4) if dy is None else dy, z(3, 3, 3, 4) if w is None else w,
                                  x_shape, **kw)


def conv_bw(k, x=None, dy=None, w_shape=(3, 3, 3, 4), **kw):
    return k.conv2d_backward_weight(z(2, 6, 6, 3) if x is None else x, z(2, 4, 4, 4) if dy is None else dy,
                                    w_shape, **kw)


def _overlapping_out(k):
    buf = z(40)
    a, out = buf[:12].reshape(3, 4), buf[10:25].reshape(3, 5)    # both C-contiguous, sharing buf[10:12]
    return k.gemm(a, z(4, 5), out)


def _out_is_input(k):
    a = z(4, 4)
    return k.gemm(a, z(4, 4), a)


def _out_is_bias(k):
    out = z(3, 5)
    return gemm(k, out=out, bias=out[1])


def _readonly_out(k):
    out = z(3, 5)
    out.setflags(write=False)
    return gemm(k, out=out)


CASES = [
    # ---- gemm: types and dtypes ----
    Bad("a-list", "gemm", lambda k: gemm(k, a=[[1.0, 2.0]]), TypeError, "a"),
    Bad("b-int", "gemm", lambda k: gemm(k, b=3), TypeError, "b"),
    Bad("a-none", "gemm", lambda k: k.gemm(None, z(4, 5)), TypeError, "a"),
    Bad("a-int-dtype", "gemm", lambda k: gemm(k, a=np.zeros((3, 4), np.int64)), TypeError, "a"),
    Bad("b-int32", "gemm", lambda k: gemm(k, b=np.zeros((4, 5), np.int32)), TypeError, "b"),
    Bad("a-float16", "gemm", lambda k: gemm(k, a=z(3, 4, dtype=np.float16)), TypeError, "a"),
    Bad("a-complex", "gemm", lambda k: gemm(k, a=z(3, 4, dtype=np.complex128)), TypeError, "a"),
    Bad("a-bool", "gemm", lambda k: gemm(k, a=np.zeros((3, 4), bool)), TypeError, "a"),
    Bad("mixed-f32-f64", "gemm", lambda k: gemm(k, b=z(4, 5, dtype=F64)), TypeError, "b"),
    Bad("mixed-f64-f32", "gemm", lambda k: gemm(k, a=z(3, 4, dtype=F64)), TypeError, "b"),
    # ---- gemm: shapes ----
    Bad("a-1d", "gemm", lambda k: gemm(k, a=z(4)), ValueError, "a"),
    Bad("a-0d", "gemm", lambda k: gemm(k, a=np.zeros((), F32)), ValueError, "a"),
    Bad("b-3d", "gemm", lambda k: gemm(k, b=z(1, 4, 5)), ValueError, "b"),
    Bad("k-mismatch", "gemm", lambda k: gemm(k, b=z(5, 5)), ValueError, "b"),
    Bad("k-mismatch-trans_a", "gemm", lambda k: gemm(k, trans_a=True), ValueError, "b"),
    Bad("k-mismatch-trans_b", "gemm", lambda k: gemm(k, trans_b=True), ValueError, "b"),
    # ---- gemm: out ----
    Bad("out-shape", "gemm", lambda k: gemm(k, out=z(5, 3)), ValueError, "out"),
    Bad("out-shape-1d", "gemm", lambda k: gemm(k, out=z(15)), ValueError, "out"),
    Bad("out-dtype", "gemm", lambda k: gemm(k, out=z(3, 5, dtype=F64)), TypeError, "out"),
    Bad("out-int", "gemm", lambda k: gemm(k, out=np.zeros((3, 5), np.int32)), TypeError, "out"),
    Bad("out-list", "gemm", lambda k: gemm(k, out=[[0.0] * 5] * 3), TypeError, "out"),
    Bad("out-fortran", "gemm", lambda k: gemm(k, out=np.asfortranarray(z(3, 5))), ValueError, "out"),
    # ---- gemm: bias and activation ----
    Bad("bias-shape", "gemm", lambda k: gemm(k, bias=z(4)), ValueError, "bias"),
    Bad("bias-2d", "gemm", lambda k: gemm(k, bias=z(1, 5)), ValueError, "bias"),
    Bad("bias-dtype", "gemm", lambda k: gemm(k, bias=z(5, dtype=F64)), TypeError, "bias"),
    Bad("bias-int", "gemm", lambda k: gemm(k, bias=np.zeros(5, np.int64)), TypeError, "bias"),
    Bad("bias-list", "gemm", lambda k: gemm(k, bias=[0.0] * 5), TypeError, "bias"),
    Bad("activation-unknown", "gemm", lambda k: gemm(k, activation="tanh"), ValueError, "activation"),
    Bad("activation-bool", "gemm", lambda k: gemm(k, activation=True), ValueError, "activation"),
    Bad("out-overlaps-bias", "gemm", lambda k: _out_is_bias(k), ValueError, "out"),
    Bad("out-strided", "gemm", lambda k: gemm(k, out=z(3, 10)[:, ::2]), ValueError, "out"),
    Bad("out-readonly", "gemm", _readonly_out, ValueError, "out"),
    Bad("out-overlaps-a", "gemm", _overlapping_out, ValueError, "out"),
    Bad("out-is-a", "gemm", _out_is_input, ValueError, "out"),
    # ---- gemm: flags and scalars ----
    Bad("trans_a-int", "gemm", lambda k: gemm(k, trans_a=1), TypeError, "trans_a"),
    Bad("trans_b-str", "gemm", lambda k: gemm(k, trans_b="yes"), TypeError, "trans_b"),
    Bad("trans_a-none", "gemm", lambda k: gemm(k, trans_a=None), TypeError, "trans_a"),
    Bad("alpha-str", "gemm", lambda k: gemm(k, alpha="1"), TypeError, "alpha"),
    Bad("alpha-bool", "gemm", lambda k: gemm(k, alpha=True), TypeError, "alpha"),
    Bad("alpha-none", "gemm", lambda k: gemm(k, alpha=None), TypeError, "alpha"),
    Bad("alpha-complex", "gemm", lambda k: gemm(k, alpha=1j), TypeError, "alpha"),
    Bad("alpha-nan", "gemm", lambda k: gemm(k, alpha=float("nan")), ValueError, "alpha"),
    Bad("beta-inf", "gemm", lambda k: gemm(k, out=z(3, 5), beta=float("inf")), ValueError, "beta"),
    Bad("beta-array", "gemm", lambda k: gemm(k, beta=np.ones(2)), TypeError, "beta"),
    # ---- gemm: precision (tf32/bf16 exist for float32 on a GPU only) ----
    Bad("precision-int", "gemm", lambda k: gemm(k, precision=1), TypeError, "precision"),
    Bad("precision-unknown", "gemm", lambda k: gemm(k, precision="fp16"), ValueError, "precision"),
    Bad("precision-tf32-numpy", "gemm", lambda k: gemm(k, precision="tf32"), ValueError, "precision"),
    Bad("precision-bf16-numpy", "gemm", lambda k: gemm(k, precision="BF16"), ValueError, "precision"),

    # ---- conv2d ----
    Bad("x-list", "conv2d", lambda k: conv(k, x=[[[[0.0]]]]), TypeError, "x"),
    Bad("w-int", "conv2d", lambda k: conv(k, w=1), TypeError, "w"),
    Bad("x-int-dtype", "conv2d", lambda k: conv(k, x=np.zeros((2, 6, 6, 3), np.int64)), TypeError, "x"),
    Bad("w-float16", "conv2d", lambda k: conv(k, w=z(3, 3, 3, 4, dtype=np.float16)), TypeError, "w"),
    Bad("b-float16", "conv2d", lambda k: conv(k, b=z(4, dtype=np.float16)), TypeError, "b"),
    Bad("b-list", "conv2d", lambda k: conv(k, b=[0.0] * 4), TypeError, "b"),
    Bad("mixed-x-w", "conv2d", lambda k: conv(k, w=z(3, 3, 3, 4, dtype=F64)), TypeError, "w"),
    Bad("mixed-x-b", "conv2d", lambda k: conv(k, b=z(4, dtype=F64)), TypeError, "b"),
    Bad("x-3d", "conv2d", lambda k: conv(k, x=z(6, 6, 3)), ValueError, "x"),
    Bad("w-5d", "conv2d", lambda k: conv(k, w=z(1, 3, 3, 3, 4)), ValueError, "w"),
    Bad("b-2d", "conv2d", lambda k: conv(k, b=z(1, 4)), ValueError, "b"),
    Bad("b-length", "conv2d", lambda k: conv(k, b=z(5)), ValueError, "b"),
    Bad("cin-mismatch", "conv2d", lambda k: conv(k, w=z(3, 3, 2, 4)), ValueError, "w"),
    Bad("window>input", "conv2d", lambda k: conv(k, w=z(7, 3, 3, 4)), ValueError, "x"),
    Bad("dilated-window>input", "conv2d", lambda k: conv(k, dilation=3), ValueError, "x"),
    Bad("window>input-width", "conv2d", lambda k: conv(k, x=z(2, 6, 2, 3)), ValueError, "x"),
    Bad("x-zero-H", "conv2d", lambda k: conv(k, x=z(2, 0, 6, 3), padding="same"), ValueError, "x"),
    Bad("x-zero-W", "conv2d", lambda k: conv(k, x=z(2, 6, 0, 3), padding="same"), ValueError, "x"),
    Bad("x-zero-C", "conv2d", lambda k: conv(k, x=z(2, 6, 6, 0), w=z(3, 3, 0, 4)), ValueError, "x"),
    Bad("w-zero-kh", "conv2d", lambda k: conv(k, w=z(0, 3, 3, 4)), ValueError, "w"),
    Bad("w-zero-kw", "conv2d", lambda k: conv(k, w=z(3, 0, 3, 4)), ValueError, "w"),
    Bad("w-zero-O", "conv2d", lambda k: conv(k, w=z(3, 3, 3, 0)), ValueError, "w"),
    Bad("stride-0", "conv2d", lambda k: conv(k, stride=0), ValueError, "stride"),
    Bad("stride-neg", "conv2d", lambda k: conv(k, stride=-1), ValueError, "stride"),
    Bad("stride-pair-0", "conv2d", lambda k: conv(k, stride=(1, 0)), ValueError, "stride"),
    Bad("stride-3tuple", "conv2d", lambda k: conv(k, stride=(1, 1, 1)), TypeError, "stride"),
    Bad("stride-float", "conv2d", lambda k: conv(k, stride=1.0), TypeError, "stride"),
    Bad("stride-bool", "conv2d", lambda k: conv(k, stride=True), TypeError, "stride"),
    Bad("stride-pair-bool", "conv2d", lambda k: conv(k, stride=(1, True)), TypeError, "stride"),
    Bad("stride-str", "conv2d", lambda k: conv(k, stride="1"), TypeError, "stride"),
    Bad("stride-none", "conv2d", lambda k: conv(k, stride=None), TypeError, "stride"),
    Bad("dilation-0", "conv2d", lambda k: conv(k, dilation=0), ValueError, "dilation"),
    Bad("dilation-neg", "conv2d", lambda k: conv(k, dilation=(-1, 1)), ValueError, "dilation"),
    Bad("dilation-3tuple", "conv2d", lambda k: conv(k, dilation=(1, 1, 1)), TypeError, "dilation"),
    Bad("dilation-float", "conv2d", lambda k: conv(k, dilation=(1.0, 1)), TypeError, "dilation"),
    Bad("dilation-bool", "conv2d", lambda k: conv(k, dilation=False), TypeError, "dilation"),
    Bad("padding-full", "conv2d", lambda k: conv(k, padding="full"), ValueError, "padding"),
    Bad("padding-empty-str", "conv2d", lambda k: conv(k, padding=""), ValueError, "padding"),
    Bad("padding-neg", "conv2d", lambda k: conv(k, padding=-1), ValueError, "padding"),
    Bad("padding-pair-neg", "conv2d", lambda k: conv(k, padding=(1, -1)), ValueError, "padding"),
    Bad("padding-asym-neg", "conv2d", lambda k: conv(k, padding=((0, -1), (0, 0))), ValueError, "padding"),
    Bad("padding-3tuple", "conv2d", lambda k: conv(k, padding=(1, 1, 1)), TypeError, "padding"),
    Bad("padding-float", "conv2d", lambda k: conv(k, padding=1.5), TypeError, "padding"),
    Bad("padding-none", "conv2d", lambda k: conv(k, padding=None), TypeError, "padding"),
    Bad("padding-bool", "conv2d", lambda k: conv(k, padding=True), TypeError, "padding"),
    Bad("padding-mixed", "conv2d", lambda k: conv(k, padding=((1, 2), 3)), TypeError, "padding"),
    Bad("padding-asym-3", "conv2d", lambda k: conv(k, padding=((1, 2, 3), (0, 0))), TypeError, "padding"),

    # ---- conv2d_backward_data ----
    Bad("dy-list", "conv2d_backward_data", lambda k: conv_bd(k, dy=[0.0]), TypeError, "dy"),
    Bad("dy-int-dtype", "conv2d_backward_data", lambda k: conv_bd(k, dy=np.zeros((2, 4, 4, 4), int)), TypeError, "dy"),
    Bad("w-float16", "conv2d_backward_data", lambda k: conv_bd(k, w=z(3, 3, 3, 4, dtype=np.float16)), TypeError, "w"),
    Bad("mixed", "conv2d_backward_data", lambda k: conv_bd(k, w=z(3, 3, 3, 4, dtype=F64)), TypeError, "w"),
    Bad("dy-3d", "conv2d_backward_data", lambda k: conv_bd(k, dy=z(4, 4, 4)), ValueError, "dy"),
    Bad("dy-shape", "conv2d_backward_data", lambda k: conv_bd(k, dy=z(2, 4, 5, 4)), ValueError, "dy"),
    Bad("dy-channels", "conv2d_backward_data", lambda k: conv_bd(k, dy=z(2, 4, 4, 3)), ValueError, "dy"),
    Bad("dy-batch", "conv2d_backward_data", lambda k: conv_bd(k, dy=z(3, 4, 4, 4)), ValueError, "dy"),
    Bad("dy-shape-stride", "conv2d_backward_data", lambda k: conv_bd(k, stride=2), ValueError, "dy"),
    Bad("x_shape-3", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(6, 6, 3)), TypeError, "x_shape"),
    Bad("x_shape-float", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(2, 6.0, 6, 3)), TypeError, "x_shape"),
    Bad("x_shape-bool", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(2, 6, 6, True)), TypeError, "x_shape"),
    Bad("x_shape-str", "conv2d_backward_data", lambda k: conv_bd(k, x_shape="2663"), TypeError, "x_shape"),
    Bad("x_shape-none", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=None), TypeError, "x_shape"),
    Bad("x_shape-array", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=np.array([2, 6, 6, 3])), TypeError,
        "x_shape"),
    Bad("x_shape-neg", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(2, -6, 6, 3)), ValueError, "x_shape"),
    Bad("x_shape-zero-H", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(2, 0, 6, 3)), ValueError, "x_shape"),
    Bad("x_shape-zero-C", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(2, 6, 6, 0)), ValueError, "x_shape"),
    Bad("w-zero-O", "conv2d_backward_data", lambda k: conv_bd(k, dy=z(2, 4, 4, 0), w=z(3, 3, 3, 0)), ValueError, "w"),
    Bad("cin-mismatch", "conv2d_backward_data", lambda k: conv_bd(k, x_shape=(2, 6, 6, 2)), ValueError, "w"),
    Bad("stride-0", "conv2d_backward_data", lambda k: conv_bd(k, stride=0), ValueError, "stride"),
    Bad("dilation-float", "conv2d_backward_data", lambda k: conv_bd(k, dilation=2.0), TypeError, "dilation"),
    Bad("padding-bad", "conv2d_backward_data", lambda k: conv_bd(k, padding="causal"), ValueError, "padding"),

    # ---- conv2d_backward_weight ----
    Bad("x-list", "conv2d_backward_weight", lambda k: conv_bw(k, x=[0.0]), TypeError, "x"),
    Bad("dy-float16", "conv2d_backward_weight", lambda k: conv_bw(k, dy=z(2, 4, 4, 4, dtype=np.float16)), TypeError,
        "dy"),
    Bad("mixed", "conv2d_backward_weight", lambda k: conv_bw(k, dy=z(2, 4, 4, 4, dtype=F64)), TypeError, "dy"),
    Bad("x-2d", "conv2d_backward_weight", lambda k: conv_bw(k, x=z(6, 18)), ValueError, "x"),
    Bad("dy-shape", "conv2d_backward_weight", lambda k: conv_bw(k, dy=z(2, 4, 4, 5)), ValueError, "dy"),
    Bad("dy-shape-padding", "conv2d_backward_weight", lambda k: conv_bw(k, padding="same"), ValueError, "dy"),
    Bad("w_shape-5", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=(1, 3, 3, 3, 4)), TypeError, "w_shape"),
    Bad("w_shape-float", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=(3.0, 3, 3, 4)), TypeError, "w_shape"),
    Bad("w_shape-int", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=3), TypeError, "w_shape"),
    Bad("w_shape-neg", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=(3, 3, 3, -4)), ValueError, "w_shape"),
    Bad("w_shape-zero-kh", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=(0, 3, 3, 4)), ValueError,
        "w_shape"),
    Bad("w_shape-zero-O", "conv2d_backward_weight", lambda k: conv_bw(k, dy=z(2, 4, 4, 0), w_shape=(3, 3, 3, 0)),
        ValueError, "w_shape"),
    Bad("w_shape-cin", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=(3, 3, 4, 4)), ValueError, "w_shape"),
    Bad("x-zero-W", "conv2d_backward_weight", lambda k: conv_bw(k, x=z(2, 6, 0, 3)), ValueError, "x"),
    Bad("window>input", "conv2d_backward_weight", lambda k: conv_bw(k, w_shape=(3, 9, 3, 4)), ValueError, "x"),
    Bad("with_bias-int", "conv2d_backward_weight", lambda k: conv_bw(k, with_bias=1), TypeError, "with_bias"),
    Bad("with_bias-str", "conv2d_backward_weight", lambda k: conv_bw(k, with_bias="True"), TypeError, "with_bias"),
    Bad("stride-3tuple", "conv2d_backward_weight", lambda k: conv_bw(k, stride=(1, 1, 1)), TypeError, "stride"),
    Bad("padding-neg", "conv2d_backward_weight", lambda k: conv_bw(k, padding=((1, 1), (-1, 1))), ValueError,
        "padding"),
]

# ---- pooling: the same checks for all four functions ----
POOL_FUNCS = ["max_pool2d", "avg_pool2d", "max_pool2d_backward", "avg_pool2d_backward"]


def pool(name, x=None, pool_size=2, dy=None, **kw):
    """Call pooling function `name`; the backward ones get a matching dy unless one is given."""
    x = z(2, 6, 6, 3) if x is None else x
    def call(k):
        if name.endswith("backward"):
            return getattr(k, name)(z(2, 3, 3, 3) if dy is None else dy, x, pool_size, **kw)
        return getattr(k, name)(x, pool_size, **kw)
    return call


for _f in POOL_FUNCS:
    CASES += [
        Bad("x-list", _f, pool(_f, x=[[[[0.0]]]]), TypeError, "x"),
        Bad("x-int-dtype", _f, pool(_f, x=np.zeros((2, 6, 6, 3), np.int16)), TypeError, "x"),
        Bad("x-float16", _f, pool(_f, x=z(2, 6, 6, 3, dtype=np.float16)), TypeError, "x"),
        Bad("x-3d", _f, pool(_f, x=z(6, 6, 3)), ValueError, "x"),
        Bad("x-zero-H", _f, pool(_f, x=z(2, 0, 6, 3), padding="same"), ValueError, "x"),
        Bad("x-zero-W", _f, pool(_f, x=z(2, 6, 0, 3), padding="same"), ValueError, "x"),
        Bad("x-zero-C", _f, pool(_f, x=z(2, 6, 6, 0)), ValueError, "x"),
        Bad("window>input", _f, pool(_f, pool_size=7), ValueError, "x"),
        Bad("window>input-w", _f, pool(_f, pool_size=(2, 7)), ValueError, "x"),
        Bad("pool_size-0", _f, pool(_f, pool_size=0), ValueError, "pool_size"),
        Bad("pool_size-neg", _f, pool(_f, pool_size=(2, -2)), ValueError, "pool_size"),
        Bad("pool_size-3tuple", _f, pool(_f, pool_size=(2, 2, 2)), TypeError, "pool_size"),
        Bad("pool_size-float", _f, pool(_f, pool_size=2.0), TypeError, "pool_size"),
        Bad("pool_size-bool", _f, pool(_f, pool_size=True), TypeError, "pool_size"),
        Bad("pool_size-none", _f, pool(_f, pool_size=None), TypeError, "pool_size"),
        Bad("stride-0", _f, pool(_f, stride=0), ValueError, "stride"),
        Bad("stride-neg", _f, pool(_f, stride=(-2, 2)), ValueError, "stride"),
        Bad("stride-float", _f, pool(_f, stride=2.0), TypeError, "stride"),
        Bad("stride-bool", _f, pool(_f, stride=True), TypeError, "stride"),
        Bad("stride-3tuple", _f, pool(_f, stride=(2, 2, 2)), TypeError, "stride"),
        Bad("padding-full", _f, pool(_f, padding="full"), ValueError, "padding"),
        Bad("padding-int", _f, pool(_f, padding=1), TypeError, "padding"),
        Bad("padding-neg", _f, pool(_f, padding=-1), TypeError, "padding"),
        Bad("padding-pair", _f, pool(_f, padding=(0, 0)), TypeError, "padding"),
        Bad("padding-none", _f, pool(_f, padding=None), TypeError, "padding"),
    ]
    if _f.endswith("backward"):
        CASES += [
            Bad("dy-list", _f, pool(_f, dy=[0.0]), TypeError, "dy"),
            Bad("dy-int-dtype", _f, pool(_f, dy=np.zeros((2, 3, 3, 3), np.int32)), TypeError, "dy"),
            Bad("dy-mixed", _f, pool(_f, dy=z(2, 3, 3, 3, dtype=F64)), TypeError, "dy"),
            Bad("dy-3d", _f, pool(_f, dy=z(3, 3, 3)), ValueError, "dy"),
            Bad("dy-shape", _f, pool(_f, dy=z(2, 3, 4, 3)), ValueError, "dy"),
            Bad("dy-channels", _f, pool(_f, dy=z(2, 3, 3, 2)), ValueError, "dy"),
            Bad("dy-shape-stride", _f, pool(_f, stride=1), ValueError, "dy"),
            Bad("dy-shape-same", _f, pool(_f, pool_size=3, padding="same"), ValueError, "dy"),
        ]

_IDS = [f"{c.func}-{c.id}" for c in CASES]
assert len(set(_IDS)) == len(_IDS), "duplicate case ids"


def check(case: Bad, module) -> None:
    expected = re.escape(f"{case.func}(): argument '{case.arg}' must be ") + ".+, got .+"
    with pytest.raises(case.exc, match=expected) as info:
        case.call(module)
    assert type(info.value) is case.exc     # not a subclass standing in for it


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_error(backend, case):
    check(case, zg.kernels)


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_error_reference(case):
    check(case, R)


def test_window_too_large_in_backward_data_names_x_shape(backend):
    """conv2d_backward_data has no argument 'x': a window larger than x_shape must name 'x_shape'."""
    with pytest.raises(ValueError, match=re.escape("conv2d_backward_data(): argument 'x_shape' must be ")):
        conv_bd(zg.kernels, x_shape=(2, 2, 6, 3))


def test_out_overlapping_a_noncontiguous_input(backend, rng):
    """A non-contiguous input that overlaps `out` is copied before the kernel runs: either the
    call is refused naming 'out', or the result is that of the inputs as they were."""
    buf = rng.standard_normal((6, 6))
    a, b = buf[:, :4], rng.standard_normal((4, 6))
    expected = R.gemm(a, b)
    try:
        zg.kernels.gemm(a, b, buf)
    except ValueError as exc:
        assert "argument 'out'" in str(exc)
    else:
        np.testing.assert_allclose(buf, expected, rtol=1e-12, atol=1e-12)


# ---- refused before any kernel runs: a failing call leaves `out` untouched ----

@pytest.mark.parametrize("kw", [dict(alpha=float("nan")), dict(beta=float("inf")), dict(trans_a=1),
                                dict(b=z(5, 5))], ids=["alpha", "beta", "trans_a", "k"])
def test_failed_gemm_leaves_out_untouched(backend, kw):
    out = np.full((3, 5), 7.0, F32)
    with pytest.raises((TypeError, ValueError)):
        gemm(zg.kernels, out=out, **{"a": np.ones((3, 4), F32), **kw})
    np.testing.assert_array_equal(out, 7.0)


# ---- valid edge values that must NOT be refused ----

def test_numpy_scalars_and_bools_are_accepted(backend):
    a, b = np.ones((2, 3), F64), np.ones((3, 4), F64)
    got = zg.kernels.gemm(a, b, trans_a=np.bool_(False), alpha=np.float32(2.0), beta=np.int64(0))
    np.testing.assert_array_equal(got, 6.0)
    x = np.ones((1, 4, 4, 2), F64)
    y = zg.kernels.conv2d(x, np.ones((2, 2, 2, 1)), stride=np.int64(2), padding=(np.int32(0), 0),
                          dilation=(1, np.int8(1)))
    np.testing.assert_array_equal(y, 8.0)
    np.testing.assert_array_equal(zg.kernels.max_pool2d(x, np.int64(2), stride=(2, np.int64(2))), 1.0)


HUGE_STRIDE_CALLS = {
    "conv2d": lambda k, x, w, dy, dyp, kw: k.conv2d(x, w, **kw),
    "conv2d_backward_data": lambda k, x, w, dy, dyp, kw: k.conv2d_backward_data(dy, w, x.shape, **kw),
    "conv2d_backward_weight": lambda k, x, w, dy, dyp, kw: k.conv2d_backward_weight(x, dy, w.shape, **kw),
    "max_pool2d": lambda k, x, w, dy, dyp, kw: k.max_pool2d(x, 2, **kw),
    "max_pool2d_backward": lambda k, x, w, dy, dyp, kw: k.max_pool2d_backward(dyp, x, 2, **kw),
    "avg_pool2d": lambda k, x, w, dy, dyp, kw: k.avg_pool2d(x, 2, **kw),
    "avg_pool2d_backward": lambda k, x, w, dy, dyp, kw: k.avg_pool2d_backward(dyp, x, 2, **kw),
}


@pytest.mark.parametrize("func", list(HUGE_STRIDE_CALLS))
def test_huge_strides_are_valid(backend, rng, func):
    """A stride far beyond the input is legal (one output per axis): every backend must give the
    reference's result, not refuse it or overflow."""
    x, w = rng.standard_normal((2, 5, 6, 2)), rng.standard_normal((2, 2, 2, 3))
    call = HUGE_STRIDE_CALLS[func]
    for stride in [2**31, 2**40, (3, 2**31), (2**62, 1)]:
        for padding in ["valid", "same"]:
            kw = dict(stride=stride, padding=padding)
            dy = rng.standard_normal(R.conv2d(x, w, **kw).shape)
            dyp = rng.standard_normal(R.max_pool2d(x, 2, **kw).shape)
            np.testing.assert_allclose(call(zg.kernels, x, w, dy, dyp, kw), call(R, x, w, dy, dyp, kw),
                                       rtol=1e-12, atol=1e-12, err_msg=str(kw))


def test_padding_strings_are_case_insensitive(backend):
    x = np.arange(2 * 5 * 5 * 3, dtype=F64).reshape(2, 5, 5, 3)
    w = np.ones((3, 3, 3, 2))
    np.testing.assert_array_equal(zg.kernels.conv2d(x, w, padding="SAME"), R.conv2d(x, w, padding="same"))
    np.testing.assert_array_equal(zg.kernels.max_pool2d(x, 2, padding="Valid"), R.max_pool2d(x, 2))


def test_known_geometry_still_refuses_look_alike_arguments(backend):
    """Checked geometries are remembered by their arguments; 1.0 and True equal 1 (and hash
    alike), so after a call with stride=1 they must still be refused."""
    x, w = np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 4))
    zg.kernels.conv2d(x, w, stride=1, padding="valid", dilation=(1, 1))
    zg.kernels.max_pool2d(x, 2, stride=(2, 2))
    for bad in [1.0, True, (1.0, 1), (1, True), np.float64(1.0)]:
        with pytest.raises(TypeError, match="argument 'stride'"):
            zg.kernels.conv2d(x, w, stride=bad)
        with pytest.raises(TypeError, match="argument 'dilation'"):
            zg.kernels.conv2d(x, w, dilation=bad)
    for bad in [2.0, (2, 2.0), (True, 2)]:
        with pytest.raises(TypeError, match="argument 'stride'"):
            zg.kernels.max_pool2d(x, 2, stride=bad)


# ---- backend selection and thread count ----

@pytest.mark.parametrize("switch", ["set_backend", "use_backend"])
@pytest.mark.parametrize("name", ["nope", "", "numpy ", "tensorflow"])
def test_unknown_backend_is_a_value_error_listing_the_available(backend, switch, name):
    before = zg.kernels.get_backend()
    with pytest.raises(ValueError) as info:
        if switch == "set_backend":
            zg.kernels.set_backend(name)
        else:
            with zg.kernels.use_backend(name):
                pass
    message = str(info.value)
    assert repr(name) in message
    for available in zg.kernels.available_backends():
        assert repr(available) in message
    assert zg.kernels.get_backend() == before


@pytest.mark.parametrize("name", ["cpp", "numba", "cuda"])
def test_backend_not_available_here_is_a_value_error(name):
    """Not built here (cpp without a compiler) or not part of this version: a ValueError."""
    if name in zg.kernels.available_backends():
        pytest.skip(f"{name} is available here")
    with pytest.raises(ValueError, match=re.escape(repr(name)) + ".*available here"):
        zg.kernels.set_backend(name)
    with pytest.raises(ValueError, match="available here"):
        with zg.kernels.use_backend(name):
            pass


@pytest.mark.parametrize("name", [None, 3, b"numpy"])
def test_backend_name_of_wrong_type_is_a_type_error(name):
    with pytest.raises(TypeError):
        zg.kernels.set_backend(name)
    with pytest.raises(TypeError):
        with zg.kernels.use_backend(name):
            pass


@pytest.mark.parametrize("n,exc", [(0, ValueError), (-1, ValueError), ("2", TypeError), (2.0, TypeError),
                                   (True, TypeError), (None, TypeError)])
def test_set_num_threads_refuses(backend, restore_num_threads, n, exc):
    before = zg.get_num_threads()
    with pytest.raises(exc, match=re.escape("set_num_threads(): argument 'n' must be ")):
        zg.set_num_threads(n)
    assert zg.get_num_threads() == before


@pytest.mark.parametrize("size", [1, 256, 257, 5000])   # listed in Python, and reduced in NumPy
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64])
def test_outside_range_of_integers(size, dtype):
    from zengrad.kernels._validate import outside_range

    values = np.arange(size, dtype=np.int64).astype(dtype) % min(10, size)
    limit = int(values.max()) + 1
    assert not outside_range(values, limit)
    assert not outside_range(values.reshape(1, -1), limit)
    assert outside_range(values, limit - 1)
    if np.dtype(dtype).kind == "i":
        values[size // 2] = -1
        assert outside_range(values, 1000)
    assert not outside_range(values[:0], 0)


@pytest.mark.parametrize("call, exc, message", [
    (lambda x, w, b: zg.functional.linear(x, w.T), ValueError, r"linear\(\): argument 'w' must have shape \(4, out\)"),
    (lambda x, w, b: zg.functional.linear(x[0], w), ValueError, r"linear\(\): argument 'x' must be 2-dimensional"),
    (lambda x, w, b: zg.functional.linear(x, w, b[1:]), ValueError, r"linear\(\): argument 'b' must have shape \(3,\)"),
    (lambda x, w, b: zg.functional.linear(x, w.astype(np.float64)), TypeError,
     r"linear\(\): argument 'w' must be of x's dtype float32"),
    (lambda x, w, b: zg.functional.linear(x, w, b, activation="tanh"), ValueError, r"gemm\(\): argument 'activation'"),
    (lambda x, w, b: zg.functional.conv2d(x.reshape(1, 5, 4, 1), w.reshape(2, 2, 3, 1)), ValueError,
     r"conv2d\(\): argument 'w'"),
])
def test_layer_ops_name_their_own_arguments(call, exc, message):
    """linear() and conv2d() leave their checks to the kernels; a refusal names the op's argument."""
    x, w, b = np.ones((5, 4), np.float32), np.ones((4, 3), np.float32), np.ones(3, np.float32)
    with pytest.raises(exc, match=message):
        call(x, w, b)
