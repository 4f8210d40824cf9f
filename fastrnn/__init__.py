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
           "gradcheck", "init_params", "loss_and_grad", "optim", "sgd_step", "step"]
