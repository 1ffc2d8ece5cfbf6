"""A stand-in for CuPy, for tests only: it lets this GPU-less machine run zengrad's device code.

`FakeArray` wraps a NumPy array and behaves like a CuPy array where zengrad relies on it: its
own array module (`FAKE`, standing in for `cupy`), `.device.id`, `.get()`. It is stricter than
CuPy, so that any place where zengrad's device code reaches for NumPy instead of the array
module fails loudly: NumPy functions and ufuncs refuse it, and it refuses NumPy arrays as
operands (CuPy also refuses those, but accepts NumPy functions via __array_function__).

`install(monkeypatch)` makes zengrad see FAKE as its GPU module (device "cuda:0") and wraps
every kernel of zengrad.kernels so that fake arrays in give fake arrays out, like the CUDA
backend's contract: all array arguments on one device, results on it.
"""
from __future__ import annotations

import time
import types
from numbers import Number

import numpy as np

import zengrad as zg


class HostArrayError(TypeError):
    pass


def _unwrap(value, allow_host=False):
    if isinstance(value, FakeArray):
        return value._a
    if isinstance(value, np.ndarray) and not allow_host:
        raise HostArrayError(f"a NumPy array of shape {value.shape} met a fake GPU array: "
                             "zengrad must copy host data to the device first")
    if isinstance(value, tuple):
        return tuple(_unwrap(v, allow_host) for v in value)
    if isinstance(value, list):
        return [_unwrap(v, allow_host) for v in value]
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return FakeArray(value)
    if isinstance(value, np.generic):   # CuPy returns 0-d arrays where NumPy returns scalars
        return FakeArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


_MEMORY_POINTER = object()


class FakeArray:
    __slots__ = ("_a",)
    __array_ufunc__ = None          # np.ufunc(fake) raises; ndarray op fake defers to our reflected op

    def __init__(self, a):
        self._a = a

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented       # np.transpose(fake) etc. raise TypeError

    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion of a fake GPU array to a NumPy array")

    device = types.SimpleNamespace(id=0)
    data = property(lambda self: _MEMORY_POINTER)   # CuPy's .data is a pointer, not the values
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: FakeArray(self._a.T))
    base = property(lambda self: None if self._a.base is None else FakeArray(self._a.base))

    def get(self):
        return self._a.copy()

    def item(self):
        return self._a.item()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"FakeArray({self._a!r})"

    def copy(self):
        return FakeArray(self._a.copy())

    def astype(self, dtype, copy=True):
        if not copy and self._a.dtype == np.dtype(dtype):
            return self     # as CuPy: the array itself
        return FakeArray(self._a.astype(dtype, copy=copy))

    def reshape(self, *shape):
        return FakeArray(self._a.reshape(*shape))

    def transpose(self, *axes):
        return FakeArray(self._a.transpose(*axes))

    def ravel(self):
        return FakeArray(self._a.ravel())

    def fill(self, value):
        self._a.fill(value)

    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index)])

    def __setitem__(self, index, value):
        self._a[_unwrap(index)] = _unwrap(value)


def _method(name):
    def method(self, *args, **kwargs):
        return _wrap(getattr(self._a, name)(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    method.__name__ = name
    return method


for _name in ("sum", "mean", "var", "max", "min", "argmax", "argmin", "any", "all"):
    setattr(FakeArray, _name, _method(_name))


def _operator(name):
    def op(self, other):
        if isinstance(other, np.ndarray):
            raise HostArrayError(f"a NumPy array met a fake GPU array in {name}")
        if not isinstance(other, (FakeArray, Number, np.generic)):
            return NotImplemented
        result = getattr(self._a, name)(_unwrap(other))
        if result is NotImplemented:
            return result
        if name.startswith("__i"):   # in place: the same wrapper stays valid
            return self
        return _wrap(result)
    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "pow", "matmul", "and", "or", "floordiv", "mod"):
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(FakeArray, _form, _operator(_form))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(FakeArray, f"__{_name}__", _operator(f"__{_name}__"))
for _name in ("neg", "abs", "invert", "pos"):
    setattr(FakeArray, f"__{_name}__", (lambda n: lambda self: FakeArray(getattr(self._a, n)()))(f"__{_name}__"))


class _Function:
    """A NumPy function or ufunc on fake arrays (and its ufunc methods, e.g. add.at)."""

    def __init__(self, fn, allow_host=False):
        self._fn, self._allow_host = fn, allow_host

    def __call__(self, *args, **kwargs):
        args = _unwrap(args, self._allow_host)
        kwargs = {k: _unwrap(v, self._allow_host) for k, v in kwargs.items()}
        return _wrap(self._fn(*args, **kwargs))

    def __getattr__(self, name):
        return _Function(getattr(self._fn, name), self._allow_host)


class _Device:
    def __init__(self, index=None):
        self.id = 0 if index is None else int(index)
        if self.id != 0:
            raise RuntimeError(f"fake GPU: no device {self.id}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


class _Stream:
    def synchronize(self):
        pass


class _Event:
    """Host-clock stand-in for a CUDA event (the fake GPU runs everything synchronously)."""

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


class _Generator:
    def __init__(self, seed):
        self._g = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return FakeArray(self._g.random(size, dtype=dtype))


class _FakeCupy(types.ModuleType):
    ndarray = FakeArray

    def __init__(self):
        super().__init__("fake_cupy")
        self.cuda = types.SimpleNamespace(
            Device=_Device, get_current_stream=lambda: _Stream(), Event=_Event,
            get_elapsed_time=lambda start, end: 1e3 * (end.t - start.t),
            runtime=types.SimpleNamespace(
                getDeviceCount=lambda: 1, memGetInfo=lambda: (8 << 30, 16 << 30),
                getDeviceProperties=lambda i: {"name": b"fake GPU", "totalGlobalMem": 16 << 30, "major": 0,
                                               "minor": 0}))
        self.random = types.SimpleNamespace(default_rng=_Generator)

    def __getattr__(self, name):
        fn = getattr(np, name)
        if isinstance(fn, type):    # dtypes and classes as they are
            return fn
        return _Function(fn, allow_host=name in ("asarray", "array"))

    def asnumpy(self, a):
        return a.get()


FAKE = _FakeCupy()


def is_fake(a) -> bool:
    return isinstance(a, FakeArray)


def _kernel(fn):
    def call(*args, **kwargs):
        flat = list(args) + list(kwargs.values())
        fake = [a for a in flat if isinstance(a, FakeArray)]
        host = [a for a in flat if isinstance(a, np.ndarray)]
        if fake and host:
            raise TypeError(f"{fn.__name__}(): fake GPU and NumPy arrays in one call")
        result = fn(*_unwrap(tuple(args), True), **{k: _unwrap(v, True) for k, v in kwargs.items()})
        return _wrap(result) if fake else result
    call.__name__ = fn.__name__
    return call


KERNELS = ("gemm", "conv2d", "conv2d_backward_data", "conv2d_backward_weight", "max_pool2d",
           "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward", "dense_backward",
           "adam_update", "softmax_cross_entropy", "softmax_cross_entropy_backward")


def install(monkeypatch) -> None:
    """Make zengrad use the fake GPU as "cuda:0" for the rest of the test."""
    monkeypatch.setattr(zg._device, "_gpu", FAKE)
    for name in KERNELS:
        monkeypatch.setattr(zg.kernels, name, _kernel(getattr(zg.kernels, name)))
    monkeypatch.setattr(zg.random, "_device_generators", {})
