"""Models: Sequential (Keras' compile / fit / evaluate / predict / save_weights)."""
from .sequential import Sequential

__all__ = ["Sequential"]
