"""Threads: results bit-identical whatever zg.set_num_threads says; kernels called from several
Python threads at once; inputs never modified."""
from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import reference as R
from tolerances import assert_close, assert_exact

# Backends whose kernels run on zengrad's thread pool. The design promises the same bits for
# every thread count on the CPU; a backend listed here that is not available is skipped.
THREADED = ("cpp", "numba")

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


def _problems(rng, dtype):
    """name -> (call, oracle, reduction): each kernel on a shape big enough to use several threads."""
    d = lambda *s: rng.standard_normal(s).astype(dtype)           # noqa: E731
    a, b, c = d(300, 200), d(200, 500), d(300, 500)
    at, bt = d(200, 300), d(500, 200)
    x, w, bias = d(8, 20, 20, 16), d(3, 3, 16, 32), d(32)
    dy_valid, dy_same = d(8, 18, 18, 32), d(8, 10, 10, 32)
    xp = d(8, 26, 26, 32)
    dyp, dyp3 = d(8, 13, 13, 32), d(8, 26, 26, 32)
    same2 = dict(padding="same", stride=2)
    return {
        "gemm": (lambda k: k.gemm(a, b), 200),
        "gemm-TT-out-beta": (lambda k: k.gemm(at, bt, c.copy(), trans_a=True, trans_b=True, alpha=0.5, beta=-1.0),
                             201),
        "conv2d": (lambda k: k.conv2d(x, w, bias), 145),
        "conv2d-same-s2": (lambda k: k.conv2d(x, w, **same2), 144),
        "conv2d_backward_data": (lambda k: k.conv2d_backward_data(dy_valid, w, x.shape), 288),
        "conv2d_backward_data-same-s2": (lambda k: k.conv2d_backward_data(dy_same, w, x.shape, **same2), 288),
        "conv2d_backward_weight": (lambda k: k.conv2d_backward_weight(x, dy_valid, w.shape, with_bias=True),
                                   8 * 18 * 18),
        "conv2d_backward_weight-same-s2": (lambda k: k.conv2d_backward_weight(x, dy_same, w.shape, **same2),
                                           8 * 10 * 10),
        "max_pool2d": (lambda k: k.max_pool2d(xp, 2), 4),
        "max_pool2d_backward": (lambda k: k.max_pool2d_backward(dyp, xp, 2), 4),
        "max_pool2d-3s1-same": (lambda k: k.max_pool2d(xp, 3, stride=1, padding="same"), 9),
        "max_pool2d_backward-3s1-same": (lambda k: k.max_pool2d_backward(dyp3, xp, 3, stride=1, padding="same"), 9),
        "avg_pool2d": (lambda k: k.avg_pool2d(xp, 2), 4),
        "avg_pool2d_backward": (lambda k: k.avg_pool2d_backward(dyp, xp, 2), 4),
        "avg_pool2d_backward-3s1-same": (lambda k: k.avg_pool2d_backward(dyp3, xp, 3, stride=1, padding="same"),
                                         9),
        "dense_backward": (lambda k: k.dense_backward(c, a, b, relu_output=np.maximum(c, 0), with_bias=True), 500),
    }


PROBLEM_NAMES = list(_problems(np.random.default_rng(0), np.float32))


def _flat(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.all_simd
@pytest.mark.backends(*THREADED)
@pytest.mark.parametrize("name", PROBLEM_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_for_any_thread_count(backend, rng, restore_num_threads, name, dtype):
    call, reduction = _problems(rng, dtype)[name]
    results = {}
    for n in (1, 2, 3, 4):
        zg.set_num_threads(n)
        results[n] = _flat(call(zg.kernels))
    for n in (2, 3, 4):
        for got, one in zip(results[n], results[1]):
            assert_exact(got, one, what=f"{name} with {n} threads vs 1")
    # and the single-threaded result is right
    for got, expected in zip(results[1], _flat(call(R))):
        assert_close(got, expected, reduction, dtype=dtype, factor=2)


def _concurrent_jobs(rng):
    """(name, call) pairs of different kernels and dtypes for the Python threads to share."""
    jobs = []
    for dtype in (np.float32, np.float64):
        problems = _problems(rng, dtype)
        for name in ("gemm", "gemm-TT-out-beta", "conv2d", "conv2d_backward_data", "conv2d_backward_weight",
                     "max_pool2d", "max_pool2d_backward", "avg_pool2d_backward", "conv2d-same-s2"):
            jobs.append((f"{name}-{np.dtype(dtype).name}", problems[name][0]))
    return jobs


def test_concurrent_calls_from_python_threads(backend, rng):
    """4 Python threads run different kernels at once on this backend; each result must be the
    one the same call gives alone (bit for bit on the threaded backends)."""
    jobs = _concurrent_jobs(rng)
    alone = {name: _flat(call(zg.kernels)) for name, call in jobs}

    def worker(offset):
        out = []
        with zg.kernels.use_backend(backend):     # the backend choice is per thread
            assert zg.kernels.get_backend() == backend
            for i in range(len(jobs)):
                name, call = jobs[(i + offset) % len(jobs)]
                out.append((name, _flat(call(zg.kernels))))
        return out

    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(worker, [0, 2, 5, 7, 0, 3, 6, 1]))
    for run in runs:
        for name, result in run:
            for got, expected in zip(result, alone[name]):
                if backend in THREADED:
                    assert_exact(got, expected, what=name)
                else:
                    assert_close(got, expected, 1, what=name)


def test_concurrent_calls_with_thread_count_changes(backend, rng, restore_num_threads):
    """Changing the thread count while other Python threads run kernels must neither crash
    nor change any result."""
    jobs = _concurrent_jobs(rng)[:5]
    alone = {name: _flat(call(zg.kernels)) for name, call in jobs}

    def worker(offset):
        with zg.kernels.use_backend(backend):
            return [(name, _flat(call(zg.kernels))) for name, call in jobs[offset:] + jobs[:offset]]

    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(worker, i) for i in range(4)]
        for n in (1, 3, 2, 4, 1, 2):
            zg.set_num_threads(n)
        runs = [f.result() for f in futures]
    for run in runs:
        for name, result in run:
            for got, expected in zip(result, alone[name]):
                if backend in THREADED:
                    assert_exact(got, expected, what=name)
                else:
                    assert_close(got, expected, 1, what=name)


# ---- inputs are never modified ----

def _inputs(rng, dtype):
    d = lambda *s: rng.standard_normal(s).astype(dtype)           # noqa: E731
    strided = d(4, 14, 9, 6)[:, ::2, :, ::2]                      # (4, 7, 9, 3), not contiguous
    return {
        "gemm": lambda: ((d(31, 17), d(17, 33)), {}),
        "gemm-T-strided": lambda: ((d(40, 31)[::2], np.asfortranarray(d(33, 20))), dict(trans_a=True, trans_b=True)),
        "conv2d": lambda: ((d(2, 9, 9, 3), d(3, 3, 3, 5), d(5)), dict(padding="same")),
        "conv2d-strided": lambda: ((strided, d(3, 3, 3, 5)), dict(stride=2)),
        "conv2d_backward_data": lambda: ((d(2, 9, 9, 5), d(3, 3, 3, 5), (2, 9, 9, 3)), dict(padding="same")),
        "conv2d_backward_weight": lambda: ((d(2, 9, 9, 3), d(2, 7, 7, 5), (3, 3, 3, 5)), dict(with_bias=True)),
        "conv2d_backward_weight-strided": lambda: ((strided, d(4, 3, 4, 5), (3, 3, 3, 5)), dict(stride=2)),
        "max_pool2d": lambda: ((strided, 3), dict(stride=1, padding="same")),
        "max_pool2d_backward": lambda: ((d(4, 7, 9, 3), strided, 3), dict(stride=1, padding="same")),
        "avg_pool2d": lambda: ((strided, 2), {}),
        "avg_pool2d_backward": lambda: ((d(4, 3, 4, 3), strided, 2), {}),
        "dense_backward": lambda: ((d(31, 33)[:, ::-1], d(31, 17), np.asfortranarray(d(17, 33))), dict(with_bias=True)),
    }


INPUT_CASES = list(_inputs(np.random.default_rng(0), np.float32))


@pytest.mark.parametrize("case", INPUT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_never_modified(backend, rng, case, dtype):
    args, kw = _inputs(rng, dtype)[case]()
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    before = [(a.copy(), a.strides, a.flags.writeable) for a in arrays]
    for a in arrays:          # a kernel that writes into an input fails loudly, not silently
        a.setflags(write=False)
    getattr(zg.kernels, case.split("-")[0])(*args, **kw)
    for a in arrays:
        a.setflags(write=True)
    # ... and also with writeable inputs, whose bits must stay the same
    getattr(zg.kernels, case.split("-")[0])(*args, **kw)
    for a, (copy, strides, _) in zip(arrays, before):
        assert_exact(a, copy)
        assert a.strides == strides


@pytest.fixture
def restore_flush_denormal():
    yield
    zg.set_flush_denormal(False)


@pytest.mark.skipif("cpp" not in zg.kernels.available_backends(), reason="the cpp backend is not built here")
def test_flush_denormal_applies_to_kernels_on_every_thread_only(rng, restore_num_threads, restore_flush_denormal):
    """With flushing on, denormal inputs read as 0 in every thread of a kernel (the product of
    two halves of the output, computed by the caller and by a worker); NumPy on the calling
    thread keeps IEEE denormals; off again, the kernels are IEEE again."""
    tiny = np.finfo(np.float32).tiny
    a = np.full((256, 64), tiny / 4, np.float32)  # denormal
    b = np.ones((64, 256), np.float32)
    zg.set_num_threads(2)
    with zg.kernels.use_backend("cpp"):
        assert zg.get_flush_denormal() is False
        assert np.all(zg.kernels.gemm(a, b) > 0)
        with pytest.raises(TypeError, match="argument 'enabled'"):
            zg.set_flush_denormal(1)
        zg.set_flush_denormal(True)
        assert zg.get_flush_denormal() is True
        assert np.all(zg.kernels.gemm(a, b) == 0)
        assert np.float32(tiny / 4) * np.float32(1.5) > 0  # NumPy, on this thread: unaffected
        zg.set_flush_denormal(False)
        assert np.all(zg.kernels.gemm(a, b) > 0)
