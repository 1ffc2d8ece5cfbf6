"""zengrad: a compiled-kernel neural-network engine for Python."""
from . import kernels
from ._runtime import get_num_threads, info, set_num_threads

__version__ = "0.1.0"

__all__ = ["__version__", "info", "kernels", "set_num_threads", "get_num_threads"]
