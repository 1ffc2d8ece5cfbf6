"""The one source of randomness in zengrad: weight initialisation, shuffling and dropout.

`manual_seed(seed)` makes a run reproducible: the same seed gives the same initial weights,
the same batch order and the same dropout masks, hence bit-identical weights after training.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reseed zengrad's random generator."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"manual_seed(): argument 'seed' must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed(): argument 'seed' must be non-negative, got {seed}")
    _generator = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The generator every zengrad component draws from."""
    return _generator
