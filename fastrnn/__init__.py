"""fastrnn: recurrent neural networks, fast on the CPU and readable.

The public vocabulary follows the classic derivation of the vanilla RNN:
a_t = b + W s_{t-1} + U x_t, s_t = f(a_t), o_t = c + V s_t.
"""
from . import data, diagnostics, optim
from ._version import __version__
from .backends import available_backends
from .gradcheck import gradcheck
from .kernels import Stream, forward, get_workspace, loss_and_grad, sgd_step, step
from .model import RNN
from .params import Grads, Params, init_params
from .workspace import Workspace

__all__ = ["__version__", "Grads", "Params", "RNN", "Stream", "Workspace",
           "available_backends", "data", "diagnostics", "forward", "get_workspace",
           "gradcheck", "init_params", "interop", "loss_and_grad", "optim", "sgd_step",
           "step"]

# Subpackages imported on first access (PEP 562): ``fastrnn.interop`` works after a plain
# ``import fastrnn`` without importing the frameworks it converts from.
_LAZY_SUBMODULES = ("interop",)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
