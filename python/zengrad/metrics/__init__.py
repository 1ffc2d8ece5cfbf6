"""Metrics, accumulated over an epoch as Keras does (mean over samples).

Arrays may be NumPy or on a GPU (CuPy): the functions compute on y_pred's device (host targets
are copied there) and a running mean of device values is summed on the device, so updating
never waits for the GPU; `result()` does (it returns a Python float).

The functions return one value per sample; the classes keep a running mean:
`update_state(y_true, y_pred)`, `result()`, `reset_state()`. "accuracy" picks its kind from
the shapes as Keras does: binary when y_pred has one column (threshold 0.5), sparse when y_true
holds class indices, categorical (argmax vs argmax) otherwise.
"""
from __future__ import annotations

import abc

from numbers import Number

import numpy as np

from .. import _device
from .._device import array_module
from ..kernels._validate import SMALL_HOST_ARRAY
from ..tensor import Tensor

__all__ = ["Metric", "Mean", "MeanMetricWrapper", "Accuracy", "SparseCategoricalAccuracy",
           "CategoricalAccuracy", "BinaryAccuracy", "sparse_categorical_accuracy",
           "categorical_accuracy", "binary_accuracy", "accuracy", "get", "KNOWN"]


def _np(a):
    """The array behind a Tensor, array or list (host data as NumPy; device arrays as they are)."""
    a = a.data if isinstance(a, Tensor) else a
    return np.asarray(a) if _device.is_host(a) else a


def _pair(y_true, y_pred):
    """(y_true, y_pred) as arrays on y_pred's device (host targets copied there)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    if type(y_pred) is not np.ndarray and array_module(y_pred) is not np:
        y_true = _device.like(y_true, y_pred, "metric", "y_true", dtype=y_true.dtype)
    return y_true, y_pred


def sparse_categorical_accuracy(y_true, y_pred):
    """argmax(y_pred) == label; y_true (N,) or (N, 1) class indices, y_pred (N, C) -> (N,) floats."""
    if not (type(y_true) is np.ndarray and type(y_pred) is np.ndarray):
        y_true, y_pred = _pair(y_true, y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return (array_module(y_pred).argmax(y_pred, axis=-1) == y_true).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    """argmax(y_pred) == argmax(y_true); both (N, C) -> (N,) floats."""
    y_true, y_pred = _pair(y_true, y_pred)
    xp = array_module(y_pred)
    return (xp.argmax(y_pred, axis=-1) == xp.argmax(y_true, axis=-1)).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """(y_pred > threshold) == y_true, averaged over the last axis -> (N,) floats."""
    y_true, y_pred = _pair(y_true, y_pred)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    hits = ((y_pred > threshold).astype(np.float32) == y_true.astype(np.float32)).astype(np.float32)
    return hits.mean(axis=-1) if hits.ndim > 1 else hits


def _accuracy_kind(y_true, y_pred):
    y_true, y_pred = _np(y_true), _np(y_pred)
    if y_pred.shape[-1] == 1:
        return binary_accuracy
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy
    return categorical_accuracy


def accuracy(y_true, y_pred):
    """Per-sample accuracy of the kind Keras' "accuracy" picks for these shapes."""
    return _accuracy_kind(y_true, y_pred)(y_true, y_pred)


class Metric(abc.ABC):
    """A running value over batches."""

    def __init__(self, name):
        self.name = name
        self.reset_state()

    @abc.abstractmethod
    def reset_state(self):
        """Implemented by each subclass."""

    @abc.abstractmethod
    def update_state(self, y_true, y_pred):
        """Implemented by each subclass."""

    @abc.abstractmethod
    def result(self) -> float:
        """Implemented by each subclass."""

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """The (weighted) mean of the values given to update_state(values, sample_weight=None)."""

    def __init__(self, name="mean"):
        super().__init__(name)

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        if type(values) is np.ndarray and sample_weight is None:  # the common call, in short
            self.total += float(values.sum(dtype=np.float64))
            self.count += values.size
            return
        if type(values) is np.ndarray and values.ndim == 0 and type(sample_weight) is int:  # fit's loss a batch
            self.total += float(values) * sample_weight
            self.count += float(sample_weight)
            return
        values = _np(values).astype(np.float64)
        if array_module(values) is not np:  # summed on the device: no wait for the GPU here
            if sample_weight is None:
                self.total = self.total + values.sum()
                self.count += values.size
            elif isinstance(sample_weight, Number):
                self.total = self.total + (values * sample_weight).sum()
                self.count += float(sample_weight) * values.size
            else:
                weights = _device.like(sample_weight, values, "Mean.update_state()", "sample_weight")
                self.total = self.total + (values * weights).sum()
                self.count = self.count + (weights + values * 0).sum()
            return
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            self.total += float((values * sample_weight).sum())
            self.count += float(np.sum(np.broadcast_to(sample_weight, values.shape)))

    def result(self):
        """The mean so far, a float (on a GPU, this waits for the values summed there)."""
        total, count = float(self.total), float(self.count)
        return total / count if count else 0.0


class MeanMetricWrapper(Mean):
    """The mean over all samples seen of fn(y_true, y_pred) (per-sample values)."""

    def __init__(self, fn, name):
        self.fn = fn
        super().__init__(name)

    def update_state(self, y_true, y_pred):
        if (self.fn is sparse_categorical_accuracy and type(y_pred) is np.ndarray and type(y_true) is np.ndarray
                and y_pred.ndim == 2 and y_true.shape == y_pred.shape[:1]):
            # the common call, in short: the number of hits added, without a per-sample array
            predicted = y_pred.argmax(axis=1)
            if y_true.size <= SMALL_HOST_ARRAY:  # compared as Python lists
                self.total += sum(p == t for p, t in zip(predicted.tolist(), y_true.tolist()))
            else:
                self.total += int(np.count_nonzero(predicted == y_true))
            self.count += y_true.size
            return
        super().update_state(self.fn(y_true, y_pred))


class SparseCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name)


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name)


class BinaryAccuracy(MeanMetricWrapper):
    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(lambda t, p: binary_accuracy(t, p, threshold), name)


class Accuracy(MeanMetricWrapper):
    """What compile(metrics=["accuracy"]) gives: the kind is chosen from the first batch's shapes."""

    def __init__(self, name="accuracy"):
        super().__init__(accuracy, name)

    def update_state(self, y_true, y_pred):
        if self.fn is accuracy:
            self.fn = _accuracy_kind(y_true, y_pred)
        super().update_state(y_true, y_pred)


_BY_NAME = {
    "accuracy": Accuracy,
    "acc": lambda: Accuracy(name="acc"),
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
}
KNOWN = sorted(_BY_NAME)


def get(identifier) -> Metric:
    """A fresh Metric from a name, a Metric object, or a callable (y_true, y_pred) -> per-sample values."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        make = _BY_NAME.get(identifier.lower())
        if make is None:
            raise ValueError(f"unknown metric {identifier!r}; known: {KNOWN} (or a zengrad.metrics.Metric object)")
        return make()
    if callable(identifier):
        return MeanMetricWrapper(identifier, getattr(identifier, "__name__", "metric"))
    raise ValueError(f"metric must be one of {KNOWN}, a zengrad.metrics.Metric or a callable, got {identifier!r}")
