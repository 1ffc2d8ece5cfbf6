"""Weight initialisers (Keras names), drawing from zengrad.random.generator()."""
from __future__ import annotations

import math

import numpy as np

from .. import random as zrandom


def _fans(shape):
    """fan_in, fan_out as Keras computes them: Dense (in, out); Conv (kh, kw, in, out)."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(scale, mode):
    def init(shape, dtype):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        limit = math.sqrt(3.0 * scale / max(1.0, n))
        return zrandom.generator().uniform(-limit, limit, size=shape).astype(dtype)
    return init


def _truncated_normal(scale, mode):
    def init(shape, dtype):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        # Keras truncates at two standard deviations; .8796 is the stddev of that truncated unit normal
        std = math.sqrt(scale / max(1.0, n)) / 0.87962566103423978
        gen = zrandom.generator()
        out = gen.standard_normal(size=shape)
        bad = np.abs(out) > 2.0
        while bad.any():
            out[bad] = gen.standard_normal(size=int(bad.sum()))
            bad = np.abs(out) > 2.0
        return (out * std).astype(dtype)
    return init


_INITIALIZERS = {
    "zeros": lambda shape, dtype: np.zeros(shape, dtype),
    "ones": lambda shape, dtype: np.ones(shape, dtype),
    "glorot_uniform": _uniform(1.0, "fan_avg"),
    "glorot_normal": _truncated_normal(1.0, "fan_avg"),
    "he_uniform": _uniform(2.0, "fan_in"),
    "he_normal": _truncated_normal(2.0, "fan_in"),
    "lecun_uniform": _uniform(1.0, "fan_in"),
    "lecun_normal": _truncated_normal(1.0, "fan_in"),
}


def get(owner, identifier):
    """A callable (shape, dtype) -> np.ndarray from a Keras name or a callable."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _INITIALIZERS:
        return _INITIALIZERS[identifier.lower()]
    raise ValueError(f"{owner}: unknown initializer {identifier!r}; known: {sorted(_INITIALIZERS)} "
                     "or a callable (shape, dtype) -> array")
