"""PyTorch interop: ``nn.RNN`` + ``nn.Linear`` <-> Params.

PyTorch's RNN computes h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), and the
Linear o_t = h_t A^T + bias, so U = W_ih, W = W_hh, b = b_ih + b_hh, V = A, c = bias.
PyTorch keeps two hidden biases where the derivation has one; exporting puts all of b
into b_ih and zeros into b_hh, which computes the same function.
"""
from __future__ import annotations

import numpy as np

from ..params import Params

_NONLINEARITIES = ("tanh", "relu")


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("fastrnn.interop needs PyTorch: pip install torch") from exc
    return torch


def from_torch(rnn, linear) -> Params:
    """Params holding the weights of a one-layer ``torch.nn.RNN`` and a ``torch.nn.Linear``.

    The dtype follows the RNN's weights (float32 or float64).
    """
    torch = _torch()
    if not isinstance(rnn, torch.nn.RNN):
        raise TypeError(f"rnn: expected torch.nn.RNN, got {type(rnn).__name__}")
    if not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"linear: expected torch.nn.Linear, got {type(linear).__name__}")
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise ValueError(f"rnn: expected one layer in one direction, got num_layers="
                         f"{rnn.num_layers}, bidirectional={rnn.bidirectional}")
    if not rnn.bias or linear.bias is None:
        raise ValueError("rnn, linear: expected modules with biases (bias=True)")
    if linear.in_features != rnn.hidden_size:
        raise ValueError(f"linear: expected in_features = {rnn.hidden_size} (the RNN's "
                         f"hidden_size), got {linear.in_features}")

    def numpy(tensor):
        return tensor.detach().cpu().numpy()

    dtype = numpy(rnn.weight_hh_l0).dtype
    params = Params(rnn.input_size, rnn.hidden_size, linear.out_features,
                    cell=rnn.nonlinearity, dtype=dtype)
    params.U[...] = numpy(rnn.weight_ih_l0)
    params.W[...] = numpy(rnn.weight_hh_l0)
    params.b[...] = numpy(rnn.bias_ih_l0) + numpy(rnn.bias_hh_l0)
    params.V[...] = numpy(linear.weight)
    params.c[...] = numpy(linear.bias)
    return params


def to_torch(params: Params):
    """``(rnn, linear)``: a ``torch.nn.RNN`` and ``torch.nn.Linear`` computing what params do.

    The modules are time-major (``batch_first=False``), like fastrnn.
    """
    torch = _torch()
    if not isinstance(params, Params):
        raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
    if params.cell not in _NONLINEARITIES:
        raise ValueError(f"params: torch.nn.RNN supports cells {_NONLINEARITIES}, got "
                         f"{params.cell!r}")
    dtype = torch.float64 if params.dtype == np.float64 else torch.float32
    rnn = torch.nn.RNN(params.input_size, params.hidden_size, nonlinearity=params.cell,
                       dtype=dtype)
    linear = torch.nn.Linear(params.hidden_size, params.output_size, dtype=dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(params.U))
        rnn.weight_hh_l0.copy_(torch.from_numpy(params.W))
        rnn.bias_ih_l0.copy_(torch.from_numpy(params.b))
        rnn.bias_hh_l0.zero_()
        linear.weight.copy_(torch.from_numpy(params.V))
        linear.bias.copy_(torch.from_numpy(params.c))
    return rnn, linear
