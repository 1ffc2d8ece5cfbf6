"""Kernel benchmarks: every backend timed beside the NumPy reference, from one table of cases.

`CASES` holds the shapes of design.md's "Benchmark shapes" table that concern kernels. Each
case is timed on every contender: the available backends (`zengrad.kernels.<kernel>` under
`use_backend`), the NumPy oracle `zengrad.kernels.reference.<kernel>` (the baseline), and for
GEMM plain `numpy.matmul`. Both `python -m zengrad bench` and the pytest-benchmark suites in
bench/ are driven from here.

`--device cuda` runs the same cases (plus `GPU_CASES`: 4096^3 GEMM in FP32, TF32 and BF16) on
the GPU backend, with cuBLAS through CuPy as the GEMM contender at the same precision (see
bench_cuda.py) and CUDA events for the clock; the NumPy reference then only checks the
outputs (it runs on the CPU: timing it beside a GPU says nothing). Same table, same code.

Measurement on a small shared machine: contenders run in interleaved rounds (A, B, C, A, B,
C, ...), so each ratio is measured side by side; before each sample the bench sleeps
`Settings.pause`, because OpenBLAS threads keep spinning ~0.1 s after a call and would steal
the cores of whoever runs next. Each sample times enough back-to-back calls to last
~min_time/rounds, and the median sample is reported.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import zengrad as zg
from zengrad import _device, bench_peers, kernels

REFERENCE = "reference"       # zengrad.kernels.reference.<kernel>: the baseline
MATMUL = "numpy-matmul"       # op(a) @ op(b), for GEMM cases only
PAUSE = 0.2                   # seconds to let NumPy's BLAS threads stop spinning


# ---- the cases ----

@dataclass(frozen=True)
class Case:
    """One benchmark: `kernel(*random arrays of array_shapes, *extra, **kwargs)`.

    Work is `flops` for compute-bound kernels (rate in GFLOP/s) or `elements` read plus
    written for memory-bound ones (rate in GB/s).
    """
    name: str                          # "family/variant", e.g. "conv1/bwd-data"
    kernel: str                        # a function of zengrad.kernels
    shape: str                         # the shapes, as a reader wants to see them
    array_shapes: tuple                # the random inputs, in argument order
    extra: tuple = ()                  # further positional arguments (x_shape, w_shape)
    kwargs: dict = field(default_factory=dict)
    flops: int = 0
    elements: int = 0
    big: bool = False                  # left out by --quick
    precision: str | None = None       # GEMM on the GPU: None (FP32), "tf32" or "bf16"

    def __str__(self) -> str:     # also the pytest id
        return self.name

    @property
    def family(self) -> str:
        return self.name.split("/")[0]

    def make_args(self, dtype=np.float32, seed: int = 0) -> tuple:
        """The positional arguments: standard-normal arrays from an RNG seeded by the case name."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()) + seed)
        arrays = tuple(rng.standard_normal(s, dtype=np.dtype(dtype)) for s in self.array_shapes)
        return arrays + self.extra

    def rate(self, seconds: float, itemsize: int) -> tuple[float, str]:
        """Throughput of one call taking `seconds`: (value, unit)."""
        if self.flops:
            return self.flops / seconds / 1e9, "GFLOP/s"
        return self.elements * itemsize / seconds / 1e9, "GB/s"


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _gemm(name, m, n, k, *, trans_a=False, trans_b=False, big=False, precision=None) -> Case:
    """op(a) (m, k) @ op(b) (k, n); a stored (k, m) when trans_a, b stored (n, k) when trans_b."""
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    shape = f"{_dims(a_shape)}{'^T' * trans_a} @ {_dims(b_shape)}{'^T' * trans_b}"
    if precision:
        shape += f", {precision}"
    return Case(name, "gemm", shape, (a_shape, b_shape), kwargs=dict(trans_a=trans_a, trans_b=trans_b),
                flops=2 * m * n * k, big=big, precision=precision)


def _conv(family, x_shape, w_shape, padding, *, big=False) -> list[Case]:
    """Forward, backward-data and backward-weight of a stride-1 convolution, NHWC x, HWIO w."""
    n, h, w, c = x_shape
    kh, kw, _, o = w_shape
    ho, wo = (h, w) if padding == "same" else (h - kh + 1, w - kw + 1)
    y_shape = (n, ho, wo, o)
    flops = 2 * n * ho * wo * o * kh * kw * c
    shape = f"x {_dims(x_shape)}, w {_dims(w_shape)}, {padding}"
    common = dict(kwargs=dict(padding=padding), flops=flops, big=big)
    return [
        Case(f"{family}/fwd", "conv2d", shape, (x_shape, w_shape), **common),
        Case(f"{family}/bwd-data", "conv2d_backward_data", shape, (y_shape, w_shape), (x_shape,), **common),
        Case(f"{family}/bwd-weight", "conv2d_backward_weight", shape, (x_shape, y_shape), (w_shape,), **common),
    ]


def _pool(family, x_shape, size=2) -> list[Case]:
    """Max and average pooling, size x size windows at stride size: forward and backward."""
    n, h, w, c = x_shape
    x = n * h * w * c
    y = n * (h // size) * (w // size) * c
    shape = f"x {_dims(x_shape)}, {size}x{size}/{size}"
    kw = dict(kwargs=dict(pool_size=size))
    y_shape = (n, h // size, w // size, c)
    return [
        Case(f"{family}/max-fwd", "max_pool2d", shape, (x_shape,), elements=x + y, **kw),
        Case(f"{family}/max-bwd", "max_pool2d_backward", shape, (y_shape, x_shape), elements=y + 2 * x, **kw),
        Case(f"{family}/avg-fwd", "avg_pool2d", shape, (x_shape,), elements=x + y, **kw),
        Case(f"{family}/avg-bwd", "avg_pool2d_backward", shape, (y_shape, x_shape), elements=y + x, **kw),
    ]


CASES: list[Case] = [
    *(_gemm(f"gemm-square/{s}", s, s, s, big=s >= 2048) for s in (256, 512, 1024, 2048)),
    _gemm("gemm-dense/fwd", 32, 128, 1600),                  # X (32, 1600) @ W (1600, 128)
    _gemm("gemm-dense/dX", 32, 1600, 128, trans_b=True),     # dY (32, 128) @ W (1600, 128)^T
    _gemm("gemm-dense/dW", 1600, 128, 32, trans_a=True),     # X (32, 1600)^T @ dY (32, 128)
    _gemm("gemm-dense/out", 32, 10, 128),                    # H (32, 128) @ W2 (128, 10)
    # the Dense(128) layer's whole backward pass: dX and dW as above, and the bias gradient
    Case("dense/bwd", "dense_backward", "dy 32x128, x 32x1600, w 1600x128, bias", ((32, 128), (32, 1600), (1600, 128)),
         kwargs=dict(with_bias=True), flops=2 * 2 * 32 * 1600 * 128),
    *_conv("conv1", (32, 28, 28, 1), (3, 3, 1, 32), "valid"),
    *_conv("conv2", (32, 13, 13, 32), (3, 3, 32, 64), "valid"),
    *_conv("conv-resnet", (32, 56, 56, 64), (3, 3, 64, 64), "same"),
    *_pool("pool1", (32, 26, 26, 32)),
    *_pool("pool2", (32, 11, 11, 64)),
    # seed-step, seed-epoch and the per-layer split of a step: see bench_training.py.
]

# On the GPU, the kernel cases above and the GEMM of the bars: 4096^3 at each precision.
GPU_CASES: list[Case] = CASES + [_gemm(f"gemm-square/4096{'-' + p if p else ''}", 4096, 4096, 4096, precision=p)
                                 for p in (None, "tf32", "bf16")]

TRAINING = "seed"  # --filter values that select the training benchmarks (seed-step, seed-epoch)
DEVICES = ("cpu", "cuda")
GPU_BACKENDS = getattr(kernels._backends, "GPU_BACKENDS", ("cuda",))   # the kernel backends that run on a GPU


def select(substring: str = "", *, quick: bool = False, device: str = "cpu") -> list[Case]:
    """The cases whose name contains `substring` (or whose kernel it names); --quick drops the
    big ones on the CPU (nothing here is big for a GPU)."""
    cases = GPU_CASES if device == "cuda" else CASES
    return [c for c in cases if (substring in c.name or substring == c.kernel)
            and not (quick and c.big and device == "cpu")]


def contenders(case: Case, backends, peers=(), device: str = "cpu") -> list[str]:
    """Who runs `case`: each backend, the peers that do this kernel, numpy.matmul for GEMM, and
    the reference last. On the GPU: each (GPU) backend and, for GEMM, the cuBLAS contender of
    the case's precision; the reference is then run for the check only (see measure_case)."""
    if device == "cuda":
        from zengrad import bench_cuda
        return [*backends, *([bench_cuda.BY_PRECISION[case.precision]] if case.kernel == "gemm" else [])]
    peers = [p for p in peers if case.kernel in PEER_KERNELS]
    return [*backends, *peers, *([MATMUL] if case.kernel == "gemm" else []), REFERENCE]


PEER_KERNELS = ("gemm", "dense_backward", "conv2d", "conv2d_backward_data", "conv2d_backward_weight")


def pairs(kernel_substring: str = "", backends=None) -> list[tuple[Case, str]]:
    """(case, contender) for each case whose kernel contains `kernel_substring`, for pytest."""
    backends = kernels.available_backends() if backends is None else backends
    return [(case, name) for case in CASES if kernel_substring in case.kernel
            for name in contenders(case, backends)]


# ---- running one contender ----

def _nothing():
    pass


def _as_numpy(out):
    """A result as NumPy arrays (a tuple of them for kernels that return several)."""
    return tuple(None if a is None else np.asarray(a) for a in out) if isinstance(out, tuple) else np.asarray(out)


def _host_clock(call, number: int, sync) -> float:
    """Mean seconds per call of `number` back-to-back calls, by the host's clock."""
    start = time.perf_counter()
    for _ in range(number):
        call()
    sync()
    return (time.perf_counter() - start) / number


@dataclass
class Runner:
    """One contender ready to run one case: `call()` once, inside `scope()`, then `sync()`.
    `clock(call, number)` times back-to-back calls (the host's clock, or CUDA events on a GPU)."""
    name: str
    call: Callable[[], Any]
    scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    sync: Callable[[], None] = _nothing
    to_host: Callable[[Any], Any] = _as_numpy
    clock: Callable[[Callable[[], Any], int], float] | None = None

    def run_once(self):
        """One finished call; its result as a NumPy array."""
        with self.scope():
            out = self.call()
            self.sync()
        return self.to_host(out)

    def call_and_sync(self):
        out = self.call()
        self.sync()
        return out

    def seconds_per_call(self, number: int) -> float:
        """Mean seconds of `number` back-to-back calls."""
        with self.scope():
            self.sync()
            if self.clock is not None:
                return self.clock(self.call, number)
            return _host_clock(self.call, number, self.sync)


def _on_gpu(contender: str) -> bool:
    return contender in GPU_BACKENDS or contender.startswith(("cupy-", "cublas-"))


def make_runner(case: Case, contender: str, args: tuple) -> Runner:
    """A Runner for `contender` (a backend name, REFERENCE, MATMUL or a cuBLAS contender) on
    arguments `args` (host arrays; GPU contenders copy them to the device first)."""
    if contender == REFERENCE:
        fn = getattr(kernels.reference, case.kernel)
        return Runner(contender, lambda: fn(*args, **case.kwargs))
    if contender in bench_peers.KNOWN:
        call, to_host = bench_peers.kernel_call(case.kernel, args, case.kwargs)
        return Runner(contender, call, to_host=to_host)
    if contender == MATMUL:
        a, b = args[:2]
        a = a.T if case.kwargs.get("trans_a") else a
        b = b.T if case.kwargs.get("trans_b") else b
        return Runner(contender, lambda: np.matmul(a, b))
    kwargs = dict(case.kwargs, **({"precision": case.precision} if case.precision else {}))
    fn = getattr(kernels, case.kernel)
    if not _on_gpu(contender):
        return Runner(contender, lambda: fn(*args, **kwargs), scope=lambda: kernels.use_backend(contender))
    from zengrad import bench_cuda
    gpu = dict(sync=bench_cuda.sync, to_host=bench_cuda.to_host, clock=bench_cuda.event_seconds)
    if contender in bench_cuda.NAMES:
        call, scope = bench_cuda.gemm_contender(contender, args, case.kwargs)
        return Runner(contender, call, scope=scope, **gpu)
    args = tuple(bench_cuda.to_device(a) for a in args)
    return Runner(contender, lambda: fn(*args, **kwargs), scope=lambda: kernels.use_backend(contender), **gpu)


def relative_error(actual, expected) -> float:
    """max |actual - expected| / rms(expected), the worst output's for kernels that return several
    (tuples); inf when the shapes differ."""
    if isinstance(expected, tuple) or isinstance(actual, tuple):
        if not (isinstance(expected, tuple) and isinstance(actual, tuple) and len(actual) == len(expected)):
            return math.inf
        if any((a is None) != (e is None) for a, e in zip(actual, expected)):
            return math.inf
        return max((relative_error(a, e) for a, e in zip(actual, expected) if e is not None), default=0.0)
    if actual.shape != expected.shape:
        return math.inf
    e = expected.astype(np.float64)
    rms = math.sqrt(float(np.mean(np.square(e)))) or 1.0
    return float(np.max(np.abs(actual.astype(np.float64) - e), initial=0.0)) / rms


_UNIT_ROUNDOFF = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}   # of the GEMM's inputs at that precision


def error_bound(dtype, precision: str | None = None) -> float:
    """Relative errors above this mean a broken kernel, not rounding (the tests are the fine check)."""
    if precision in _UNIT_ROUNDOFF:
        return 32 * _UNIT_ROUNDOFF[precision]
    return 8192 * float(np.finfo(dtype).eps)


# ---- timing ----

@dataclass(frozen=True)
class Settings:
    """How long to measure. Each contender gets ~min_time of samples in `rounds` rounds,
    fewer (but at least min_rounds) when one case's rounds would take over case_budget s."""
    min_time: float = 0.2
    rounds: int = 5
    min_rounds: int = 3
    case_budget: float = 8.0
    pause: float = PAUSE


QUICK = Settings(min_time=0.05, rounds=3, case_budget=3.0)
# A GPU has no BLAS threads to wait for between samples.
GPU = dataclasses.replace(Settings(), pause=0.0)
GPU_QUICK = dataclasses.replace(QUICK, pause=0.0)


@dataclass
class Timing:
    """The samples (seconds per call) of one contender on one case."""
    case: Case
    contender: str
    device: str = "cpu"
    number: int = 0                    # calls per sample
    samples: list[float] = field(default_factory=list)
    error: float | None = None         # relative error against the reference's output
    failure: str | None = None         # why it could not run

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def spread(self) -> float:
        """Half the range of the samples, relative to the median."""
        return (max(self.samples) - min(self.samples)) / 2 / self.median if self.samples else math.nan


def _estimate(runner: Runner, budget: float) -> float:
    """Seconds per call from back-to-back calls (1, 2, 5, 10, ...) lasting at least `budget`."""
    for number in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        seconds = runner.seconds_per_call(number)
        if seconds * number >= budget:
            break
    return seconds


@contextlib.contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def measure_case(case: Case, backends, dtype=np.float32, settings: Settings = Settings(),
                 peers=(), device: str = "cpu") -> list[Timing]:
    """Run each contender once, check its output against the reference's, then time them all.
    When the reference is not a contender (on the GPU) it is run once, for the check only."""
    args = case.make_args(dtype)
    timings = [Timing(case, name, device) for name in contenders(case, backends, peers, device)]
    ready, outputs = [], {}
    if not any(t.contender == REFERENCE for t in timings):
        with contextlib.suppress(Exception):    # a reference that cannot run leaves the outputs unchecked
            outputs[REFERENCE] = make_runner(case, REFERENCE, args).run_once()
    for timing in timings:
        try:
            runner = make_runner(case, timing.contender, args)
            start = time.perf_counter()
            outputs[timing.contender] = runner.run_once()    # also the first warm-up call
            ready.append((runner, timing, time.perf_counter() - start))
        except Exception as exc:                            # one broken contender must not stop the bench
            timing.failure = f"{type(exc).__name__}: {exc}"
    expected = outputs.pop(REFERENCE, None)
    for timing in timings:
        if expected is not None and timing.contender in outputs:
            timing.error = relative_error(outputs[timing.contender], expected)
    del outputs, expected
    if ready:
        _time_interleaved(ready, settings)
    return timings


def _time_interleaved(ready: list[tuple[Runner, Timing, float]], settings: Settings) -> None:
    """Fill each Timing with samples, the contenders taking turns, starting one later each round.

    `ready` holds (runner, timing, seconds its first call took).
    """
    per_sample = settings.min_time / settings.rounds
    with _gc_paused():
        round_time = settings.pause * len(ready)
        for runner, timing, first in ready:
            if first > 2 * per_sample:     # slow enough: one call per sample, no need to estimate
                estimate = first
            else:
                time.sleep(settings.pause)
                estimate = _estimate(runner, per_sample / 2)
            timing.number = max(1, int(per_sample / estimate))
            round_time += timing.number * estimate
        rounds = min(settings.rounds, max(settings.min_rounds, int(settings.case_budget / round_time)))
        for r in range(rounds):
            k = r % len(ready)
            for runner, timing, _ in ready[k:] + ready[:k]:
                time.sleep(settings.pause)
                timing.samples.append(runner.seconds_per_call(timing.number))


def run_cases(cases, backends, dtype=np.float32, settings: Settings = Settings(), progress=None,
              peers=(), device: str = "cpu") -> list[Timing]:
    """measure_case for each case in turn; `progress(i, n, case)` is told before each."""
    timings = []
    for i, case in enumerate(cases, 1):
        if progress:
            progress(i, len(cases), case)
        timings += measure_case(case, backends, dtype, settings, peers, device)
    return timings


# ---- reporting ----

def environment(dtype=np.float32) -> dict:
    """What the numbers depend on: zengrad's info(), NumPy and its BLAS, the CPU, Python."""
    try:
        info = zg.info()
    except Exception as exc:    # e.g. run from a source tree without installed metadata
        info = {"version": zg.__version__, "backends_available": kernels.available_backends(),
                "backend": kernels.get_backend(), "simd": None, "num_threads": zg.get_num_threads(),
                "info_error": f"{type(exc).__name__}: {exc}"}
    return {"zengrad": info, "numpy": np.__version__, "blas": _blas_info(), "cpu": _cpu_name(),
            "python": platform.python_version(), "platform": platform.platform(),
            "dtype": np.dtype(dtype).name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "devices": _device.describe() if "cupy" in sys.modules or _device._gpu is not None else None}


def _blas_info() -> list[dict] | None:
    """NumPy's BLAS libraries as threadpoolctl sees them; None without threadpoolctl."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: lib.get(k) for k in keys} for lib in threadpoolctl.threadpool_info()
            if lib.get("user_api") == "blas"]


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def header_lines(env: dict) -> list[str]:
    info = env["zengrad"]
    lines = [
        f"zengrad {info.get('version')}  backend {info.get('backend')} "
        f"(available: {', '.join(info.get('backends_available', []))})  simd {info.get('simd')}  "
        f"threads {info.get('num_threads')} of {info.get('usable_cores', '?')} cores",
        f"numpy {env['numpy']}  BLAS: " + ("(install threadpoolctl to see it)" if env["blas"] is None else
                                          "; ".join(f"{b['internal_api']} {b['version']} {b['architecture']}, "
                                                    f"{b['num_threads']} threads" for b in env["blas"]) or "none"),
        f"cpu {env['cpu']}  python {env['python']}  dtype {env['dtype']}",
    ]
    if "info_error" in info:
        lines.append(f"(zg.info() failed: {info['info_error']})")
    devices = env.get("devices")
    if devices and devices["cuda"]:
        cp = sys.modules.get("cupy")
        lines.append("gpu " + "; ".join(devices["cuda"]) + (f"  cupy {cp.__version__}" if cp else ""))
    return lines


MATMUL_NAMES = (MATMUL, "cupy-matmul", "cublas-tf32", "cublas-bf16")   # the "vs matmul" baselines


def summarise(timings: list[Timing], itemsize: int) -> list[dict]:
    """One record per timing: the case, the samples, the median, the rate and the ratios."""
    medians = {(t.device, t.case.name, t.contender): t.median for t in timings}
    records = []
    for t in timings:
        median = t.median if t.samples else None
        rate, unit = t.case.rate(median, itemsize) if median else (None, None)
        ref = medians.get((t.device, t.case.name, REFERENCE), math.nan)
        matmul = next((medians[(t.device, t.case.name, m)] for m in MATMUL_NAMES
                       if (t.device, t.case.name, m) in medians), math.nan)
        records.append({
            "device": t.device, "precision": t.case.precision,
            "case": t.case.name, "family": t.case.family, "kernel": t.case.kernel, "shape": t.case.shape,
            "array_shapes": [list(s) for s in t.case.array_shapes], "kwargs": t.case.kwargs,
            "flops": t.case.flops or None, "bytes": t.case.elements * itemsize or None,
            "contender": t.contender, "calls_per_sample": t.number, "samples_s": t.samples,
            "median_s": median, "spread": t.spread if median else None, "rate": rate, "rate_unit": unit,
            "speedup_vs_reference": _ratio(ref, median), "speedup_vs_matmul": _ratio(matmul, median),
            "error": t.error, "failure": t.failure,
        })
    return records


def _ratio(baseline, median):
    return baseline / median if median and math.isfinite(baseline) else None


def _sig(x: float, digits: int = 4) -> str:
    """x with about `digits` significant digits, never in exponent form."""
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x)))) if x else 0
    return f"{x:.{decimals}f}"


COLUMNS = ("kernel", "case", "shape", "backend", "median ms", "±", "rate", "vs ref", "vs matmul", "check")


def _check_text(rec: dict, bound: float) -> str:
    if rec["failure"]:
        return "FAILED " + rec["failure"][:60]
    if rec["error"] is None:
        return ""
    return "ok" if rec["error"] <= _bound(rec, bound) else f"WRONG (rel. error {rec['error']:.1e})"


def _bound(rec: dict, bound: float) -> float:
    """The error bound of a record: `bound` (its dtype's), or its GEMM precision's when lower."""
    return error_bound(np.float32, rec.get("precision")) if rec.get("precision") else bound


def _cells(rec: dict, first: bool, bound: float) -> list[str]:
    def times(r):
        return "" if r is None else f"{r:.2f}x"
    timed = rec["median_s"] is not None
    return [
        rec["kernel"] if first else "", rec["case"] if first else "", rec["shape"] if first else "",
        rec["contender"],
        _sig(rec["median_s"] * 1e3) if timed else "-",
        f"{rec['spread'] * 100:.0f}%" if timed else "",
        f"{_sig(rec['rate'], 3)} {rec['rate_unit']}" if timed else "",
        times(rec["speedup_vs_reference"]), times(rec["speedup_vs_matmul"]),
        _check_text(rec, bound),
    ]


def table_rows(records: list[dict], bound: float) -> list[list[list[str]]]:
    """The table's rows, grouped by (device, case); kernel, case and shape only on a group's first row."""
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        groups.setdefault((rec.get("device", "cpu"), rec["case"]), []).append(rec)
    return [[_cells(rec, i == 0, bound) for i, rec in enumerate(group)] for group in groups.values()]


def print_table(groups: list[list[list[str]]], file=None) -> None:
    """With rich when it is installed, else as plain aligned text."""
    file = file or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return _print_plain(groups, file)
    table = Table(*COLUMNS, header_style="bold")
    for i, column in enumerate(table.columns):
        column.no_wrap = True
        column.justify = "right" if 4 <= i < 9 else "left"
    for group in groups:
        for row in group:
            table.add_row(*row)
        table.add_section()
    console = Console(file=file)
    if not console.is_terminal:     # a file or a pipe: no terminal width to squeeze into
        console = Console(file=file, width=250)
    console.print(table)


def _print_plain(groups, file) -> None:
    rows = [list(COLUMNS)] + [row for group in groups for row in group]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]

    def line(row):
        return "  ".join(c.rjust(w) if 4 <= i < 9 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
    print(line(COLUMNS).rstrip(), file=file)
    for group in groups:
        print("-" * (sum(widths) + 2 * len(widths) - 2), file=file)
        for row in group:
            print(line(row).rstrip(), file=file)


def write_json(path: str, env: dict, settings, records: list[dict]) -> None:
    """All the samples, for later comparison; written to a temporary file, then renamed.
    `settings`: the Settings, or a dict of them by device."""
    settings = ({d: dataclasses.asdict(s) for d, s in settings.items()} if isinstance(settings, dict)
                else dataclasses.asdict(settings))
    data = {"environment": env, "settings": settings, "results": records}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


# ---- command line ----

def _backend_list(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    available = kernels.available_backends()
    unknown = [n for n in names if n not in available]
    if unknown:
        raise argparse.ArgumentTypeError(f"not available here: {', '.join(unknown)} "
                                         f"(available: {', '.join(available)})")
    return names


def _peer_list(text: str) -> tuple:
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    for name in names:
        if name not in bench_peers.KNOWN:
            raise argparse.ArgumentTypeError(f"unknown peer {name!r} (known: {', '.join(bench_peers.KNOWN)})")
        if not bench_peers.available(name):
            raise argparse.ArgumentTypeError(f"peer {name!r} is not installed")
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _device_list(text: str) -> list[str]:
    names = {n.strip().lower() for n in text.split(",") if n.strip()}
    if not names or not names <= set(DEVICES):
        raise argparse.ArgumentTypeError(f"must name devices among {', '.join(DEVICES)} (e.g. cuda or cpu,cuda), "
                                         f"got {text!r}")
    return [d for d in DEVICES if d in names]   # the CPU first: the GPU's epoch is compared with it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options, on a parser of its own or on `python -m zengrad bench`."""
    parser.add_argument("--device", type=_device_list, default=["cpu"], metavar="DEVICES",
                        help="cpu (default), cuda, or cpu,cuda: where the kernels and the seed CNN run; "
                             "with both, seed-epoch also gives the GPU's speed-up over the CPU")
    parser.add_argument("--backends", type=_backend_list, default=None, metavar="NAMES",
                        help="comma-separated backends to time (default: every available one of the device); "
                             "on the CPU the NumPy reference is always timed as the baseline")
    parser.add_argument("--threads", type=_positive_int, metavar="N", help="zengrad's kernel threads")
    parser.add_argument("--blas-threads", type=_positive_int, metavar="N",
                        help="also limit NumPy's BLAS to N threads (needs threadpoolctl)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--filter", default="", metavar="SUBSTRING",
                        help="only the cases whose name contains SUBSTRING (e.g. conv1, pool, /fwd, dense), "
                             "or whose kernel it names (e.g. max_pool2d)")
    parser.add_argument("--quick", action="store_true", help="fewer samples, no 2048 GEMM on the CPU")
    parser.add_argument("--json", metavar="PATH", help="write every sample to PATH as JSON")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--peers", type=_peer_list, default=(), metavar="NAMES",
                        help="also time other libraries side by side on the CPU: torch (PyTorch CPU, channels_last)")


def backends_of(device: str, backends) -> list[str]:
    """The backends among `backends` that run on `device`."""
    return [b for b in backends if (b in GPU_BACKENDS) == (device == "cuda")]


def run(args: argparse.Namespace) -> int:
    """Run the bench the parsed options ask for; 1 when a contender failed or computed wrongly,
    2 when nothing can run (no case matches, or --device cuda without a usable GPU)."""
    devices = getattr(args, "device", None) or ["cpu"]
    plan = [(device, select(args.filter, quick=args.quick, device=device)) for device in devices]
    cases_total = sum(len(cases) for _, cases in plan)
    training = TRAINING.startswith(args.filter) or args.filter.startswith(TRAINING)
    if args.list or not (cases_total or training):
        for device, cases in plan:
            for case in cases:
                print(f"{case.name:24} {case.kernel:24} {case.shape}" + ("" if devices == ["cpu"] else f"  [{device}]"))
        if training:
            print(f"{'seed-step, seed-epoch':24} {'training':24} the seed CNN at batch 32, and its layer split")
        if not (cases_total or training):
            print(f"no case matches {args.filter!r}", file=sys.stderr)
        return 0 if cases_total or training else 2
    if "cuda" in devices:
        reason = _device.cuda_unavailable_reason()
        if reason is not None:
            print(f"bench: --device cuda: {reason}", file=sys.stderr)
            return 2
    if args.threads:
        zg.set_num_threads(args.threads)
    backends = args.backends if args.backends is not None else kernels.available_backends()
    if "numba" in backends and args.peers:
        print("note: numba and the peers each bring an OpenMP runtime, which compete for the cores in one "
              "process (PyTorch's epoch ran 2x slower so); for fair ratios, time them in separate runs",
              file=sys.stderr)
    for device in devices:
        if not backends_of(device, backends):
            print(f"note: no {device} backend among {', '.join(backends)}: nothing of zengrad's to time there",
                  file=sys.stderr)
    dtype = np.dtype(args.dtype)
    settings = {d: (GPU_QUICK if args.quick else GPU) if d == "cuda" else (QUICK if args.quick else Settings())
                for d in devices}
    timings = []
    with _blas_limit(args.blas_threads):
        env = environment(dtype)
        print("\n".join(header_lines(env)), flush=True)
        start = time.perf_counter()
        for device, cases in plan:
            timings += run_cases(cases, backends_of(device, backends), dtype, settings[device], progress=_progress,
                                 peers=args.peers if device == "cpu" else (), device=device)
        if training:
            from zengrad import bench_training
            bench_training.run(backends, quick=args.quick, peers=args.peers, devices=devices)
        if not cases_total:
            return 0
    records = summarise(timings, dtype.itemsize)
    bound = error_bound(dtype)
    print_table(table_rows(records, bound))
    print(f"{cases_total} cases in {time.perf_counter() - start:.0f} s; median of interleaved samples; "
          f"± is half the range of the samples; vs ref = reference time / this time"
          + ("; on the GPU: CUDA-event times, the reference (on the CPU) only checks the output, and vs matmul "
             "is cuBLAS (via CuPy) at the row's precision / this time" if "cuda" in devices else ""))
    if args.json:
        write_json(args.json, env, settings, records)
        print(f"samples written to {args.json}")
    bad = [r for r in records if r["failure"] or (r["error"] or 0) > _bound(r, bound)]
    return 1 if bad else 0


def _blas_limit(n):
    if n is None:
        return contextlib.nullcontext()
    try:
        import threadpoolctl
    except ImportError:
        raise SystemExit("--blas-threads needs threadpoolctl (pip install threadpoolctl)") from None
    return threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def _progress(i: int, n: int, case: Case) -> None:
    print(f"[{i:2}/{n}] {case.name}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zengrad bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
