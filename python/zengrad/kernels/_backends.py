"""Which implementation runs the kernels: the registry, the automatic choice, the switches.

Backends are namespaces of functions that take arguments already checked by `_validate`.
Auto order: cpp, then numba, then numpy; the environment variable ZENGRAD_BACKEND names one.
`use_backend` is scoped to the current thread (and asyncio task); `set_backend` changes the
process-wide default.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import types
import warnings

AUTO_ORDER = ("cpp", "numba", "numpy")
KNOWN = ("cpp", "numba", "numpy")

_loaded: dict[str, types.SimpleNamespace] = {}
_why_unavailable: dict[str, str] = {}
_default: str | None = None
_scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar("zengrad_backend", default=None)


def _load(name: str):
    """Import backend `name` once; None (and the reason remembered) when it cannot load."""
    if name in _loaded:
        return _loaded[name]
    if name in _why_unavailable:
        return None
    try:
        module = importlib.import_module(f"zengrad.kernels._{name}_backend")
        _loaded[name] = module.BACKEND
        return module.BACKEND
    except Exception as exc:  # an import error, a missing runtime, a broken build: all mean "not here"
        _why_unavailable[name] = f"{type(exc).__name__}: {exc}"
        return None


def available_backends() -> list[str]:
    """The backends that load on this machine, in the automatic order."""
    return [name for name in KNOWN if _load(name) is not None]


def unavailable_reasons() -> dict[str, str]:
    available_backends()
    return dict(_why_unavailable)


def _check(func: str, name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{func}(): argument 'name' must be a str, got {type(name).__name__}")
    name = name.lower()
    if name not in KNOWN:
        raise ValueError(f"{func}(): argument 'name' must be one of {list(KNOWN)}, got {name!r}; "
                         f"available here: {available_backends()}")
    if _load(name) is None:
        raise ValueError(f"{func}(): argument 'name' must be an available backend, got {name!r} "
                         f"({_why_unavailable[name]}); available here: {available_backends()}")
    return name


def _auto() -> str:
    requested = os.environ.get("ZENGRAD_BACKEND")
    if requested:
        return _check("ZENGRAD_BACKEND", requested)
    for name in AUTO_ORDER:
        if _load(name) is not None:
            if name != AUTO_ORDER[0]:
                warnings.warn(f"zengrad: the compiled 'cpp' backend is unavailable "
                              f"({_why_unavailable.get('cpp')}); using {name!r}", RuntimeWarning, stacklevel=3)
            return name
    raise RuntimeError("no zengrad backend could be loaded")  # numpy always loads


def get_backend() -> str:
    """The name of the backend that kernels called from here will run on."""
    global _default
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _default is None:
        _default = _auto()
    return _default


def set_backend(name: str) -> None:
    """Make `name` the process-wide default backend."""
    global _default
    _default = _check("set_backend", name)


@contextlib.contextmanager
def use_backend(name: str):
    """Run the body of the `with` block on backend `name` (this thread only)."""
    name = _check("use_backend", name)
    token = _scoped.set(name)
    try:
        yield name
    finally:
        _scoped.reset(token)


def current():
    return _loaded[get_backend()]
