"""Activation names for `activation=` and `Activation(name)`."""
from __future__ import annotations

from .. import functional as F

_ACTIVATIONS = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": lambda x: F.softmax(x, axis=-1),
    "linear": None,
}
KNOWN = sorted(_ACTIVATIONS)


def get(owner, identifier):
    """(name, function or None) for a name, None, or a callable Tensor -> Tensor."""
    if identifier is None:
        return "linear", None
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"{owner}: unknown activation {identifier!r}; known: {KNOWN} (or None, or a callable)")
        return key, _ACTIVATIONS[key]
    if callable(identifier):
        return "custom:" + getattr(identifier, "__name__", type(identifier).__name__), identifier
    raise ValueError(f"{owner}: argument 'activation' must be a name {KNOWN}, None or a callable, "
                     f"got {identifier!r}")
