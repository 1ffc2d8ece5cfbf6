"""The Layer base class: lazy build from the first input's shape, weights, shape checks.

A layer's whole contract with the training loop is `parameters()` (the trainable Tensors) and
`__call__(x, training=False)`. Shapes are tuples with `None` for the batch axis.

Devices: a layer has a device ("cpu" until `to(...)`); its weights live there (initial values
are drawn on the CPU, then copied) and inputs given as host arrays are copied there.
"""
from __future__ import annotations

import abc

import itertools
import re
from collections import defaultdict
from numbers import Integral

import numpy as np

import zengrad as zg

from .. import _device
from . import _initializers as initializers

_name_counters: dict[str, itertools.count] = defaultdict(itertools.count)
_FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    """Keras' automatic names: 'dense', 'dense_1', 'dense_2', ..."""
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


def float_dtype(owner: str, dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _FLOAT_DTYPES:
        raise TypeError(f"{owner}: argument 'dtype' must be 'float32' or 'float64', got {dtype!r}")
    return dt


def shape_tuple(owner: str, name: str, value) -> tuple:
    """A shape without the batch axis, e.g. input_shape=(28, 28, 1)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        dims = tuple(value)
    except TypeError:
        dims = None
    if dims is None or not all(d is None or (isinstance(d, Integral) and not isinstance(d, bool) and d > 0)
                               for d in dims):
        raise ValueError(f"{owner}: argument '{name}' must be a tuple of positive ints (without the "
                         f"batch axis), got {value!r}")
    return tuple(None if d is None else int(d) for d in dims)


def int_pair(owner: str, name: str, value) -> tuple[int, int]:
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"{owner}: argument '{name}' must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def padding_mode(owner: str, value) -> str:
    mode = value.lower() if isinstance(value, str) else None
    if mode not in ("valid", "same"):
        raise ValueError(f"{owner}: argument 'padding' must be 'valid' or 'same', got {value!r}")
    return mode


def fmt_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def assign_weights(owner, weights, arrays):
    """Copy `arrays` (NumPy, or arrays on the weights' device) into the Tensors `weights`, in
    order, after checking every count and shape (nothing is changed when one does not fit)."""
    arrays = [a if not _device.is_host(a) else np.asarray(a) for a in arrays]
    if len(arrays) != len(weights):
        raise ValueError(f"{owner}: expected {len(weights)} arrays, got {len(arrays)}")
    for t, a in zip(weights, arrays):
        if a.shape != t.data.shape:
            raise ValueError(f"{owner}: weight of shape {t.data.shape} given an array of shape {a.shape}")
    for t, a in zip(weights, arrays):
        t.data[...] = _device.like(a, t.data, owner, "arrays")


class Layer(abc.ABC):
    """Base class. Subclasses set `input_ndim` (or `min_ndim`) and override `build`, `call`,
    `compute_output_shape`; weights are made with `add_weight`."""

    input_ndim: int | None = None   # exact rank, batch axis included
    min_ndim: int | None = None
    input_ndim_hint = ""            # what the axes are, for error messages

    def __init__(self, *, input_shape=None, name=None, dtype="float32", trainable=True, **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise TypeError(f"{cls}(): unexpected keyword argument(s) {sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{cls}(): argument 'name' must be a str, got {type(name).__name__}")
        self.name = name or unique_name(snake_case(cls))
        self.dtype = float_dtype(f"{cls}()", dtype)
        self.trainable = bool(trainable)
        self.built = False
        self.input_shape = None    # full shape, batch axis None, once built
        self.output_shape = None
        self._declared_input_shape = (None,) + shape_tuple(f"{cls}()", "input_shape", input_shape) \
            if input_shape is not None else None
        self._weights: list[tuple[str, object, bool]] = []   # (name, Tensor, trainable)
        self._constants: list = []                            # Tensors that move with the weights
        self._fixed_axes: dict[int, int] = {}                 # axis -> size fixed by the build
        self._called_with = (None, None)                      # (input shape, output shape) last checked
        self._device = _device.CPU

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"

    # ---- device ----
    @property
    def device(self) -> str:
        """"cpu" or "cuda:N": where the weights are (and are made when the layer builds)."""
        return self._device

    def to(self, device):
        """Move the weights to `device` ("cpu", "cuda", "cuda:N"), in place: each weight stays the
        same Tensor object (optimizers key their state by it) with its data (and gradient) copied
        there. Returns self."""
        target = _device.resolve(f"Layer '{self.name}'.to()", device)
        for t in [t for _, t, _ in self._weights] + self._constants:
            t.data = _device.move(t.data, target)
            if t.grad is not None:
                t.grad = _device.move(t.grad, target)
        self._device = target
        return self

    def make_constant(self, data):
        """A Tensor (no gradient) on this layer's device that moves with the weights."""
        t = zg.tensor(data, dtype=self.dtype, device=self._device)
        self._constants.append(t)
        return t

    # ---- weights ----
    def add_weight(self, name, shape, initializer="zeros", trainable=True):
        """A new weight Tensor of self.dtype on self.device, registered in `weights`; the initial
        values are drawn on the CPU (the same for a seed on every device)."""
        init = initializers.get(f"{type(self).__name__}()", initializer)
        data = np.asarray(init(tuple(shape), self.dtype), dtype=self.dtype)
        t = zg.tensor(data, requires_grad=bool(trainable), dtype=self.dtype, device=self._device)
        self._weights.append((name, t, bool(trainable)))
        return t

    def named_weights(self):
        """[(weight name, Tensor)], trainable ones first, in a fixed order (the save order)."""
        return [(n, t) for n, t, tr in self._weights if tr] + [(n, t) for n, t, tr in self._weights if not tr]

    @property
    def trainable_weights(self):
        return [t for _, t, tr in self._weights if tr] if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return [t for _, t in self.named_weights()]
        return [t for _, t, tr in self._weights if not tr]

    @property
    def weights(self):
        return self.trainable_weights + self.non_trainable_weights

    def parameters(self):
        """The trainable Tensors (what an optimizer updates)."""
        return self.trainable_weights

    def get_weights(self):
        """The weights as NumPy arrays (copies, whatever the device)."""
        return [_device.to_numpy(t.data) for t in self.weights]

    def set_weights(self, arrays):
        assign_weights(f"Layer '{self.name}' ({type(self).__name__}).set_weights()", self.weights, arrays)

    def count_params(self) -> int:
        return int(sum(t.data.size for _, t, _ in self._weights))

    # ---- shapes ----
    def _expected(self) -> str:
        if self.input_ndim is not None:
            shape = [None] * self.input_ndim
        else:
            shape = [None] * max(self.min_ndim or 1, 2)
        for axis, size in self._fixed_axes.items():
            shape[axis] = size
        text = fmt_shape(shape).replace("None", "?")
        rank = f"ndim={self.input_ndim}" if self.input_ndim is not None else f"ndim>={self.min_ndim}"
        hint = f" {self.input_ndim_hint}" if self.input_ndim_hint else ""
        return f"{rank}{hint}, shape {text}"

    def _incompatible(self, shape, why):
        return ValueError(f"Layer '{self.name}' ({type(self).__name__}): input of shape {fmt_shape(shape)} "
                          f"is incompatible: {why}; expected {self._expected()}")

    def check_input_shape(self, shape):
        """Raise ValueError naming this layer when `shape` (batch axis included) can't be its input."""
        shape = tuple(shape)
        if self.input_ndim is not None and len(shape) != self.input_ndim:
            hint = ""
            if len(shape) == self.input_ndim - 1 and "channels" in self.input_ndim_hint:
                hint = " (missing the channel axis? add it with x[..., None] or x.reshape(-1, H, W, 1))"
            raise self._incompatible(shape, f"ndim={len(shape)}{hint}")
        if self.min_ndim is not None and len(shape) < self.min_ndim:
            raise self._incompatible(shape, f"ndim={len(shape)}")
        for axis, size in self._fixed_axes.items():
            if shape[axis] is not None and shape[axis] != size:
                raise self._incompatible(shape, f"axis {axis % len(shape)} has size {shape[axis]}, "
                                                f"the layer was built for {size}")

    def build(self, input_shape):
        """Make the weights for inputs of `input_shape` (batch axis included)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def build_from_shape(self, input_shape):
        """Check, build once, and return the output shape for `input_shape`."""
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        self.check_input_shape(input_shape)
        if not self.built:
            self.build(input_shape)
            self.built = True
            self.input_shape = (None,) + input_shape[1:]
            self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        return tuple(self.compute_output_shape(input_shape))

    # ---- calling ----
    def _as_tensor(self, x):
        if isinstance(x, zg.Tensor):
            return x
        arr = np.asarray(x) if _device.is_host(x) else x
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Layer '{self.name}': input must be numeric, got dtype {arr.dtype}")
        _device.check_input(f"Layer '{self.name}'", "x", arr, self._device)
        return zg.tensor(arr, dtype=self.dtype, device=self._device)

    def _check_call(self, shape):
        """build_from_shape for a call's input, once per shape (a training loop repeats one);
        returns the output shape."""
        if shape != self._called_with[0]:
            self._called_with = (shape, self.build_from_shape(shape))
        return self._called_with[1]

    def __call__(self, x, training=False):
        x = self._as_tensor(x)
        self._check_call(x.shape)
        return self.call(x, training=training)

    def fuses_with(self, following) -> bool:
        """Whether call_then(x, following) runs this layer and `following` as one op; a layer that
        can says so (Conv2D before MaxPooling2D)."""
        return False

    @abc.abstractmethod
    def call(self, x, training=False):
        """Implemented by each subclass."""


class ActivationMixin:
    """For layers ending in an activation: `call_pre_activation` gives its input (the logits), so
    the training loop can compute softmax/sigmoid losses from logits, stably."""

    activation_name = None

    def _set_activation(self, activation):
        from ._activations import get
        self.activation_name, self.activation = get(f"{type(self).__name__}()", activation)

    def call_pre_activation(self, x, training=False):
        x = self._as_tensor(x)
        self._check_call(x.shape)
        return self.pre_activation(x, training=training)

    def call(self, x, training=False):
        y = self.pre_activation(x, training=training)
        return y if self.activation is None else self.activation(y)
