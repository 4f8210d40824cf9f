"""Registry of the backends that implement the kernel contract.

The contract is documented in ``fastrnn.reference.kernels``. Backends are listed fastest
first; "auto" resolves to the first one that imports, unless FASTRNN_BACKEND names one.
"""
from __future__ import annotations

import functools
import importlib

from . import _config

_MODULES = {
    "numba": "fastrnn._numba.kernels",
    "reference": "fastrnn.reference.kernels",
}
_loaded: dict = {}


def _load(name: str):
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except ImportError:
            _loaded[name] = None
    return _loaded[name]


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable now, fastest first."""
    return tuple(name for name in _MODULES if _load(name) is not None)


@functools.cache
def _fastest() -> str:
    return available_backends()[0]


def resolve(backend: str = "auto") -> str:
    """The concrete backend name that ``backend`` stands for."""
    if backend == "auto":
        override = _config.backend_override()
        if override is None:
            return _fastest()
        backend, source = override, "FASTRNN_BACKEND"
    else:
        source = "backend"
    if backend not in _MODULES:
        raise ValueError(f"{source}: expected 'auto' or one of {tuple(_MODULES)}, "
                         f"got {backend!r}")
    if _load(backend) is None:
        raise ValueError(f"{source}: backend {backend!r} is not available here; "
                         f"available: {available_backends()}")
    return backend


def get(backend: str = "auto"):
    """The module implementing the kernel contract for ``backend``."""
    return _load(resolve(backend))
