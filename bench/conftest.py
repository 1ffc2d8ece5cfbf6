"""pytest-benchmark setup for bench/: every case of zengrad.bench on every contender.

Files here are named bench_*.py so that `pytest tests` (and a bare `pytest`) never collect
them; the hook below collects them when bench/ is named on the command line.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from zengrad import bench as B


HERE = Path(__file__).resolve().parent


def _bench_named(config) -> bool:
    """Whether bench/ or something in it was named on the command line (`pytest .` is not enough)."""
    paths = [(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args]
    return any(p == HERE or HERE in p.parents for p in paths)


def pytest_collect_file(file_path, parent):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_") and _bench_named(parent.config)
            and not parent.session.isinitpath(file_path)):   # a file named on the command line is collected anyway
        return pytest.Module.from_parent(parent, path=file_path)


def pytest_addoption(parser):
    parser.addoption("--bench-dtype", choices=("float32", "float64"), default="float32",
                     help="dtype of the benchmark inputs (default float32)")


if importlib.util.find_spec("pytest_benchmark") is None:    # without the plugin each case still runs once
    class _RunOnce:
        group = None

        def __init__(self):
            self.extra_info = {}

        def __call__(self, fn, *args, **kwargs):
            return fn(*args, **kwargs)

    @pytest.fixture
    def benchmark():
        return _RunOnce()


@pytest.fixture
def run_case(benchmark, request):
    """run_case(case, contender): time it under pytest-benchmark, then check it against the reference."""
    dtype = np.dtype(request.config.getoption("--bench-dtype"))
    timing = not request.config.getoption("benchmark_disable", True)

    def run(case: B.Case, contender: str):
        args = case.make_args(dtype)
        runner = B.make_runner(case, contender, args)
        benchmark.group = case.name
        benchmark.extra_info.update(kernel=case.kernel, shape=case.shape, flops=case.flops,
                                    bytes=case.elements * dtype.itemsize, dtype=dtype.name)
        out = runner.run_once()    # checked before it is timed; also a warm-up
        if contender != B.REFERENCE:
            error = B.relative_error(out, B.make_runner(case, B.REFERENCE, args).run_once())
            assert error <= B.error_bound(dtype), f"{contender} differs from the reference by {error:.2e} (relative)"
        if timing:
            time.sleep(B.PAUSE)    # let the previous run's BLAS threads stop spinning
        with runner.scope():
            benchmark(runner.call_and_sync)
    return run
