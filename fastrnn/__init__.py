"""fastrnn: recurrent neural networks, fast on the CPU and readable.

The public vocabulary follows the classic derivation of the vanilla RNN:
a_t = b + W s_{t-1} + U x_t, s_t = f(a_t), o_t = c + V s_t.

The names below are imported on first use (PEP 562), so that ``import fastrnn`` and the
command line's start import neither NumPy nor Numba, and ``fastrnn.interop`` imports the
frameworks it converts from only when it is used.
"""
import importlib
import importlib.util
import sys
import types

from ._version import __version__

# Public name -> the module that defines it (a subpackage or module itself when None).
_API = {
    "Grads": "params", "Params": "params", "init_params": "params",
    "RNN": "model",
    "Stream": "stream", "forward": "functional", "get_workspace": "functional",
    "loss_and_grad": "functional", "sgd_step": "optim", "step": "functional",
    "Workspace": "workspace",
    "available_backends": "backends",
    "gradcheck": "gradcheck",
    "data": None, "diagnostics": None, "interop": None, "optim": None,
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(f".{_API[name] or name}", __name__)
        value = module if _API[name] is None else getattr(module, name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)      # any other submodule
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``fastrnn.gradcheck`` binds it
    as an attribute of the package, where ``fastrnn.gradcheck`` is the function."""

    def __setattr__(self, name, value):
        if name == "gradcheck" and isinstance(value, types.ModuleType):
            value = value.gradcheck
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
