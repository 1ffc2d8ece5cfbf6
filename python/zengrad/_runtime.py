"""Process-wide runtime settings: thread count and a summary of what this build can do."""
from __future__ import annotations

import os
import platform
import sys
from numbers import Integral

import numpy as np

from . import _heap

try:
    from . import _cpu
except ImportError:  # no compiled module: the kernels fall back to another backend
    _cpu = None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_num_threads = _usable_cores()


def set_num_threads(n: int) -> None:
    """Use `n` threads in the kernels (default: the cores this process may run on)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, Integral):
        raise TypeError(f"set_num_threads(): argument 'n' must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads(): argument 'n' must be >= 1, got {n}")
    _num_threads = int(n)
    if _cpu is not None:
        _cpu.set_num_threads(_num_threads)
    _set_numba_threads(_num_threads)


def _set_numba_threads(n: int) -> None:
    """Numba's thread count (for the calling thread: Numba keeps one per thread; the numba
    backend applies zengrad's count again in whichever thread calls a kernel). Only once that
    backend is loaded: importing numba takes ~0.2 s, too much for `import zengrad`."""
    if "zengrad.kernels._numba_backend" not in sys.modules:
        return
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _num_threads


def set_flush_denormal(enabled: bool) -> bool:
    """Run the compiled CPU kernels with denormal numbers flushed to zero (x86 FTZ and DAZ), or
    not (the default: IEEE results, bit for bit those of the NumPy reference).

    Arithmetic on denormals (magnitudes below ~1.2e-38 in float32) takes a slow microcode path,
    some 100 cycles an operation; flushing trades that for results that treat them as 0. It
    applies to every kernel of the 'cpp' backend, on every thread, for the kernel's duration
    only: NumPy code is never affected. (Adam's kernel stores moments below the smallest normal
    number as 0 in either mode.) Returns True when this build can flush (the 'cpp' backend is
    available on x86-64), False when the setting has no effect here."""
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_flush_denormal(): argument 'enabled' must be a bool, got {type(enabled).__name__}")
    if _cpu is None:
        return False
    _cpu.set_flush_denormals(bool(enabled))
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def get_flush_denormal() -> bool:
    """Whether the CPU kernels flush denormals to zero (see set_flush_denormal)."""
    return bool(_cpu is not None and _cpu.get_flush_denormals())


def _cuda_info() -> dict:
    """What this build offers on NVIDIA GPUs: whether zengrad._cuda was built, for which
    architectures, and the devices its CUDA runtime sees (0, with the reason, on a machine
    without a GPU or driver)."""
    try:
        from . import _cuda
    except ImportError as exc:
        return {"built": False, "architectures": [], "devices": 0, "reason": f"zengrad._cuda not built ({exc})"}
    devices, why = _cuda.device_status()
    return {"built": True, "architectures": _cuda.compiled_architectures(), "runtime_version": _cuda.runtime_version(),
            "devices": devices, "reason": why}


def info() -> dict:
    """Version, backends, the backend in use, the SIMD level chosen, the thread count, what
    CUDA offers here (cuda: built, architectures, devices) with the GPU matmul precision, and
    whether freed memory is kept in the heap (keep_heap: see zengrad._heap)."""
    from . import __version__, kernels
    from .kernels._backends import unavailable_reasons

    return {
        "version": __version__,
        "backends_available": kernels.available_backends(),
        "backend": kernels.get_backend(),
        "backends_unavailable": unavailable_reasons(),
        "simd": _cpu.simd_level() if _cpu is not None else None,
        "simd_supported": _cpu.supported_simd_levels() if _cpu is not None else [],
        "num_threads": get_num_threads(),
        "usable_cores": _usable_cores(),
        "cuda": _cuda_info(),
        "matmul_precision": kernels.get_matmul_precision(),
        "keep_heap": _heap.keep_freed_memory(),
    }


if _cpu is not None:
    _cpu.set_num_threads(_num_threads)
_heap.keep_freed_memory()
