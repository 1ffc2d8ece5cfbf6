"""Freed memory kept in the heap (zengrad._heap): training steps reuse their arrays' memory."""
import os
import platform
import subprocess
import sys

import pytest

import zengrad as zg

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
OWN_MALLOC_SETTINGS = zg._heap.configured_by_environment() or os.environ.get("ZENGRAD_KEEP_HEAP") == "0"


def _info_in_subprocess(**env) -> str:
    code = "import zengrad; print(zengrad.info()['keep_heap'])"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("ZENGRAD_KEEP_HEAP", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True, timeout=120)
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_on_by_default():
    assert _info_in_subprocess() == "on"


@pytest.mark.parametrize("env, why", [({"ZENGRAD_KEEP_HEAP": "0"}, "ZENGRAD_KEEP_HEAP=0"),
                                      ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, "configured by the environment"),
                                      ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"},
                                       "configured by the environment")])
def test_left_alone_when_asked(env, why):
    state = _info_in_subprocess(**env)
    assert state.startswith("off") and (why in state or not GLIBC)


@pytest.mark.skipif(not GLIBC or OWN_MALLOC_SETTINGS, reason="glibc's malloc, not configured by the environment")
def test_training_steps_do_not_page_fault():
    """After a warm-up, a training step's arrays come from the heap: no minor page faults (1,320
    a step without the thresholds, on the seed CNN)."""
    import resource

    from zengrad.bench_training import _model_and_batch

    model, x, y = _model_and_batch()
    for _ in range(5):
        model.train_on_batch(x, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    steps = 20
    for _ in range(steps):
        model.train_on_batch(x, y)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps
    assert faults < 50, f"{faults:.0f} page faults a step"


def test_info_reports_it():
    state = zg.info()["keep_heap"]
    assert state == zg._heap.keep_freed_memory()
    if GLIBC and not OWN_MALLOC_SETTINGS:
        assert state == "on"
