"""The runtime API: info(), the thread count, backend selection, `python -m zengrad info`."""
from __future__ import annotations

import concurrent.futures as cf
import importlib.metadata
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import _backends
from conftest import CPU

KERNELS = ["gemm", "conv2d", "conv2d_backward_data", "conv2d_backward_weight",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]
AUTO_ORDER = ["cpp", "numba", "numpy"]


def _installed() -> bool:
    try:
        importlib.metadata.version("zengrad")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


# info() reads the version from the package metadata, which a source checkout on PYTHONPATH
# lacks; there the metadata lookup is stood in for by __version__ (the installed case checks both).
_NOT_INSTALLED_SHIM = ("import importlib.metadata as m, zengrad; "
                       "m.version = lambda name: zengrad.__version__; ")


@pytest.fixture
def metadata(monkeypatch):
    if not _installed():
        monkeypatch.setattr(importlib.metadata, "version", lambda name: zg.__version__)


def run_python(code: str, *args: str, env_backend: str | None = None, module: bool = False):
    """Run a fresh interpreter that imports the same zengrad as this one."""
    env = {k: v for k, v in os.environ.items() if k != "ZENGRAD_BACKEND"}
    if env_backend is not None:
        env["ZENGRAD_BACKEND"] = env_backend
    package_root = str(Path(zg.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", code, *args] if module else [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def restore_default_backend():
    before = _backends._default
    yield
    _backends._default = before


# ---- version and info() ----

def test_version_string():
    assert isinstance(zg.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", zg.__version__)


def test_info_keys_and_values(metadata):
    info = zg.info()
    for key in ("version", "backends_available", "backend", "simd", "simd_supported", "num_threads",
                "usable_cores", "backends_unavailable"):
        assert key in info, key
    assert info["version"] == zg.__version__ == importlib.metadata.version("zengrad")
    assert info["backends_available"] == zg.kernels.available_backends()
    assert info["backend"] == zg.kernels.get_backend()
    assert info["num_threads"] == zg.get_num_threads()
    assert isinstance(info["usable_cores"], int) and info["usable_cores"] >= 1
    assert set(info["backends_unavailable"]).isdisjoint(info["backends_available"])
    if CPU is None:
        assert info["simd"] is None and list(info["simd_supported"]) == []
    else:
        assert info["simd"] == CPU.simd_level()
        assert list(info["simd_supported"]) == list(CPU.supported_simd_levels())


def test_info_follows_settings(metadata, restore_num_threads):
    zg.set_num_threads(1)
    with zg.kernels.use_backend("numpy"):
        info = zg.info()
    assert info["num_threads"] == 1
    assert info["backend"] == "numpy"


# ---- thread count ----

@pytest.mark.parametrize("n", [1, 2, 3, 7, np.int64(2)])
def test_set_get_num_threads(restore_num_threads, n):
    zg.set_num_threads(n)
    assert zg.get_num_threads() == n
    assert type(zg.get_num_threads()) is int
    if CPU is not None:
        assert CPU.get_num_threads() == n


def test_default_num_threads_is_usable_cores():
    r = run_python("import os, zengrad as zg; print(zg.get_num_threads(), len(os.sched_getaffinity(0)))")
    assert r.returncode == 0, r.stderr
    threads, cores = r.stdout.split()
    assert threads == cores


# ---- backends ----

def test_available_backends():
    names = zg.kernels.available_backends()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert "numpy" in names
    assert set(names) <= {"cpp", "numba", "numpy", "cuda"}
    assert len(set(names)) == len(names)
    assert names == [n for n in ["cpp", "numba", "numpy", "cuda"] if n in names]


def test_cpp_backend_loads_when_compiled_module_imports():
    if CPU is None:
        pytest.skip("zengrad._cpu is not built")
    assert "cpp" in zg.kernels.available_backends(), _backends.unavailable_reasons().get("cpp")


def test_simd_levels():
    if CPU is None:
        pytest.skip("zengrad._cpu is not built")
    levels = list(CPU.supported_simd_levels())
    assert "portable" in levels and len(set(levels)) == len(levels)
    original = CPU.simd_level()
    assert original in levels
    try:
        for level in levels:
            CPU.set_simd_level(level)
            assert CPU.simd_level() == level
    finally:
        CPU.set_simd_level(original)
    assert CPU.simd_level() == original


def test_every_kernel_has_a_reference_with_the_same_signature():
    for name in KERNELS:
        assert name in zg.kernels.__all__
        api, ref = getattr(zg.kernels, name), getattr(zg.kernels.reference, name)
        assert inspect.signature(api) == inspect.signature(ref), name
        assert api.__doc__ and ref.__doc__
        for backend in zg.kernels.available_backends():
            assert callable(getattr(_backends._loaded[backend], name)), (backend, name)


def test_set_backend_is_process_wide(backend, restore_default_backend):
    zg.kernels.set_backend("numpy")
    # a use_backend scope (the fixture's) still wins in this thread ...
    assert zg.kernels.get_backend() == backend
    # ... but another thread sees the process-wide default
    with cf.ThreadPoolExecutor(1) as pool:
        assert pool.submit(zg.kernels.get_backend).result() == "numpy"


@pytest.mark.parametrize("spelling", ["numpy", "NumPy", "NUMPY"])
def test_set_backend_names_are_case_insensitive(restore_default_backend, spelling):
    zg.kernels.set_backend(spelling)
    assert zg.kernels.get_backend() == "numpy"


def test_use_backend_scopes_and_restores(restore_default_backend):
    zg.kernels.set_backend("numpy")
    for name in zg.kernels.available_backends():
        with zg.kernels.use_backend(name) as got:
            assert got == name
            assert zg.kernels.get_backend() == name
            with zg.kernels.use_backend("numpy"):
                assert zg.kernels.get_backend() == "numpy"
            assert zg.kernels.get_backend() == name
        assert zg.kernels.get_backend() == "numpy"


def test_use_backend_restores_after_an_exception(backend):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with zg.kernels.use_backend("numpy"):
            assert zg.kernels.get_backend() == "numpy"
            raise Boom
    assert zg.kernels.get_backend() == backend
    with pytest.raises(ValueError):                       # a failing kernel call inside the block
        with zg.kernels.use_backend("numpy"):
            zg.kernels.gemm(np.ones((2, 3)), np.ones((2, 3)))
    assert zg.kernels.get_backend() == backend


def test_use_backend_is_per_thread(restore_default_backend):
    zg.kernels.set_backend("numpy")
    others = [b for b in zg.kernels.available_backends() if b != "numpy"]
    with zg.kernels.use_backend(others[0] if others else "numpy") as mine:
        with cf.ThreadPoolExecutor(1) as pool:
            assert pool.submit(zg.kernels.get_backend).result() == "numpy"
        assert zg.kernels.get_backend() == mine


def test_kernels_dispatch_to_the_selected_backend(monkeypatch):
    """`use_backend("numpy")` routes the call to the numpy backend, with checked arguments."""
    calls = []
    namespace = _backends._loaded["numpy"]
    real = namespace.gemm

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(namespace, "gemm", spy)
    a = np.asfortranarray(np.ones((3, 4)))
    with zg.kernels.use_backend("numpy"):
        c = zg.kernels.gemm(a, np.ones((4, 2)), alpha=2)
    np.testing.assert_array_equal(c, 8.0)
    assert len(calls) == 1
    a2, b2, out, trans_a, trans_b, alpha, beta, bias, relu = calls[0]
    assert a2.flags.c_contiguous and out.shape == (3, 2) and out.dtype == np.float64
    assert (trans_a, trans_b, alpha, beta, bias, relu) == (False, False, 2.0, 0.0, None, False)
    assert type(alpha) is float


# ---- the environment variable and the command line (fresh interpreters) ----

def test_default_backend_is_the_first_available_in_auto_order():
    r = run_python("import warnings; warnings.simplefilter('ignore'); import zengrad as zg; "
                   "print(zg.kernels.get_backend())")
    assert r.returncode == 0, r.stderr
    expected = [b for b in AUTO_ORDER if b in zg.kernels.available_backends()][0]
    assert r.stdout.strip() == expected


@pytest.mark.parametrize("name", zg.kernels.available_backends() + ["NUMPY"])
def test_env_var_picks_the_backend(name):
    r = run_python("import zengrad as zg; import numpy as np; "
                   "c = zg.kernels.gemm(np.ones((2, 3)), np.ones((3, 2))); assert (c == 3).all(); "
                   "print(zg.kernels.get_backend())", env_backend=name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name.lower()


def test_env_var_naming_an_unknown_backend_fails_clearly():
    r = run_python("import zengrad as zg; zg.kernels.get_backend()", env_backend="nope")
    assert r.returncode != 0
    assert "ValueError" in r.stderr and "'nope'" in r.stderr and "'numpy'" in r.stderr


@pytest.mark.parametrize("name", zg.kernels.available_backends())
def test_cli_info(name):
    if _installed():
        r = run_python("zengrad", "info", module=True, env_backend=name)
    else:
        r = run_python(_NOT_INSTALLED_SHIM + "import runpy, sys; sys.argv = ['zengrad', 'info']; "
                       "runpy.run_module('zengrad', run_name='__main__', alter_sys=True)", env_backend=name)
    assert r.returncode == 0, r.stderr
    assert name in r.stdout
    assert zg.__version__ in r.stdout


# ---- the GPU backend and the matmul precision, as seen from a machine with or without a GPU ----

CUDA_HERE = "cuda" in zg.kernels.available_backends()


class _ForeignGpuArray:
    """Stands in for a GPU array on a machine where the cuda backend is unavailable: anything
    with __cuda_array_interface__ is taken for one."""
    __cuda_array_interface__ = {"shape": (3, 4), "typestr": "<f4", "data": (0, False), "version": 3}
    shape, dtype, ndim = (3, 4), np.dtype(np.float32), 2


def test_cuda_is_a_known_backend():
    assert "cuda" in _backends.KNOWN and _backends.DEVICES["cuda"] == "cuda"
    assert _backends.AUTO_ORDER == ("cpp", "numba", "numpy")   # never chosen automatically for NumPy arrays


@pytest.mark.skipif(CUDA_HERE, reason="the cuda backend is available here")
def test_cuda_unavailable_is_reported_with_a_reason():
    reasons = _backends.unavailable_reasons()
    assert "cuda" in reasons and reasons["cuda"].strip()
    assert "cuda" not in zg.kernels.available_backends()
    info = zg.info()
    assert "cuda" not in info["backends_available"]
    assert info["cuda"]["devices"] == 0 or not info["cuda"]["built"]


@pytest.mark.skipif(CUDA_HERE, reason="the cuda backend is available here")
@pytest.mark.parametrize("call", [
    lambda g: zg.kernels.gemm(g, g),
    lambda g: zg.kernels.conv2d(g, g),
    lambda g: zg.kernels.conv2d_backward_data(g, g, (1, 5, 5, 2)),
    lambda g: zg.kernels.conv2d_backward_weight(g, g, (3, 3, 2, 4)),
    lambda g: zg.kernels.max_pool2d(g),
    lambda g: zg.kernels.max_pool2d_backward(g, g),
    lambda g: zg.kernels.avg_pool2d(g),
    lambda g: zg.kernels.avg_pool2d_backward(g, g),
    lambda g: zg.kernels.relu(g),
    lambda g: zg.kernels.relu_backward(g, g),
    lambda g: zg.kernels.dense_backward(g, g, g),
    lambda g: zg.kernels.adam_update(g, g, g, g, alpha=0.1),
], ids=["gemm", "conv2d", "conv2d_backward_data", "conv2d_backward_weight", "max_pool2d", "max_pool2d_backward",
        "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward", "dense_backward", "adam_update"])
def test_gpu_arrays_without_a_gpu_backend_are_a_runtime_error(call):
    with pytest.raises(RuntimeError, match=r"\(\): got GPU \(CuPy\) arrays, but no GPU backend is available here "
                                           r"\(cuda: .+\)"):
        call(_ForeignGpuArray())


@pytest.mark.skipif(not CUDA_HERE, reason="needs the cuda backend")
def test_foreign_gpu_arrays_are_refused_by_name():
    with pytest.raises(TypeError, match=r"gemm\(\): argument 'a' must be a NumPy or CuPy array"):
        zg.kernels.gemm(_ForeignGpuArray(), np.ones((4, 5), np.float32))


def test_numpy_arrays_run_on_the_cpu_whatever_the_current_backend(monkeypatch):
    """The current backend applies to arrays of its device; NumPy arrays under a GPU backend run
    on the automatic CPU choice (here the GPU backend is faked: a namespace that must not be called)."""
    monkeypatch.setitem(_backends._loaded, "cuda", object())
    token = _backends._scoped.set("cuda")
    try:
        got = zg.kernels.gemm(np.ones((2, 3)), np.ones((3, 2)))
        assert zg.kernels.get_backend() == "cuda"
    finally:
        _backends._scoped.reset(token)
    np.testing.assert_array_equal(got, 3.0)


def test_matmul_precision_setting():
    assert zg.kernels.get_matmul_precision() == "float32"
    zg.kernels.set_matmul_precision("TF32")
    try:
        assert zg.kernels.get_matmul_precision() == "tf32"
        with zg.kernels.matmul_precision("bf16") as chosen:
            assert chosen == "bf16" == zg.kernels.get_matmul_precision()
            with cf.ThreadPoolExecutor(1) as pool:      # scoped to this thread
                assert pool.submit(zg.kernels.get_matmul_precision).result() == "tf32"
        assert zg.kernels.get_matmul_precision() == "tf32"
    finally:
        zg.kernels.set_matmul_precision("float32")
    assert zg.kernels.get_matmul_precision() == "float32"
    for name in ("set_matmul_precision", "get_matmul_precision", "matmul_precision"):
        assert name in zg.kernels.__all__ and name in (zg.kernels.__doc__ or "")


@pytest.mark.parametrize("value,exc", [("fp16", ValueError), ("", ValueError), (None, TypeError), (32, TypeError),
                                       (b"tf32", TypeError)])
def test_matmul_precision_refuses(value, exc):
    with pytest.raises(exc, match=r"set_matmul_precision\(\): argument 'precision' must be one of"):
        zg.kernels.set_matmul_precision(value)
    with pytest.raises(exc, match=r"matmul_precision\(\): argument 'precision' must be one of"):
        with zg.kernels.matmul_precision(value):
            pass
    assert zg.kernels.get_matmul_precision() == "float32"


def test_matmul_precision_is_ignored_on_the_cpu(backend, rng):
    """The CPU always computes in full precision: the setting leaves NumPy results bit-identical;
    only asking gemm itself for tf32/bf16 with NumPy arrays is an error."""
    a, b = rng.standard_normal((17, 33)).astype(np.float32), rng.standard_normal((33, 9)).astype(np.float32)
    x, w = rng.standard_normal((2, 6, 6, 3)).astype(np.float32), rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    plain = zg.kernels.gemm(a, b), zg.kernels.conv2d(x, w)
    with zg.kernels.matmul_precision("bf16"):
        low = zg.kernels.gemm(a, b), zg.kernels.conv2d(x, w)
        np.testing.assert_array_equal(zg.kernels.gemm(a, b, precision="float32"), plain[0])
    for p, q in zip(plain, low):
        np.testing.assert_array_equal(p, q)
    with pytest.raises(ValueError, match=r"gemm\(\): argument 'precision' must be 'float32' or None for NumPy"):
        zg.kernels.gemm(a, b, precision="tf32")


def test_importing_and_cpu_kernels_do_not_import_cupy():
    r = run_python("import sys, numpy as np, zengrad as zg; zg.kernels.gemm(np.ones((2, 2)), np.ones((2, 2))); "
                   "zg.kernels.max_pool2d(np.ones((1, 2, 2, 1))); print('cupy' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_cuda_module_is_built_where_nvcc_is(metadata):
    """CMake builds zengrad._cuda whenever it finds a CUDA compiler: with nvcc on PATH (as in CI)
    the module must exist, import without a GPU, and report the devices it sees (0 here)."""
    try:
        cuda = importlib.import_module("zengrad._cuda")
    except ImportError:
        if shutil.which("nvcc") is None and not os.environ.get("CUDACXX"):
            pytest.skip("no CUDA compiler here: zengrad._cuda is not built")
        raise
    archs = cuda.compiled_architectures()
    assert archs and all(isinstance(a, int) and a >= 50 for a in archs)
    count, why = cuda.device_status()
    assert isinstance(count, int) and count >= 0 and cuda.device_count() == count
    assert (why is None) == (count > 0)
    assert cuda.runtime_version() >= 11000
    info = zg.info()["cuda"]
    assert info["built"] and info["architectures"] == archs and info["devices"] == count


def test_cuda_module_without_a_device_raises_instead_of_crashing():
    cuda = pytest.importorskip("zengrad._cuda")
    if cuda.device_count() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="zengrad._cuda"):
        cuda.gemm("float32", 0, False, False, 2, 2, 2, 1.0, 256, 2, 256, 2, 0.0, 256, 2, 0, 0)
    with pytest.raises(ValueError):                     # argument checks come first
        cuda.gemm("float16", 0, False, False, 2, 2, 2, 1.0, 256, 2, 256, 2, 0.0, 256, 2, 0, 0)
