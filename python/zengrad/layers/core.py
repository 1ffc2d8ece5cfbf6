"""Dense, Flatten, Dropout, Activation and the Input marker."""
from __future__ import annotations

import math
from numbers import Integral, Real

from .. import functional as F
from ._base import ActivationMixin, Layer, shape_tuple


class Dense(ActivationMixin, Layer):
    """y = activation(x @ kernel + bias); x (N, ..., in), kernel (in, units) -> (N, ..., units)."""

    min_ndim = 2
    input_ndim_hint = "(batch, ..., features)"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, **kwargs):
        if isinstance(units, bool) or not isinstance(units, Integral) or units <= 0:
            raise ValueError(f"Dense(): argument 'units' must be a positive int, got {units!r}")
        super().__init__(input_shape=input_shape, **kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._set_activation(activation)
        self.kernel = self.bias = None

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise self._incompatible(input_shape, "the last axis (features) must be known")
        self.kernel = self.add_weight("kernel", (features, self.units), self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer)
        self._fixed_axes = {-1: features}

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def pre_activation(self, x, training=False):
        return self._linear(x, None)

    def call(self, x, training=False):
        if self.activation_name == "relu":  # fused into the GEMM kernel
            return self._linear(x, "relu")
        return super().call(x, training=training)

    def _linear(self, x, activation):
        if x.ndim == 2:
            return F.linear(x, self.kernel, self.bias, activation)
        lead = tuple(x.shape[:-1])
        y = F.linear(x.reshape(math.prod(lead), x.shape[-1]), self.kernel, self.bias, activation)
        return y.reshape(*lead, self.units)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    min_ndim = 1

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)

    def call(self, x, training=False):
        if x.ndim == 1:
            return x.reshape(x.shape[0], 1)
        return F.flatten(x)


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs while training and scales the rest by 1/(1-rate);
    the identity at inference. Masks come from zengrad.random.generator()."""

    def __init__(self, rate, **kwargs):
        if isinstance(rate, bool) or not isinstance(rate, Real) or not 0 <= rate < 1:
            raise ValueError(f"Dropout(): argument 'rate' must be a float in [0, 1), got {rate!r}")
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        return F.dropout(x, self.rate, training)


class Activation(ActivationMixin, Layer):
    """Applies an activation by name: 'relu', 'sigmoid', 'tanh', 'softmax', 'linear'."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._set_activation(activation)

    def pre_activation(self, x, training=False):
        return x


class InputLayer(Layer):
    """Marks a Sequential's input shape; holds no weights and is not listed in the model's layers."""

    def __init__(self, shape=None, input_shape=None, **kwargs):
        shape = input_shape if shape is None else shape
        if shape is None:
            raise ValueError("InputLayer(): argument 'shape' is required (without the batch axis)")
        super().__init__(**kwargs)
        self.shape = (None,) + shape_tuple("InputLayer()", "shape", shape)

    def call(self, x, training=False):
        return x


def Input(shape, name=None, dtype="float32"):
    """Keras' `Input(shape=...)`: put it first in a Sequential to fix its input shape."""
    return InputLayer(shape=shape, name=name, dtype=dtype)
