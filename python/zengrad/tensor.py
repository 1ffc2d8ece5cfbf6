"""Tensor and define-by-run autograd.

A Tensor wraps an array (`.data`). An op on tensors that require gradients records, on its
result, the tensors it came from (`_parents`) and a function (`_backward`) that maps the
gradient of the result to the gradients of those parents. `backward()` visits the recorded
graph once, in reverse topological order, and accumulates gradients into the `.grad` of the
leaves (tensors created by the user, such as parameters). Each op's forward and backward sit
side by side below; the heavy ones (matmul) call `zengrad.kernels`.

Devices: the data is a NumPy array (device "cpu") or a CuPy array (device "cuda:N"); every op
takes its array functions from the data (`_device.array_module`), so one graph runs on either.
Host constants (numbers, lists, NumPy arrays) follow the tensor they meet to its device;
tensors on different devices never mix (TypeError naming the operand). `t.to(device)` copies,
and gradients flow back across the copy.
"""
from __future__ import annotations

import contextlib
import itertools
from heapq import heappop, heappush
from numbers import Number

import numpy as np

from . import _device, kernels
from ._device import array_module

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_grad_enabled = True
_creation_order = itertools.count()


@contextlib.contextmanager
def no_grad():
    """Within the block, ops record no graph (inference, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    if grad.shape == shape:
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(a % ndim for a in axis)


class Tensor:
    """An array with an optional gradient. Shapes and dtypes are those of `.data`."""

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_order")
    __array_ufunc__ = None  # NumPy defers to Tensor's operators: ndarray * Tensor -> Tensor

    def __init__(self, data, requires_grad=False):
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self._order = next(_creation_order)  # an op's result always comes after its inputs

    # ---- plumbing ----

    @staticmethod
    def _result(data, parents, backward) -> "Tensor":
        """The output of an op; records the graph when a parent needs a gradient."""
        out = Tensor(data)
        if _grad_enabled:
            for p in parents:
                if p.requires_grad:
                    out.requires_grad = True
                    out._parents = parents
                    out._backward = backward
                    break
        return out

    def _lift(self, other) -> "Tensor":
        """`other` as a Tensor of this one's dtype on its device (Python/NumPy scalars and arrays
        are constants, copied to the device; a tensor on another device is refused)."""
        if isinstance(other, Tensor):
            a, b = self.data, other.data
            if b.dtype != a.dtype and b.dtype in _FLOATS and a.dtype in _FLOATS:
                raise TypeError(f"cannot combine {a.dtype} and {b.dtype} tensors; "
                                "convert one with zg.tensor(t, dtype=...) first")
            if not (type(a) is type(b) is np.ndarray):
                _device.check_same("Tensor operator", self=a, other=b)
            return other
        if isinstance(other, (Number, np.ndarray, np.generic, list, tuple)):
            if type(self.data) is np.ndarray:
                return Tensor(np.asarray(other, dtype=self.data.dtype))
            return Tensor(_device.like(other, self.data, "Tensor operator", "other"))
        if array_module(other) is not np:   # a CuPy array: a constant too, if on this device
            return Tensor(_device.like(other, self.data, "Tensor operator", "other"))
        raise TypeError(f"unsupported operand type for Tensor: {type(other).__name__}")

    # ---- properties ----

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: _device.device_of(self.data), doc='"cpu" or "cuda:N"')

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array: the array itself on the CPU, a copy from a GPU."""
        return _device.to_host(self.data)

    def item(self):
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def to(self, device: str) -> "Tensor":
        """This tensor on `device` ("cpu", "cuda", "cuda:N"): self when it is already there, else a
        copy that records the move, so that gradients flow back to this tensor's device."""
        target = _device.resolve("Tensor.to()", device)
        source = self.device
        if target == source:
            return self
        return Tensor._result(_device.move(self.data, target), (self,), lambda g: (_device.move(g, source),))

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> "Tensor":
        return self.to("cuda" if index is None else f"cuda:{index}")

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = "" if type(self.data) is np.ndarray else f", device={self.device!r}"
        text = np.array2string(np.asarray(self.numpy()), precision=4, threshold=20)
        return f"Tensor({text}, dtype={self.dtype}{device}{grad})"

    # ---- backward ----

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) * grad into the `.grad` of every leaf that requires it.

        grad may be omitted when self is a scalar (it is then 1)."""
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad (no leaf it depends on does)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward(): argument 'grad' must be given for a non-scalar tensor "
                                 f"of shape {self.shape}")
            data = self.data   # ones of its dtype, on its device (np.ones: a tenth of ones_like's time)
            grad = np.ones(data.shape, data.dtype) if type(data) is np.ndarray else array_module(data).ones_like(data)
        else:
            grad = _device.like(grad.data if isinstance(grad, Tensor) else grad, self.data, "backward()", "grad")
            if isinstance(grad, np.generic):    # a number for a GPU tensor: gradients are arrays on its device
                grad = _device.move(np.asarray(grad), self.device)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): argument 'grad' must have shape {self.shape}, got {grad.shape}")

        # Nodes in descending creation order: every op's result is created after its inputs, so
        # a node comes off the heap only once all the nodes that feed gradient into it have
        # (each of those was created later). No recursion, however deep the graph.
        #
        # A leaf keeps the gradient array it receives, without a copy, when nothing else can see
        # that array: a fresh array (not a view) that reached only this leaf. Backward functions
        # return arrays they do not keep, but may pass one on twice (x + x) or return the
        # incoming gradient itself; `handed` counts where each array went (the caller's `grad`
        # counts as seen already). An id reused after its array was freed only costs a copy.
        # Leaves wait in a list until the walk is over, when all of their gradient is in.
        grads = {self: grad}
        handed = {id(grad): 2}
        heap, leaves = ([], [self]) if self._backward is None else ([(-self._order, self)], [])
        while heap:
            node = heappop(heap)[1]
            for parent, pg in zip(node._parents, node._backward(grads.pop(node))):
                if pg is None or not parent.requires_grad:
                    continue
                if parent in grads:
                    pg = grads[parent] + pg
                elif parent._backward is None:
                    leaves.append(parent)
                else:
                    heappush(heap, (-parent._order, parent))
                grads[parent] = pg
                handed[id(pg)] = handed.get(id(pg), 0) + 1
        for leaf in leaves:
            g = grads[leaf]
            if leaf.grad is not None:
                leaf.grad = leaf.grad + g
            else:
                leaf.grad = g if g.base is None and handed[id(g)] == 1 else g.copy()

    # ---- arithmetic (broadcasting) ----

    def __add__(self, other):
        other = self._lift(other)
        return Tensor._result(self.data + other.data, (self, other),
                              lambda g: (_unbroadcast(g, self.shape), _unbroadcast(g, other.shape)))

    def __sub__(self, other):
        other = self._lift(other)
        return Tensor._result(self.data - other.data, (self, other),
                              lambda g: (_unbroadcast(g, self.shape), _unbroadcast(-g, other.shape)))

    def __mul__(self, other):
        other = self._lift(other)
        return Tensor._result(self.data * other.data, (self, other),
                              lambda g: (_unbroadcast(g * other.data, self.shape),
                                         _unbroadcast(g * self.data, other.shape)))

    def __truediv__(self, other):
        other = self._lift(other)
        return Tensor._result(self.data / other.data, (self, other),
                              lambda g: (_unbroadcast(g / other.data, self.shape),
                                         _unbroadcast(-g * self.data / other.data**2, other.shape)))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, Number):
            raise TypeError("Tensor ** supports a constant (int or float) exponent")
        return Tensor._result(self.data**exponent, (self,),
                              lambda g: (g * exponent * self.data ** (exponent - 1),))

    def __neg__(self):
        return Tensor._result(-self.data, (self,), lambda g: (-g,))

    def __radd__(self, other):
        return self._lift(other) + self

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rmul__(self, other):
        return self._lift(other) * self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def __matmul__(self, other):
        """Matrix product; 2-D floating operands run on the GEMM kernel."""
        other = self._lift(other)
        a, b = self.data, other.data
        if a.ndim == 2 and b.ndim == 2 and a.dtype in _FLOATS:
            out = kernels.gemm(a, b)
            return Tensor._result(out, (self, other),
                                  lambda g: (kernels.gemm(g, b, trans_b=True) if self.requires_grad else None,
                                             kernels.gemm(a, g, trans_a=True) if other.requires_grad else None))

        a2 = a if a.ndim > 1 else a[None, :]  # vectors as 1-row / 1-column matrices
        b2 = b if b.ndim > 1 else b[:, None]
        full = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])

        def backward(g):  # batched or vector products: the array module's matmul, gradients unbroadcast
            xp = array_module(g)
            g2 = g.reshape(full)
            da = _unbroadcast(g2 @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
            db = _unbroadcast(xp.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
            return da, db

        return Tensor._result(a @ b, (self, other), backward)

    def __rmatmul__(self, other):
        return self._lift(other) @ self

    # ---- reductions ----

    def sum(self, axis=None, keepdims=False):
        axes = _axes(axis, self.ndim)

        def backward(g):
            xp = array_module(g)
            g = g if keepdims else xp.expand_dims(g, axes)
            return (xp.broadcast_to(g, self.shape).copy(),)

        return Tensor._result(self.data.sum(axis=axes, keepdims=keepdims), (self,), backward)

    def mean(self, axis=None, keepdims=False):
        axes = _axes(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes])) if axes else 1
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        """The maximum; its gradient goes to the first maximal element along the axes."""
        xp = array_module(self.data)
        axes = _axes(axis, self.ndim)
        rest = tuple(a for a in range(self.ndim) if a not in axes)
        inverse = tuple(int(i) for i in np.argsort(rest + axes))
        moved = xp.transpose(self.data, rest + axes)
        flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
        winner = xp.argmax(flat, axis=-1)
        best = xp.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]
        out = best.reshape(best.shape + (1,) * len(axes)) if keepdims else best
        if keepdims:
            out = xp.transpose(out, inverse)

        def backward(g):
            g = g.reshape(best.shape)
            dflat = xp.zeros_like(flat)
            xp.put_along_axis(dflat, winner[..., None], g[..., None], axis=-1)
            return (xp.transpose(dflat.reshape(moved.shape), inverse),)

        return Tensor._result(out, (self,), backward)

    # ---- shape ----

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Tensor._result(self.data.reshape(shape), (self,), lambda g: (g.reshape(self.shape),))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(axes) if axes else tuple(reversed(range(self.ndim)))
        inverse = tuple(int(i) for i in np.argsort(axes))
        xp = array_module(self.data)
        return Tensor._result(xp.transpose(self.data, axes), (self,), lambda g: (xp.transpose(g, inverse),))

    T = property(lambda self: self.transpose())

    def __getitem__(self, index):
        xp = array_module(self.data)
        index = _index_on(xp, self.data, index)

        def backward(g):
            grad = xp.zeros_like(self.data)
            if _is_basic(index):    # a view: no element twice, assigning is accumulating
                grad[index] = g
            else:
                xp.add.at(grad, index, g)  # repeated indices accumulate
            return (grad,)

        return Tensor._result(self.data[index], (self,), backward)

    # ---- elementwise functions ----

    def exp(self):
        out = array_module(self.data).exp(self.data)
        return Tensor._result(out, (self,), lambda g: (g * out,))

    def log(self):
        return Tensor._result(array_module(self.data).log(self.data), (self,), lambda g: (g / self.data,))


def _is_basic(index) -> bool:
    """Whether `index` is basic indexing (ints, slices, None, ...): the result is a view."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) and not isinstance(p, bool)
               for p in parts)


def _index_on(xp, data, index):
    """`index` (a Tensor, arrays, lists, slices...) with its index arrays on data's device."""
    if isinstance(index, Tensor):
        index = index.data
    if xp is np or _is_basic(index):
        return index
    device = _device.device_of(data)

    def part(p):
        p = p.data if isinstance(p, Tensor) else p
        if isinstance(p, (list, np.ndarray)):
            return _device.move(np.asarray(p), device)
        if array_module(p) is not np:
            _device.check_same("Tensor.__getitem__()", tensor=data, index=p)
        return p

    return tuple(part(p) for p in index) if isinstance(index, tuple) else part(index)


def tensor(data, requires_grad=False, dtype=None, device=None) -> Tensor:
    """A new Tensor holding a copy of `data`; floats become float32 unless `dtype` is given.

    device: "cpu", "cuda" (the current GPU) or "cuda:N"; None keeps the device of `data` (a
    Tensor or a CuPy array), else "cpu"."""
    target = None if device is None else _device.resolve("tensor()", device)
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind == "f" and dtype not in _FLOATS:
            raise TypeError(f"tensor(): argument 'dtype' must be float32 or float64 for floats, got {dtype}")
    xp = array_module(data)
    if xp is np:
        array = np.array(data, dtype=dtype)
    else:   # a device array: copied on its device, then moved if asked
        array = data.astype(dtype) if dtype is not None else data.copy()
    if dtype is None and array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    if requires_grad and array.dtype not in _FLOATS:
        raise TypeError(f"tensor(): only float32/float64 tensors can require grad, got {array.dtype}")
    if target is not None and target != _device.device_of(array):
        array = _device.move(array, target)
    return Tensor(array, requires_grad=requires_grad)
