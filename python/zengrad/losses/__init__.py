"""Loss objects (Keras names): loss(y_true, y_pred) -> scalar Tensor, the mean over the batch.

y_pred is a Tensor (the model's output); y_true a NumPy array (copied to y_pred's device) or an
array on y_pred's device. Classification losses built on
probabilities (from_logits=False) clip them to [1e-7, 1 - 1e-7] as Keras does. When a model's
last activation is the one a loss expects (softmax for the cross-entropies, sigmoid for binary
cross-entropy), the training loop calls `loss.from_logits_loss(y_true, logits)` instead: the
same value, computed stably from the pre-activation logits.
"""
from __future__ import annotations

import abc

import numpy as np

import zengrad as zg

from .. import _device
from .. import functional as F
from .._device import array_module
from ..kernels._validate import outside_range

EPSILON = 1e-7

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
           "MeanSquaredError", "get", "KNOWN"]


def _const(value, like):
    """`value` as a constant Tensor of like's dtype on like's device."""
    return zg.Tensor(_device.like(value, like.data, "loss", "value"))


def _clip(p, lo, hi):
    """clip(p, lo, hi) with clip's gradient (1 inside the range, 0 outside), from Tensor ops."""
    inside = ((p.data >= lo) & (p.data <= hi)).astype(p.dtype)
    return p * _const(inside, p) + _const(array_module(p.data).clip(p.data, lo, hi) * (1 - inside), p)


def _host_or_device(y):
    """The array behind a Tensor, array or list: host data as NumPy, device arrays as they are."""
    y = y.data if isinstance(y, zg.Tensor) else y
    return np.asarray(y) if _device.is_host(y) else y


def _targets_like(y_true, y_pred, owner):
    """y_true as a float array on y_pred's device, broadcastable to y_pred's shape ((N,) becomes (N, 1))."""
    y = _host_or_device(y_true)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: targets must be numeric, got dtype {y.dtype}")
    y = _device.like(y, y_pred.data, owner, "y_true", dtype=y_pred.dtype)
    if y.ndim == len(y_pred.shape) - 1:
        y = y.reshape(y.shape + (1,))
    if y.shape != tuple(y_pred.shape):
        raise ValueError(f"{owner}: targets of shape {y.shape} do not match predictions of shape "
                         f"{tuple(y_pred.shape)}")
    return y


class Loss(abc.ABC):
    """Base class: subclasses define call(y_true, y_pred) -> scalar Tensor."""

    fused_activation = None    # the last activation whose logits from_logits_loss takes

    def __init__(self, name=None):
        self.name = name or type(self).__name__

    def __call__(self, y_true, y_pred):
        return self.call(y_true, y_pred)

    @abc.abstractmethod
    def call(self, y_true, y_pred):
        """Implemented by each subclass."""

    def from_logits_loss(self, y_true, logits):
        """The loss from the logits of `fused_activation`; only losses that name one have it."""
        raise TypeError(f"{type(self).__name__} has no form that takes logits")

    def from_logits_loss_and_activation(self, y_true, logits):
        """(from_logits_loss(y_true, logits), fused_activation(logits) as an array where the loss
        computes it on the way, else None)."""
        return self.from_logits_loss(y_true, logits), None

    def check_targets(self, y_true, output_shape):
        """Validate a whole target array against the model's output shape (batch axis None)."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class SparseCategoricalCrossentropy(Loss):
    """Integer labels (N,) or (N, 1) against class scores (N, C)."""

    def __init__(self, from_logits=False, name="sparse_categorical_crossentropy"):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self.fused_activation = None if from_logits else "softmax"

    def _labels(self, y_true, num_classes):
        """Labels as int64 (N,), on the device they come on. Host labels are checked to be
        integral and in range; device labels are not (that would wait for the GPU every step):
        fit checks the whole array once, through check_targets."""
        y = _host_or_device(y_true)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{self.name}: labels must have shape (N,) or (N, 1), got {y.shape}")
        if not _device.is_host(y):
            if y.dtype.kind not in "biuf":
                raise TypeError(f"{self.name}: labels must be integer class indices, got dtype {y.dtype}")
            return y.astype(np.int64, copy=False)
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError(f"{self.name}: labels must be integers (class indices), got non-integral values")
        elif y.dtype.kind not in "biu":
            raise TypeError(f"{self.name}: labels must be integer class indices, got dtype {y.dtype}")
        if num_classes is not None and outside_range(y, num_classes):
            lo, hi = y.min(), y.max()
            bad = lo if lo < 0 else hi
            raise ValueError(f"{self.name}: label {bad:g} is out of range for {num_classes} classes "
                             f"(labels must be in [0, {num_classes - 1}])")
        return y.astype(np.int64, copy=False)   # the compiled kernels' label type: converted once here

    def check_targets(self, y_true, output_shape):
        self._labels(_device.to_host(_host_or_device(y_true)), output_shape[-1])   # once: a copy is fine

    def call(self, y_true, y_pred):
        labels = self._labels(y_true, y_pred.shape[-1])
        if self.from_logits:
            return F.cross_entropy(y_pred, labels)
        p = y_pred / y_pred.sum(axis=-1, keepdims=True)
        xp = array_module(y_pred.data)
        labels = _device.like(labels, y_pred.data, self.name, "y_true", dtype=labels.dtype)
        onehot = xp.zeros(tuple(y_pred.shape), dtype=y_pred.dtype)
        onehot[xp.arange(len(labels)), labels] = 1
        return -(_const(onehot, p) * _clip(p, EPSILON, 1 - EPSILON).log()).sum(axis=-1).mean()

    def from_logits_loss(self, y_true, logits):
        return F.cross_entropy(logits, self._labels(y_true, None))   # cross_entropy checks the range

    def from_logits_loss_and_activation(self, y_true, logits):
        return F.cross_entropy_and_softmax(logits, self._labels(y_true, None))


class CategoricalCrossentropy(Loss):
    """One-hot (or probability) targets (N, C) against class scores (N, C)."""

    def __init__(self, from_logits=False, name="categorical_crossentropy"):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self.fused_activation = None if from_logits else "softmax"

    def check_targets(self, y_true, output_shape):
        y = _host_or_device(y_true)
        if y.ndim != len(output_shape) or y.shape[-1] != output_shape[-1]:
            raise ValueError(f"{self.name}: targets must be one-hot with shape (N, {output_shape[-1]}), got "
                             f"{y.shape} (integer labels need loss='sparse_categorical_crossentropy')")

    def call(self, y_true, y_pred):
        y = _targets_like(y_true, y_pred, self.name)
        if self.from_logits:
            return F.categorical_cross_entropy(y_pred, y)
        p = y_pred / y_pred.sum(axis=-1, keepdims=True)
        return -(_const(y, p) * _clip(p, EPSILON, 1 - EPSILON).log()).sum(axis=-1).mean()

    def from_logits_loss(self, y_true, logits):
        return F.categorical_cross_entropy(logits, _targets_like(y_true, logits, self.name))


class BinaryCrossentropy(Loss):
    """Targets in [0, 1] against probabilities (or logits), elementwise, mean."""

    def __init__(self, from_logits=False, name="binary_crossentropy"):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self.fused_activation = None if from_logits else "sigmoid"

    def call(self, y_true, y_pred):
        y = _targets_like(y_true, y_pred, self.name)
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(y_pred, y)
        return F.binary_cross_entropy(y_pred, y)

    def from_logits_loss(self, y_true, logits):
        return F.binary_cross_entropy_with_logits(logits, _targets_like(y_true, logits, self.name))


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)**2)."""

    def __init__(self, name="mean_squared_error"):
        super().__init__(name)

    def call(self, y_true, y_pred):
        return F.mse_loss(y_pred, _targets_like(y_true, y_pred, self.name))


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}
KNOWN = sorted(_BY_NAME)


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__(getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def get(identifier) -> Loss:
    """A Loss from a name, a Loss object, or a callable (y_true, y_pred) -> scalar Tensor."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; known: {KNOWN} (or a zengrad.losses.Loss object)")
        return cls()
    if callable(identifier):
        return _FunctionLoss(identifier)
    raise ValueError(f"loss must be one of {KNOWN}, a zengrad.losses.Loss or a callable, got {identifier!r}")
