"""Fixtures shared by the whole suite.

`backend`: every test that takes it runs once per available CPU backend (inside
`zg.kernels.use_backend(name)`), so a new backend adds test cases, not test code. (Those tests
pass NumPy arrays, which never run on the GPU backend; tests/test_cuda_kernels.py holds the
GPU's.)
  - `@pytest.mark.cuda` (on a test or module): needs a usable "cuda" backend (a GPU, its driver,
    CuPy and zengrad._cuda); skipped, with the reason, everywhere else.
  - `@pytest.mark.all_simd` (on a test or module): on the "cpp" backend, one case per SIMD
    level of `zengrad._cpu.supported_simd_levels()`, the level switched for the test and
    restored afterwards.
  - `@pytest.mark.backends("cpp", ...)`: only those backends (no case, i.e. a clean skip,
    where none of them is available).
Environment:
  ZENGRAD_TEST_BACKENDS=cpp,numpy   test only these (and fail if one is missing)
  HYPOTHESIS_PROFILE=ci|thorough    see the profiles below
"""
from __future__ import annotations

import os

# The oracles call NumPy's BLAS on small matrices, where OpenBLAS's own threads only spin
# against the kernels' threads on a busy machine (70 ms instead of 0.1 ms on 2 cores). Must be
# set before NumPy loads; a value the caller set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import importlib  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import zengrad as zg  # noqa: E402

try:
    CPU = importlib.import_module("zengrad._cpu")
except ImportError:
    CPU = None

# ---- hypothesis: modest by default, the whole suite must stay a few minutes on 2 slow cores ----
_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("default", max_examples=25, **_common)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_common)
settings.register_profile("thorough", max_examples=300, **_common)
# CI runs the same examples every time (a submission must not pass or fail by chance).
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


def _backends() -> list[str]:
    """The CPU backends the `backend` fixture runs on (a "cuda" in ZENGRAD_TEST_BACKENDS only
    demands that the GPU backend be available: its tests are the `cuda`-marked ones)."""
    available = zg.kernels.available_backends()
    cpu = zg.kernels._backends.CPU_BACKENDS
    wanted = os.environ.get("ZENGRAD_TEST_BACKENDS")
    if not wanted:
        return [n for n in available if n in cpu]
    names = [n.strip().lower() for n in wanted.split(",") if n.strip()]
    missing = [n for n in names if n not in available]
    if missing:
        raise pytest.UsageError(f"ZENGRAD_TEST_BACKENDS asks for {missing}, not available "
                                f"(available: {available}; reasons: "
                                f"{zg.kernels._backends.unavailable_reasons()})")
    return [n for n in names if n in cpu]


BACKENDS = _backends()
with warnings.catch_warnings():  # settle the lazily chosen default now (it warns without "cpp")
    warnings.simplefilter("ignore")
    zg.kernels.get_backend()
SIMD_LEVELS = list(CPU.supported_simd_levels()) if CPU is not None and "cpp" in BACKENDS else []
CUDA_AVAILABLE = "cuda" in zg.kernels.available_backends()
CUDA_SKIP_REASON = None if CUDA_AVAILABLE else (
    f"no usable CUDA backend here ({zg.kernels._backends.unavailable_reasons().get('cuda')})")


def pytest_configure(config):
    config.addinivalue_line("markers", "all_simd: on the cpp backend, run once per supported SIMD level")
    config.addinivalue_line("markers", "backends(*names): run only on these backends (where available)")
    config.addinivalue_line("markers", "cuda: needs the 'cuda' backend (a GPU); skipped where there is none")


def pytest_collection_modifyitems(config, items):
    if CUDA_AVAILABLE:
        return
    skip = pytest.mark.skip(reason=CUDA_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def pytest_report_header(config):
    return (f"zengrad backends under test: {BACKENDS}; SIMD levels: {SIMD_LEVELS or 'n/a'}; "
            f"cuda: {'available' if CUDA_AVAILABLE else 'skipped'}; "
            f"unavailable: {zg.kernels._backends.unavailable_reasons()}")


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("backends")
    all_simd = metafunc.definition.get_closest_marker("all_simd") is not None
    params = []
    for name in BACKENDS:
        if only is not None and name not in only.args:
            continue
        if all_simd and name == "cpp" and SIMD_LEVELS:
            params += [pytest.param((name, level), id=f"cpp-{level}") for level in SIMD_LEVELS]
        else:
            params.append(pytest.param((name, None), id=name))
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request):
    """The backend name; kernels called in the test run on it (and at its SIMD level)."""
    name, level = request.param
    with zg.kernels.use_backend(name):
        if level is None:
            yield name
            return
        previous = CPU.simd_level()
        CPU.set_simd_level(level)
        try:
            assert CPU.simd_level() == level
            yield name
        finally:
            CPU.set_simd_level(previous)


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's id: different data per test, the same every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def restore_num_threads():
    before = zg.get_num_threads()
    yield before
    zg.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_leaked_global_state():
    """Tests must leave the thread count, default backend, SIMD level and GPU matmul precision
    as they found them."""
    threads = zg.get_num_threads()
    default = zg.kernels._backends._default
    level = CPU.simd_level() if CPU is not None else None
    precision = zg.kernels._backends._precision_default
    yield
    leaked = []
    if zg.kernels._backends._precision_default != precision:
        leaked.append(f"matmul precision {precision} -> {zg.kernels._backends._precision_default}")
        zg.kernels._backends._precision_default = precision
    if zg.get_num_threads() != threads:
        leaked.append(f"num_threads {threads} -> {zg.get_num_threads()}")
        zg.set_num_threads(threads)
    if zg.kernels._backends._default != default:
        leaked.append(f"default backend {default} -> {zg.kernels._backends._default}")
        zg.kernels._backends._default = default
    if CPU is not None and CPU.simd_level() != level:
        leaked.append(f"SIMD level {level} -> {CPU.simd_level()}")
        CPU.set_simd_level(level)
    assert not leaked, "test leaked global state: " + "; ".join(leaked)
