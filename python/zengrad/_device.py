"""Devices: where an array lives, and the one module above the kernels that knows about CuPy.

Device strings: "cpu", "cuda" (the current CUDA device) and "cuda:N". The array decides: a
NumPy array (or scalar) is on "cpu", a CuPy array on "cuda:<its device id>"; `device_of`
never answers a bare "cuda". CuPy is imported only when a GPU device is asked for; arrays are
recognised as CuPy's only when CuPy is already loaded, so `import zengrad` stays fast and
works without CuPy.

Policy for operands on different devices (used by Tensor ops, functional, losses, metrics,
optimizers): host data (NumPy arrays, lists, Python and NumPy numbers) are constants and are
copied to the device of the tensor they meet (numbers travel as kernel arguments, uncopied);
device arrays and Tensors never move implicitly: meeting one on another device is a TypeError
naming the operand.
"""
from __future__ import annotations

import sys
from numbers import Number

import numpy as np

CPU = "cpu"

# The GPU array module (cupy) once a GPU device has been asked for and found usable.
_gpu = None


def array_module(data):
    """numpy or cupy: the module whose functions apply to `data` (numpy for anything not on a GPU)."""
    if type(data) is np.ndarray:    # the CPU hot path: one type check
        return np
    gpu = _gpu if _gpu is not None else sys.modules.get("cupy")
    if gpu is not None and isinstance(data, gpu.ndarray):
        return gpu
    return np


def is_host(data) -> bool:
    """True for NumPy arrays and scalars, numbers and lists: data in host memory."""
    return type(data) is np.ndarray or array_module(data) is np


def device_of(data) -> str:
    """"cpu" or "cuda:N" for an array (host data of any kind is "cpu")."""
    if type(data) is np.ndarray or array_module(data) is np:
        return CPU
    return f"cuda:{data.device.id}"


# ---- device strings ----

def _bad(func, device, why=""):
    return ValueError(f"{func}: argument 'device' must be 'cpu', 'cuda' or 'cuda:N' (N >= 0){why}, got {device!r}")


def parse(func: str, device) -> str:
    """Check the syntax of a device string: "cpu", "cuda" or "cuda:N"; returns it unchanged."""
    if not isinstance(device, str):
        raise TypeError(f"{func}: argument 'device' must be a str ('cpu', 'cuda' or 'cuda:N'), "
                        f"got {type(device).__name__}")
    if device == CPU or device == "cuda":
        return device
    if device.startswith("cuda:"):
        index = device[5:]
        if index.isdigit() and index.isascii() and str(int(index)) == index:
            return device
    raise _bad(func, device)


def resolve(func: str, device) -> str:
    """A device string made concrete: "cpu", or "cuda:N" for "cuda" (the current device) and
    "cuda:N". Asking for a GPU checks that one is usable (RuntimeError saying why not) and
    that N names one of them (ValueError)."""
    device = parse(func, device)
    if device == CPU:
        return CPU
    gpu = gpu_module(func)
    if device == "cuda":
        return f"cuda:{gpu.cuda.Device().id}"
    index = int(device[5:])
    count = gpu.cuda.runtime.getDeviceCount()
    if index >= count:
        raise _bad(func, device, f" naming one of the {count} GPU(s) here (0..{count - 1})")
    return device


def gpu_module(func: str = "zengrad"):
    """The GPU array module (cupy), after checking that a GPU is usable: CuPy imports, it sees a
    device, and zengrad's CUDA kernels (the 'cuda' backend, zengrad._cuda) load. RuntimeError
    saying which of these fails otherwise."""
    global _gpu
    if _gpu is None:
        _gpu = _load_gpu(func)
    return _gpu


def cuda_unavailable_reason() -> str | None:
    """Why the GPU cannot be used here, or None when it can."""
    try:
        gpu_module()
    except RuntimeError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _load_gpu(func: str):
    where = f"{func}: device 'cuda' is not available here"
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(f"{where}: CuPy is not installed ({exc}); install the CuPy build for your "
                           "CUDA version, e.g. pip install cupy-cuda13x") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        why = "none found"
    except Exception as exc:    # no driver, a driver too old for this CuPy, no device: all mean "no GPU"
        count, why = 0, f"{type(exc).__name__}: {exc}"
    if count < 1:
        raise RuntimeError(f"{where}: CuPy finds no usable CUDA device ({why})")
    from .kernels import _backends, available_backends

    if "cuda" not in available_backends():
        reason = _backends.unavailable_reasons().get("cuda") or "this zengrad has no 'cuda' kernel backend"
        raise RuntimeError(f"{where}: zengrad's CUDA kernels (zengrad._cuda) cannot be used ({reason}); "
                           "they are built when a CUDA toolkit is found at install time")
    return cupy


# ---- moving data ----

def to_host(data):
    """A NumPy array (or scalar) from host or device data; device data is copied (the copy waits
    for the GPU)."""
    if type(data) is np.ndarray or array_module(data) is np:
        return data
    return data.get()


def to_numpy(data) -> np.ndarray:
    """A NumPy array that does not share memory with `data`."""
    host = to_host(data)
    return np.array(host, copy=True) if host is data or not isinstance(host, np.ndarray) else host


def move(data, device: str):
    """`data` on `device` (a resolved device string); the same object when it is already there."""
    if device == CPU:
        return to_host(data)
    index = int(device[5:])
    gpu = gpu_module()
    with gpu.cuda.Device(index):
        if isinstance(data, gpu.ndarray):
            # ndarray.copy() copies onto the current device, even from another one
            return data if data.device.id == index else data.copy()
        return gpu.asarray(data)


def _mixed(func, name, got, want):
    return TypeError(f"{func}: argument '{name}' is on {got} but must be on {want} like the tensor it "
                     f"meets; move it with .to({want!r}) (only host data is copied implicitly)")


def check_same(func: str, **arrays) -> None:
    """TypeError naming the first array that is not on the device of the first one (None skipped;
    NumPy scalars fit any device)."""
    first = None
    for name, a in arrays.items():
        if a is None or isinstance(a, np.generic):
            continue
        if first is None:
            first, first_type, first_dev = name, type(a), None
            continue
        if type(a) is first_type is np.ndarray:
            continue
        if first_dev is None:
            first_dev = device_of(arrays[first])
        dev = device_of(a)
        if dev != first_dev:
            raise _mixed(func, name, dev, first_dev)


def like(value, ref, func: str, name: str, dtype=None):
    """`value` (a number, list, NumPy or device array) as an array of `dtype` (default ref's) on
    ref's device. Host data is copied to the device (numbers and 0-d host arrays become NumPy
    scalars, which CuPy passes to its kernels as arguments, uncopied); a device array on another
    device is a TypeError naming `name`."""
    dtype = ref.dtype if dtype is None else dtype
    if type(ref) is np.ndarray or array_module(ref) is np:
        if type(value) is np.ndarray or array_module(value) is np:
            return np.asarray(value, dtype=dtype)
        raise _mixed(func, name, device_of(value), CPU)
    xp = array_module(ref)
    if isinstance(value, xp.ndarray):
        if value.device.id != ref.device.id:
            raise _mixed(func, name, device_of(value), device_of(ref))
        return value.astype(dtype, copy=False)
    if isinstance(value, (Number, np.generic)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return np.dtype(dtype).type(value)
    host = np.asarray(value, dtype=dtype)
    with xp.cuda.Device(ref.device.id):
        return xp.asarray(host)


def check_input(owner: str, name: str, data, device: str) -> None:
    """TypeError when device `data` (not host data, which may be copied) is not on `device`."""
    if type(data) is np.ndarray or array_module(data) is np:
        return
    dev = device_of(data)
    if dev != device:
        raise TypeError(f"{owner}: argument '{name}' is on {dev} but the model is on {device}; move it "
                        f"first (only host data is copied to the model's device implicitly)")


def synchronize(device: str) -> None:
    """Wait for the work queued on `device`'s current stream (nothing to wait for on the CPU)."""
    if device != CPU:
        gpu = gpu_module()
        with gpu.cuda.Device(int(device[5:])):
            gpu.cuda.get_current_stream().synchronize()


def describe() -> dict:
    """The devices here: {"cpu": True, "cuda": [descriptions] or [], "cuda_unavailable": reason}."""
    reason = cuda_unavailable_reason()
    out = {"cpu": True, "cuda": [], "cuda_unavailable": reason}
    if reason is None:
        gpu = gpu_module()
        for i in range(gpu.cuda.runtime.getDeviceCount()):
            props = gpu.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            out["cuda"].append(f"cuda:{i} {name}, {props['totalGlobalMem'] / 2**30:.0f} GiB, "
                               f"sm_{props['major']}{props['minor']}")
    return out
