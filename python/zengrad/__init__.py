"""zengrad: a compiled-kernel neural-network engine for Python."""
__version__ = "0.1.0"

from . import kernels  # noqa: E402  (the version must exist before the submodules load)
from ._runtime import get_num_threads, info, set_num_threads  # noqa: E402

__all__ = ["__version__", "info", "kernels", "set_num_threads", "get_num_threads"]
