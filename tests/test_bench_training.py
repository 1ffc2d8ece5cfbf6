"""The training benchmark's diagnostics (python -m zengrad bench): quick runs, sane figures."""
import pytest

import zengrad as zg
from zengrad import bench_training


def test_layer_split_times_a_fused_pair_as_one_part():
    parts = [name for name, forward, backward in bench_training.layer_split(repeats=1)]
    assert [p.endswith("(fused)") for p in parts] == [True, True] + [False] * (len(parts) - 2)
    assert parts[-2:] == ["loss (cross_entropy)", "optimizer (Adam)"]


def test_outside_kernels_times_a_step_and_puts_the_kernels_back():
    pytest.importorskip("zengrad._cpu", reason="the compiled backend is not built here")
    from zengrad.kernels import _cpp_backend as cpp

    before = cpp._cpu, cpp.BACKEND.fast
    step, outside = bench_training.outside_kernels(repeats=3)
    assert 0 < outside < step
    assert (cpp._cpu, cpp.BACKEND.fast) == before
    assert zg.kernels.get_backend() in zg.kernels.available_backends()
