"""zengrad: a compiled-kernel neural-network engine for Python."""
__version__ = "0.1.0"

# The version must exist before the submodules load.
from . import datasets, functional, kernels, random  # noqa: E402
from ._runtime import get_flush_denormal, get_num_threads, info, set_flush_denormal, set_num_threads  # noqa: E402
from .random import manual_seed  # noqa: E402
from .tensor import Tensor, is_grad_enabled, no_grad, tensor  # noqa: E402
# The Keras-style API sits on Tensor and functional, so it loads after them.
from . import callbacks, layers, losses, metrics, models, optimizers  # noqa: E402
from .models import Sequential  # noqa: E402

__all__ = [
    "__version__", "info", "kernels", "functional", "random", "datasets", "set_num_threads", "get_num_threads",
    "set_flush_denormal", "get_flush_denormal",
    "manual_seed", "Tensor", "tensor", "no_grad", "is_grad_enabled",
    "layers", "models", "optimizers", "losses", "metrics", "callbacks", "Sequential",
]
