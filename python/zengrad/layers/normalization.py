"""BatchNormalization over the last (channel) axis."""
from __future__ import annotations

from numbers import Real

import numpy as np

from .. import functional as F
from ._base import Layer


class BatchNormalization(Layer):
    """Normalises over every axis but the last. Training: batch statistics, and the moving ones
    move as moving = moving*momentum + batch*(1 - momentum); inference: the moving statistics.
    gamma/beta are trainable; moving_mean/moving_variance are not, but are saved with the weights.
    A frozen layer (trainable=False) always runs in inference mode, as in Keras."""

    min_ndim = 2
    input_ndim_hint = "(batch, ..., channels)"

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        if axis not in (-1,):
            raise ValueError(f"BatchNormalization(): only axis=-1 (channels last) is supported, got {axis!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization(): argument 'momentum' must be a number in [0, 1], got {momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, Real) or not epsilon > 0:
            raise ValueError(f"BatchNormalization(): argument 'epsilon' must be a positive number, got {epsilon!r}")
        super().__init__(**kwargs)
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self._inits = (gamma_initializer, beta_initializer, moving_mean_initializer, moving_variance_initializer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise self._incompatible(input_shape, "the channel axis must be known")
        shape = (channels,)
        g_init, b_init, mm_init, mv_init = self._inits
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, g_init)
        else:
            self.gamma = self.make_constant(np.ones(shape, self.dtype))
        if self.center:
            self.beta = self.add_weight("beta", shape, b_init)
        else:
            self.beta = self.make_constant(np.zeros(shape, self.dtype))
        self.moving_mean = self.add_weight("moving_mean", shape, mm_init, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape, mv_init, trainable=False)
        self._fixed_axes = {-1: channels}

    def call(self, x, training=False):
        return F.batch_norm(x, self.gamma, self.beta, self.moving_mean.data, self.moving_variance.data,
                            bool(training and self.trainable), self.momentum, self.epsilon)
