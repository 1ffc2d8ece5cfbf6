"""The numba backend beyond the kernel tables: the fallback when the compiled module is
missing, its thread count, and one compiled signature per kernel and dtype (compile time)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import reference as R
from tolerances import assert_close

needs_numba = pytest.mark.skipif("numba" not in zg.kernels.available_backends(),
                                 reason="the numba backend is not available here")


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, in tmp_path, without backend or thread settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("ZENGRAD_BACKEND", "NUMBA_NUM_THREADS")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


WITHOUT_CPU = """
    import sys
    import warnings

    class NoCompiledModule:
        # Imports of zengrad._cpu fail, as where the extension was never built.
        def find_spec(self, name, path=None, target=None):
            if name == "zengrad._cpu":
                raise ImportError("zengrad._cpu blocked by the test")
            return None

    sys.meta_path.insert(0, NoCompiledModule())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np
        import zengrad as zg

        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
        w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
        b = rng.standard_normal(5).astype(np.float32)
        a = rng.standard_normal((31, 40)).astype(np.float32)
        c = rng.standard_normal((17, 40)).astype(np.float32)
        y = zg.kernels.conv2d(x, w, b, stride=2, padding="same")
        g = zg.kernels.gemm(a, c, trans_b=True)
        backend = zg.kernels.get_backend()

        # and a small CNN trains on it: the loss falls
        zg.manual_seed(0)
        (images, labels), _ = zg.datasets.fashion_mnist.load_embedded()
        images = images[:256].reshape(-1, 28, 28, 1) / np.float32(255)
        model = zg.Sequential([
            zg.layers.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
            zg.layers.MaxPooling2D(),
            zg.layers.Flatten(),
            zg.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        losses = model.fit(images, labels[:256], epochs=4, batch_size=32, verbose=0).history["loss"]
        available = zg.kernels.available_backends()
        reasons = zg.kernels._backends.unavailable_reasons()
    np.savez("result.npz", x=x, w=w, b=b, a=a, c=c, y=y, g=g)
    runtime = [str(m.message) for m in caught if issubclass(m.category, RuntimeWarning)]
    print(repr((backend, available, "zengrad._cpu" in sys.modules, sorted(reasons), runtime, losses)))
"""


@needs_numba
def test_without_the_compiled_module_numba_takes_over(tmp_path):
    """zengrad._cpu fails to import: zengrad still imports, says once (a RuntimeWarning) why
    cpp is out, runs on numba, gets conv2d and GEMM right, and trains a small CNN."""
    done = _run(WITHOUT_CPU, tmp_path)
    assert done.returncode == 0, done.stderr
    backend, available, cpu_loaded, unavailable, warned, losses = eval(done.stdout.strip().splitlines()[-1])
    assert losses[-1] < 0.8 * losses[0], losses
    assert backend == "numba"
    cpu_backends = ("cpp", "numba", "numpy")   # the GPU backend may or may not load beside them
    assert [n for n in available if n in cpu_backends] == ["numba", "numpy"]
    assert not cpu_loaded
    assert [n for n in unavailable if n in cpu_backends] == ["cpp"]
    assert len(warned) == 1, warned
    assert "'cpp' backend is unavailable" in warned[0] and "blocked by the test" in warned[0]
    assert "'numba'" in warned[0]
    r = np.load(tmp_path / "result.npz")
    f64 = lambda *arrays: [v.astype(np.float64) for v in arrays]            # noqa: E731
    assert_close(r["y"], R.conv2d(*f64(r["x"], r["w"], r["b"]), stride=2, padding="same"), 28,
                 dtype=np.float32, what="conv2d")
    assert_close(r["g"], R.gemm(*f64(r["a"], r["c"]), trans_b=True), 41, dtype=np.float32, what="gemm")


def test_import_does_not_load_numba(tmp_path):
    """Importing numba costs ~0.2 s: `import zengrad` leaves it for the numba backend to load."""
    done = _run("import sys, zengrad; print('numba' in sys.modules)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@needs_numba
def test_thread_count_reaches_numba_in_every_thread(restore_num_threads):
    import numba

    most = numba.config.NUMBA_NUM_THREADS
    a = np.ones((40, 30))
    for n in (1, most, most + 1):
        zg.set_num_threads(n)
        assert numba.get_num_threads() == min(n, most)
    # Numba keeps its count per thread: a kernel called from another thread runs on zengrad's.
    zg.set_num_threads(1)
    seen = []

    def worker():
        with zg.kernels.use_backend("numba"):
            zg.kernels.gemm(a, a.T)
        seen.append(numba.get_num_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1]


@needs_numba
def test_one_compiled_signature_per_kernel_and_dtype(rng):
    """Shapes, strides, read-only inputs and optional arguments must not multiply the
    compilations (each costs seconds on a cold cache)."""
    from numba.core.registry import CPUDispatcher

    from zengrad.kernels import numba_cpu

    def calls(dtype, writeable):
        def d(*shape):
            v = rng.standard_normal(shape).astype(dtype)
            v.flags.writeable = writeable
            return v
        x, w, dy = d(2, 7, 7, 3), d(3, 3, 3, 4), d(2, 5, 5, 4)
        k = zg.kernels
        k.gemm(d(5, 6), d(7, 6), trans_b=True)
        k.gemm(d(5, 6), d(6, 40))                    # B read in place (one row tile)
        k.gemm(d(400, 9), d(9, 20))                  # B packed first (several row tiles)
        k.gemm(d(6, 5), d(6, 7), np.zeros((5, 7), dtype), trans_a=True, alpha=2.0, beta=0.5)
        k.conv2d(x, w)
        k.conv2d(x, w, d(4), padding="same", activation="relu")
        k.conv2d_backward_data(dy, w, x.shape)
        k.conv2d_backward_weight(x, dy, w.shape)
        k.conv2d_backward_weight(d(8, 20, 20, 3), d(8, 18, 18, 4), w.shape, with_bias=True)   # chunked
        k.max_pool2d(x, 2)
        y, indices = k.max_pool2d(x, 2, return_indices=True)
        k.max_pool2d_backward(d(2, 3, 3, 3), x, 2)
        indices.flags.writeable = writeable
        k.max_pool2d_backward(d(2, 3, 3, 3), x, 2, indices=indices)
        k.avg_pool2d(x, 3, stride=1, padding="same")
        k.avg_pool2d_backward(d(2, 3, 3, 3), x, 2)
        k.relu(x)
        k.relu_backward(dy, d(2, 5, 5, 4))

    with zg.kernels.use_backend("numba"):
        for dtype in (np.float32, np.float64):
            for writeable in (True, False):
                calls(dtype, writeable)
    kernels = {name: f for name, f in vars(numba_cpu).items() if isinstance(f, CPUDispatcher)}
    assert {"gemm_driver", "pack_b", "sum_slabs", "max_pool", "avg_pool_backward", "relu"} <= set(kernels)
    for name, f in kernels.items():
        assert len(f.signatures) <= 2, (name, f.signatures)
