"""The one source of randomness in zengrad: weight initialisation, shuffling and dropout.

`manual_seed(seed)` makes a run reproducible: the same seed gives the same initial weights,
the same batch order and the same dropout masks, hence bit-identical weights after training
on the CPU. Initial weights and batch order are drawn on the CPU whatever the device (a GPU
model starts from the same weights as a CPU one); dropout masks for GPU tensors are drawn on
the GPU by a CuPy generator per device, also seeded by manual_seed.
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
    _set_device_seed(int(seed))


def generator() -> np.random.Generator:
    """The generator every zengrad component draws from."""
    return _generator


# ---- GPU draws ----
# Each GPU gets its own CuPy generator, made on first use and seeded from the seed given to
# manual_seed (and the device index), so GPU runs are reproducible too. Drawing on the GPU does
# not touch the CPU generator: initial weights and batch order, drawn on the CPU whatever the
# device, stay the same for a seed; dropout masks drawn on a GPU differ from the CPU's.
_seed: int | None = None
_device_generators: dict = {}


def _device_generator(xp, index: int):
    gen = _device_generators.get(index)
    if gen is None:
        entropy = [_seed, index] if _seed is not None else None
        state = np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0]   # any seed CuPy takes
        with xp.cuda.Device(index):
            gen = xp.random.default_rng(int(state))
        _device_generators[index] = gen
    return gen


def uniform_like(array):
    """Uniform draws in [0, 1) of `array`'s shape on its device: float64 from the CPU generator
    for NumPy arrays, array's dtype from the device's generator for CuPy arrays."""
    from ._device import array_module

    xp = array_module(array)
    if xp is np:
        return _generator.random(array.shape)
    index = array.device.id
    with xp.cuda.Device(index):
        return _device_generator(xp, index).random(array.shape, dtype=array.dtype)


def _set_device_seed(seed: int) -> None:
    global _seed
    _seed = seed
    _device_generators.clear()
