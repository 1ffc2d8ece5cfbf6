"""Which implementation runs the kernels: the registry, the automatic choice, the switches.

Backends are namespaces of functions that take arguments already checked by `_validate`. Each
runs on one device: "cpp", "numba" and "numpy" on the CPU (NumPy arrays), "cuda" on NVIDIA GPUs
(CuPy arrays). The arrays of a call decide the device: NumPy arrays run on the current backend
if it is a CPU backend, else on the automatic CPU choice (auto order: cpp, then numba, then
numpy); CuPy arrays run on the current backend if it is a GPU backend, else on the first
available GPU backend. The environment variable ZENGRAD_BACKEND names the default.
`use_backend` is scoped to the current thread (and asyncio task); `set_backend` changes the
process-wide default. The matrix-product precision of the GPU (`set_matmul_precision`,
`matmul_precision`) is a setting of the same two kinds.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import types
import warnings

AUTO_ORDER = ("cpp", "numba", "numpy")
KNOWN = ("cpp", "numba", "numpy", "cuda")
CPU_BACKENDS = frozenset(("cpp", "numba", "numpy"))
GPU_BACKENDS = ("cuda",)
DEVICES = {"cpp": "cpu", "numba": "cpu", "numpy": "cpu", "cuda": "cuda"}

_loaded: dict[str, types.SimpleNamespace] = {}
_cpu_loaded: dict[str, types.SimpleNamespace] = {}  # the CPU ones among _loaded
_why_unavailable: dict[str, str] = {}
_default: str | None = None
_cpu_default: str | None = None
_scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar("zengrad_backend", default=None)


def _load(name: str):
    """Import backend `name` once; None (and the reason remembered) when it cannot load."""
    if name in _loaded:
        return _loaded[name]
    if name in _why_unavailable:
        return None
    try:
        module = importlib.import_module(f"zengrad.kernels._{name}_backend")
        _loaded[name] = module.BACKEND
        if name in CPU_BACKENDS:
            _cpu_loaded[name] = module.BACKEND
        return module.BACKEND
    except Exception as exc:  # an import error, a missing runtime, a broken build: all mean "not here"
        _why_unavailable[name] = f"{type(exc).__name__}: {exc}"
        return None


def available_backends() -> list[str]:
    """The backends that load on this machine: the CPU ones in the automatic order, then "cuda"."""
    return [name for name in KNOWN if _load(name) is not None]


def unavailable_reasons() -> dict[str, str]:
    available_backends()
    return dict(_why_unavailable)


def _check(func: str, name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{func}(): argument 'name' must be a str, got {type(name).__name__}")
    name = name.lower()
    if name not in KNOWN:
        raise ValueError(f"{func}(): argument 'name' must be one of {list(KNOWN)}, got {name!r}; "
                         f"available here: {available_backends()}")
    if _load(name) is None:
        raise ValueError(f"{func}(): argument 'name' must be an available backend, got {name!r} "
                         f"({_why_unavailable[name]}); available here: {available_backends()}")
    return name


def _auto_cpu() -> str:
    """The CPU backend for NumPy arrays when the current backend is not one: ZENGRAD_BACKEND if
    it names a CPU backend, else the first that loads in AUTO_ORDER."""
    global _cpu_default
    if _cpu_default is not None:
        return _cpu_default
    requested = os.environ.get("ZENGRAD_BACKEND")
    if requested and requested.lower() in CPU_BACKENDS:
        _cpu_default = _check("ZENGRAD_BACKEND", requested)
        return _cpu_default
    for name in AUTO_ORDER:
        if _load(name) is not None:
            if name != AUTO_ORDER[0]:
                warnings.warn(f"zengrad: the compiled 'cpp' backend is unavailable "
                              f"({_why_unavailable.get('cpp')}); using {name!r}", RuntimeWarning, stacklevel=4)
            _cpu_default = name
            return name
    raise RuntimeError("no zengrad backend could be loaded")  # numpy always loads


def _auto() -> str:
    requested = os.environ.get("ZENGRAD_BACKEND")
    if requested:
        return _check("ZENGRAD_BACKEND", requested)
    return _auto_cpu()


def get_backend() -> str:
    """The name of the backend that kernels called from here will run on."""
    global _default
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _default is None:
        _default = _auto()
    return _default


def set_backend(name: str) -> None:
    """Make `name` the process-wide default backend."""
    global _default
    _default = _check("set_backend", name)


@contextlib.contextmanager
def use_backend(name: str):
    """Run the body of the `with` block on backend `name` (this thread only)."""
    name = _check("use_backend", name)
    token = _scoped.set(name)
    try:
        yield name
    finally:
        _scoped.reset(token)


def current():
    """The backend for NumPy arrays: the current one if it runs on the CPU, else the automatic
    CPU choice. (The kernels' hot path: keep it to a lookup.)"""
    try:
        return _cpu_loaded[_scoped.get() or _default]
    except KeyError:  # no backend chosen yet, or the current one is a GPU backend
        name = get_backend()
        return _cpu_loaded[name] if name in _cpu_loaded else _loaded[_auto_cpu()]


def current_gpu(func: str):
    """The backend for GPU (CuPy) arrays: the current one if it runs on a GPU, else the first
    available GPU backend; RuntimeError saying why when there is none."""
    name = get_backend()
    if name in GPU_BACKENDS:
        return _loaded[name]
    for name in GPU_BACKENDS:
        backend = _load(name)
        if backend is not None:
            return backend
    reasons = "; ".join(f"{n}: {_why_unavailable.get(n)}" for n in GPU_BACKENDS)
    raise RuntimeError(f"{func}(): got GPU (CuPy) arrays, but no GPU backend is available here ({reasons})")


# ---- matrix-product precision on the GPU ----

PRECISIONS = ("float32", "tf32", "bf16")
_precision_default = "float32"
_precision_scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar("zengrad_matmul_precision",
                                                                               default=None)


def check_precision(func: str, value, name: str = "precision") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{func}(): argument '{name}' must be one of {list(PRECISIONS)}, got {type(value).__name__}")
    precision = value.lower()
    if precision not in PRECISIONS:
        raise ValueError(f"{func}(): argument '{name}' must be one of {list(PRECISIONS)}, got {value!r}")
    return precision


def get_matmul_precision() -> str:
    """How GPU matrix products (GEMM, convolutions) on float32 compute here: "float32" (plain
    FP32, the default), "tf32" or "bf16" (tensor cores, inputs rounded, float32 accumulation)."""
    scoped = _precision_scoped.get()
    return _precision_default if scoped is None else scoped


def set_matmul_precision(precision: str) -> None:
    """Set the process-wide precision of GPU float32 matrix products: "float32", "tf32" or
    "bf16". float64 is always FP64; the CPU backends always compute in full precision."""
    global _precision_default
    _precision_default = check_precision("set_matmul_precision", precision)


@contextlib.contextmanager
def matmul_precision(precision: str):
    """Run the body of the `with` block with GPU matrix products in `precision` (this thread only)."""
    token = _precision_scoped.set(check_precision("matmul_precision", precision))
    try:
        yield get_matmul_precision()
    finally:
        _precision_scoped.reset(token)
