"""The CUDA kernels (csrc/cuda) run on the CPU: their tiling, edges, loaders, split sums and
tensor-core fragment layouts checked without a GPU.

tests/cuda_emulation compiles the .cu files unchanged as C++ against a small emulation of CUDA
(blocks of fibers with real barriers, shared memory, warp-wide mma as the PTX ISA lays out the
fragments, TF32/BF16 rounding) and exposes the kernels through a C interface called here with
NumPy arrays, checked against reference.py. Every array sits inside guard bands: inputs' are
NaN, so a read outside an input shows up in the result; outputs' must come back untouched.
What this cannot check: the GPU itself (timing, the real mma unit, the compiler for sm_xx);
tests/test_cuda_kernels.py does that where there is a GPU. Needs only a C++17 compiler.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zengrad.kernels import _validate as V
from zengrad.kernels import reference as R
from test_conv2d import CASES as CONV_CASES
from test_conv2d import Conv, bias_scale, red_data, red_forward, red_weight
from test_pool2d import GEOMETRIES as POOL_GEOMETRIES
from test_pool2d import TIE_GEOMETRIES, y_shape
from tolerances import assert_close, assert_exact

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "cuda_emulation" / "emulated_kernels.cpp"
PRECISION = {"float32": 0, "tf32": 1, "bf16": 2}
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]
GUARD = 64  # elements of guard band on each side of every array


def _compiler():
    for name in [os.environ.get("CXX"), "c++", "g++", "clang++"]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The emulated kernels, compiled once per run (a few seconds)."""
    compiler = _compiler()
    if compiler is None or not (ROOT / "csrc" / "cuda").is_dir():
        pytest.skip("needs a C++17 compiler and the source tree (csrc/cuda)")
    lib_path = tmp_path_factory.mktemp("cuda_emulation") / "libzg_emulated.so"
    cmd = [compiler, "-std=c++17", "-O1", "-shared", "-fPIC", "-fno-strict-aliasing", "-Wall", "-Wextra",
           "-Wno-unknown-pragmas", f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'tests' / 'cuda_emulation' / 'include'}",
           str(SOURCE), "-o", str(lib_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the emulation does not compile:\n{done.stderr[-4000:]}"
    lib = ctypes.CDLL(str(lib_path))
    p, i, l, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_double
    geometry = ctypes.POINTER(ctypes.c_long)
    lib.zg_emu_error.restype = ctypes.c_char_p
    lib.zg_emu_gemm.argtypes = [i, i, i, i, i, i, l, d, p, l, p, l, d, p, l]
    lib.zg_emu_conv2d.argtypes = [i, i, p, p, p, p, i, geometry, i]
    lib.zg_emu_conv2d_backward_data.argtypes = [i, i, p, p, p, i, geometry]
    lib.zg_emu_conv2d_backward_weight_workspace.argtypes = [i, geometry, i]
    lib.zg_emu_conv2d_backward_weight_workspace.restype = l
    lib.zg_emu_conv2d_backward_weight.argtypes = [i, i, p, p, p, p, p, i, geometry]
    lib.zg_emu_max_pool2d.argtypes = [i, p, p, p, geometry]
    lib.zg_emu_max_pool2d_backward.argtypes = [i, p, p, p, p, geometry]
    lib.zg_emu_avg_pool2d.argtypes = [i, p, p, geometry]
    lib.zg_emu_avg_pool2d_backward.argtypes = [i, p, p, geometry]
    return lib


# ---- guarded arrays ----

class Guarded:
    """An array of `shape` inside a buffer with GUARD elements of `fill` on each side (offset by
    `shift` elements, to start off the usual 16-byte alignment)."""

    def __init__(self, shape, dtype, fill, shift=0):
        size = int(np.prod(shape, dtype=np.int64))
        self.buffer = np.full(size + 2 * GUARD + shift, fill, dtype)
        self.fill = fill
        self.start = GUARD + shift
        self.array = self.buffer[self.start:self.start + size].reshape(shape)

    @classmethod
    def of(cls, values, shift=0):
        g = cls(values.shape, values.dtype, np.nan if values.dtype.kind == "f" else -7, shift)
        g.array[...] = values
        return g

    @property
    def ptr(self):
        return self.array.ctypes.data

    def check_guards(self, what):
        head, tail = self.buffer[:self.start], self.buffer[self.start + self.array.size:]
        for band in (head, tail):
            same = np.isnan(band) if np.isnan(self.fill) else band == self.fill
            assert same.all(), f"{what}: written outside the array"


def output(shape, dtype, fill=12345.0):
    return Guarded(shape, np.dtype(dtype), fill)


def call(emu, name, *args):
    rc = getattr(emu, name)(*args)
    assert rc == 0, f"{name}: {emu.zg_emu_error().decode()}"


def geometry_arg(g):
    return (ctypes.c_long * 16)(*g)


def f64(*arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def round_inputs(a, precision):
    """float32 values as the tensor cores see them: TF32 (10 mantissa bits, to nearest, ties
    away from zero) or BF16 (7 bits, ties to even)."""
    if precision == "float32":
        return a
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    if precision == "tf32":
        r = ((u + 0x1000) & 0xFFFFE000).astype(np.uint32)
    else:
        r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32)
    return r.view(np.float32).reshape(a.shape)


# ---- GEMM ----

def run_gemm(emu, a, b, out, trans_a, trans_b, alpha, beta, precision="float32", shift=0):
    m, n = out.array.shape
    k = a.shape[0] if trans_a else a.shape[1]
    ga, gb = Guarded.of(a, shift), Guarded.of(b, shift)
    call(emu, "zg_emu_gemm", int(a.dtype == np.float64), PRECISION[precision], trans_a, trans_b, m, n, k, alpha,
         ga.ptr, a.shape[1], gb.ptr, b.shape[1], beta, out.ptr, n)
    out.check_guards("gemm out")
    return out.array


GEMM_SHAPES = [(1, 1, 1), (1, 1, 0), (7, 13, 31), (13, 7, 97), (128, 128, 8), (129, 127, 17), (64, 65, 16),
               (65, 64, 33), (200, 3, 5), (3, 200, 70), (257, 130, 9)]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", [(0, 0), (1, 0), (0, 1), (1, 1)], ids=["NN", "TN", "NT", "TT"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift", [0, 1], ids=["aligned", "misaligned"])
def test_gemm(emu, rng, shape, trans, dtype, shift):
    m, n, k = shape
    a = data(rng, (k, m) if trans[0] else (m, k), dtype)
    b = data(rng, (n, k) if trans[1] else (k, n), dtype)
    c = data(rng, (m, n), dtype)
    out = output((m, n), dtype, fill=np.nan)          # beta = 0: whatever is in out must not leak
    got = run_gemm(emu, a, b, out, *trans, 1.5, 0.0, shift=shift)
    kw = dict(trans_a=bool(trans[0]), trans_b=bool(trans[1]))
    assert_close(got, R.gemm(*f64(a, b), alpha=1.5, **kw), k + 1, dtype=dtype)
    out = output((m, n), dtype)
    out.array[...] = c
    got = run_gemm(emu, a, b, out, *trans, -1.0, 0.5, shift=shift)
    assert_close(got, R.gemm(*f64(a, b, c), alpha=-1.0, beta=0.5, **kw), k + 1, dtype=dtype)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (17, 9, 24), (16, 8, 16), (130, 70, 40), (64, 129, 17), (33, 64, 100)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", [(0, 0), (1, 0), (0, 1), (1, 1)], ids=["NN", "TN", "NT", "TT"])
def test_gemm_tensor_cores(emu, rng, shape, trans, precision):
    """Against the product of the inputs rounded as the tensor cores round them: any element
    missed, doubled, unrounded or paired with the wrong partner shows beyond float32 rounding."""
    m, n, k = shape
    a = data(rng, (k, m) if trans[0] else (m, k), np.float32)
    b = data(rng, (n, k) if trans[1] else (k, n), np.float32)
    c = data(rng, (m, n), np.float32)
    out = output((m, n), np.float32)
    out.array[...] = c
    got = run_gemm(emu, a, b, out, *trans, 2.0, -1.0, precision=precision)
    expected = R.gemm(*f64(round_inputs(a, precision), round_inputs(b, precision), c), alpha=2.0, beta=-1.0,
                      trans_a=bool(trans[0]), trans_b=bool(trans[1]))
    assert_close(got, expected, k + 1, dtype=np.float32)
    assert not np.array_equal(round_inputs(a, precision), a)   # the rounding is real


def test_tf32_rounds_ties_away_and_keeps_specials(emu):
    a = np.array([[1 + 2.0**-11], [-(1 + 2.0**-11)], [1 + 2.0**-12], [np.inf], [3.0], [-np.inf]], np.float32)
    got = run_gemm(emu, a, np.ones((1, 1), np.float32), output((6, 1), np.float32), 0, 0, 1.0, 0.0, precision="tf32")
    np.testing.assert_array_equal(got[:, 0], [1 + 2.0**-10, -(1 + 2.0**-10), 1.0, np.inf, 3.0, -np.inf])


# ---- convolutions ----

EMULATED_CONV_CASES = [c for c in CONV_CASES if c.id not in ("odd13-cin32",)] + [
    Conv("c8-o16-same", (2, 9, 9, 8), (3, 3), 16, padding="same"),
    Conv("c4-o72-s2", (2, 11, 10, 4), (3, 3), 72, stride=2),
    Conv("splitk-p4050", (2, 47, 47, 4), (3, 3), 8),
    Conv("splitk-c3-dil2", (2, 35, 33, 3), (3, 3), 5, dilation=2, padding="same"),
]


def conv_run(emu, case, dtype, precision="float32", rng=None, with_bias=True):
    g = case.geometry()
    x, w, dy = data(rng, case.x, dtype), data(rng, case.w, dtype), data(rng, case.y, dtype)
    b = data(rng, (case.o,), dtype)
    f, prec, geo = int(np.dtype(dtype) == np.float64), PRECISION[precision], geometry_arg(g)
    gx, gw, gdy, gb = Guarded.of(x), Guarded.of(w), Guarded.of(dy), Guarded.of(b)
    y = output(case.y, dtype)
    call(emu, "zg_emu_conv2d", f, prec, gx.ptr, gw.ptr, gb.ptr, y.ptr, case.o, geo, 1)
    dx = output(case.x, dtype)
    call(emu, "zg_emu_conv2d_backward_data", f, prec, gdy.ptr, gw.ptr, dx.ptr, case.o, geo)
    dw, db = output(case.w, dtype), output((case.o,), dtype)
    size = emu.zg_emu_conv2d_backward_weight_workspace(case.o, geo, int(with_bias))
    workspace = output((max(size, 1),), dtype)
    call(emu, "zg_emu_conv2d_backward_weight", f, prec, gx.ptr, gdy.ptr, dw.ptr, db.ptr if with_bias else None,
         workspace.ptr, case.o, geo)
    for name, arr in [("y", y), ("dx", dx), ("dw", dw), ("db", db), ("workspace", workspace)]:
        arr.check_guards(name)
    return (x, w, b, dy), (y.array, dx.array, dw.array, db.array), size


@pytest.mark.parametrize("case", EMULATED_CONV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_passes(emu, rng, case, dtype):
    (x, w, b, dy), (y, dx, dw, db), _ = conv_run(emu, case, dtype, rng=rng)
    kw = case.kw()
    assert_close(y, R.conv2d(*f64(x, w, b), activation="relu", **kw), red_forward(case) + 1, dtype=dtype, what="y")
    assert_close(dx, R.conv2d_backward_data(*f64(dy, w), case.x, **kw), red_data(case), dtype=dtype, what="dx")
    expected_dw, expected_db = R.conv2d_backward_weight(*f64(x, dy), case.w, with_bias=True, **kw)
    assert_close(dw, expected_dw, red_weight(case), dtype=dtype, what="dw")
    assert_close(db, expected_db, red_weight(case), dtype=dtype, what="db", scale=bias_scale(dy))


def test_conv2d_backward_weight_splits_the_long_sum(emu, rng):
    """The split-K and chunked-bias paths are taken (scratch memory asked for), and the weight
    gradient is the same with or without the bias."""
    case = Conv("splitk", (2, 47, 47, 4), (3, 3), 8)
    _, (_, _, dw, _), size = conv_run(emu, case, np.float32, rng=np.random.default_rng(1))
    _, (_, _, dw_alone, _), size_alone = conv_run(emu, case, np.float32, rng=np.random.default_rng(1),
                                                  with_bias=False)
    assert size > size_alone > 0
    assert_exact(dw_alone, dw)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("case", [c for c in EMULATED_CONV_CASES if c.id in (
    "3x3", "cin1-seed", "cout64-cin32", "stride2-same-odd", "dilation2", "c8-o16-same", "c4-o72-s2", "pad-asym2-s2",
    "splitk-p4050")], ids=lambda c: c.id)
def test_conv2d_tensor_cores(emu, rng, case, precision):
    (x, w, b, dy), (y, dx, dw, _), _ = conv_run(emu, case, np.float32, precision=precision, rng=rng)
    kw = case.kw()
    xr, wr, dyr = (round_inputs(a, precision) for a in (x, w, dy))
    assert_close(y, R.conv2d(*f64(xr, wr, b), activation="relu", **kw), red_forward(case) + 1, dtype=np.float32)
    assert_close(dx, R.conv2d_backward_data(*f64(dyr, wr), case.x, **kw), red_data(case), dtype=np.float32)
    assert_close(dw, R.conv2d_backward_weight(*f64(xr, dyr), case.w, **kw), red_weight(case), dtype=np.float32)


# ---- pooling ----

def pool_run(emu, x, dy, pool, stride, padding):
    g = V.window("t", x.shape, V.positive_pair("t", "p", pool),
                 V.positive_pair("t", "p", pool) if stride is None else stride, padding)
    f, geo = int(x.dtype == np.float64), geometry_arg(g)
    gx, gdy = Guarded.of(x), Guarded.of(dy)
    y, indices = output(dy.shape, x.dtype), output(dy.shape, np.int32, fill=-99)
    call(emu, "zg_emu_max_pool2d", f, gx.ptr, y.ptr, indices.ptr, geo)
    gi = Guarded.of(indices.array)
    results = {"max": y, "indices": indices}
    for name, args in [("max_bwd", (gdy.ptr, gx.ptr, None)), ("max_bwd_indices", (gdy.ptr, None, gi.ptr))]:
        dx = output(x.shape, x.dtype)
        call(emu, "zg_emu_max_pool2d_backward", f, *args, dx.ptr, geo)
        results[name] = dx
    avg = output(dy.shape, x.dtype)
    call(emu, "zg_emu_avg_pool2d", f, gx.ptr, avg.ptr, geo)
    avg_bwd = output(x.shape, x.dtype)
    call(emu, "zg_emu_avg_pool2d_backward", f, gdy.ptr, avg_bwd.ptr, geo)
    results.update(avg=avg, avg_bwd=avg_bwd)
    for name, arr in results.items():
        arr.check_guards(name)
    return {name: arr.array for name, arr in results.items()}


@pytest.mark.parametrize("pool,stride,padding", POOL_GEOMETRIES + TIE_GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling(emu, rng, pool, stride, padding, dtype):
    x = rng.integers(0, 4, (2, 7, 9, 3)).astype(dtype)    # ties everywhere
    x[0, 1, 1, 0] = x[1, 3, 2, 1] = np.nan
    x[1, :, :, 2] = -np.inf
    dy = data(rng, y_shape(x.shape, pool, stride, padding), dtype)
    kw = dict(stride=stride, padding=padding)
    got = pool_run(emu, x, dy, pool, stride, padding)
    y_ref, indices_ref = R.max_pool2d(x, pool, return_indices=True, **kw)
    assert_exact(got["max"], y_ref)
    np.testing.assert_array_equal(got["indices"], indices_ref)
    assert_exact(got["max_bwd"], R.max_pool2d_backward(dy, x, pool, **kw))
    assert_exact(got["max_bwd_indices"], got["max_bwd"])
    kh, kwid = V.positive_pair("t", "p", pool)
    finite = np.where(np.isfinite(x), x, 0).astype(dtype)
    assert_close(pool_run(emu, finite, dy, pool, stride, padding)["avg"], R.avg_pool2d(*f64(finite), pool, **kw),
                 kh * kwid, dtype=dtype)
    assert_exact(got["avg_bwd"], R.avg_pool2d_backward(dy, x, pool, **kw))
