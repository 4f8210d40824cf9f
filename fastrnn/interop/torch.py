"""PyTorch interop: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` + ``nn.Linear`` <-> Params.

Any number of layers, one or two directions. Layer k in direction d of the module holds
``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (with
``_reverse`` appended for the reverse direction); they map to the Params tensors of the
same layer and direction (``Params.layers[k * dirs + d]``, named U, W, b, b_hh plus
``fastrnn.params.suffix(k, d)``): U = weight_ih, W = weight_hh. The gate blocks are
already in PyTorch's order (LSTM i, f, g, o; GRU r, z, n), so they are copied as they are.
The Linear o_t = h_t A^T + bias reads the top layer's states, both directions side by
side, so V = A and c = bias. ``nn.RNN``'s nonlinearity "tanh" or "relu" is the cell.

Biases. The vanilla RNN and the LSTM only ever use bias_ih + bias_hh, so Params keeps
their sum, b; exporting puts all of b into bias_ih and zeros into bias_hh. The GRU's
reset gate scales W_hn h + b_hn, so its two biases differ in effect: b = bias_ih and
b_hh = bias_hh, both kept. Hence ``from_torch(*to_torch(p))`` returns p's numbers
exactly (the exported bias_hh is zero, and b + 0 = b), while ``to_torch(from_torch(m,
linear))`` gives a module with exactly m's parameters, and outputs, for the GRU, but for
the vanilla RNN and the LSTM one that computes m's outputs only up to rounding: it adds
the summed bias once instead of bias_ih and bias_hh separately.

Only weights are read: ``batch_first`` and ``dropout`` are ignored (fastrnn is
time-major and applies no dropout), and the module may live on any device. The modules
``to_torch`` builds are time-major (``batch_first=False``) and have no dropout.
"""
from __future__ import annotations

import numpy as np

from ..params import Params

_NONLINEARITIES = ("tanh", "relu")
_MODES = {"RNN_TANH": "tanh", "RNN_RELU": "relu", "LSTM": "lstm", "GRU": "gru"}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("fastrnn.interop needs PyTorch: pip install torch") from exc
    return torch


def _names(layer: int, direction: int) -> tuple[str, str, str, str]:
    """PyTorch's (weight_ih, weight_hh, bias_ih, bias_hh) names for one layer and direction."""
    s = f"_l{layer}" + ("_reverse" if direction else "")
    return "weight_ih" + s, "weight_hh" + s, "bias_ih" + s, "bias_hh" + s


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def from_torch(module, linear) -> Params:
    """Params holding the weights of a PyTorch recurrent module and its output layer.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        Any ``num_layers`` and ``bidirectional``; ``bias=True`` and, for the LSTM,
        ``proj_size=0``. ``batch_first`` and ``dropout`` are ignored.
    linear : torch.nn.Linear
        The output layer, with ``in_features = (2 if bidirectional else 1) * hidden_size``
        and a bias.

    Returns
    -------
    Params
        With the cell, sizes and dtype (float32 or float64) of ``module``'s weights.
    """
    torch = _torch()
    if not isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
        raise TypeError("module: expected torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, "
                        f"got {type(module).__name__}")
    if not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"linear: expected torch.nn.Linear, got {type(linear).__name__}")
    if not module.bias:
        raise ValueError("module: expected bias=True, got bias=False")
    if module.proj_size:
        raise ValueError(f"module: expected proj_size=0, got proj_size={module.proj_size}")
    if linear.bias is None:
        raise ValueError("linear: expected bias=True, got bias=False")
    dirs = 2 if module.bidirectional else 1
    if linear.in_features != dirs * module.hidden_size:
        raise ValueError(f"linear: expected in_features = {dirs * module.hidden_size} "
                         f"(the module's directions x hidden_size), got {linear.in_features}")
    dtype = module.weight_hh_l0.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"module: expected float32 or float64 weights, got {dtype}")
    if linear.weight.dtype != dtype:
        raise TypeError(f"linear: expected {dtype} weights like the module's, got "
                        f"{linear.weight.dtype}")

    params = Params(module.input_size, module.hidden_size, linear.out_features,
                    cell=_MODES[module.mode], num_layers=module.num_layers,
                    bidirectional=module.bidirectional,
                    dtype=np.float64 if dtype == torch.float64 else np.float32)
    for k in range(params.num_layers):
        for d in range(dirs):
            layer = params.layers[k * dirs + d]
            w_ih, w_hh, b_ih, b_hh = (_numpy(getattr(module, name)) for name in _names(k, d))
            layer.U[...] = w_ih
            layer.W[...] = w_hh
            if params.cell == "gru":
                layer.b[...] = b_ih
                layer.b_hh[...] = b_hh
            else:
                layer.b[...] = b_ih + b_hh
    params.V[...] = _numpy(linear.weight)
    params.c[...] = _numpy(linear.bias)
    return params


def to_torch(params: Params):
    """PyTorch modules computing what ``params`` does.

    Parameters
    ----------
    params : Params
        Any cell but "sigmoid", which no PyTorch module computes.

    Returns
    -------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        ``nn.RNN(nonlinearity=cell)`` for "tanh" and "relu", with params' ``num_layers``,
        ``bidirectional`` and dtype; time-major (``batch_first=False``).
    linear : torch.nn.Linear
        The output layer, (V, c).
    """
    torch = _torch()
    if not isinstance(params, Params):
        raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
    if params.cell == "sigmoid":
        raise ValueError(f"params: torch.nn.RNN supports nonlinearities {_NONLINEARITIES} "
                         "and no PyTorch module computes cell 'sigmoid'")
    dtype = torch.float64 if params.dtype == np.float64 else torch.float32
    shape = dict(num_layers=params.num_layers, bidirectional=params.bidirectional, dtype=dtype)
    if params.cell in _NONLINEARITIES:
        module = torch.nn.RNN(params.input_size, params.hidden_size, nonlinearity=params.cell,
                              **shape)
    else:
        module_type = torch.nn.LSTM if params.cell == "lstm" else torch.nn.GRU
        module = module_type(params.input_size, params.hidden_size, **shape)
    linear = torch.nn.Linear(params.V.shape[1], params.output_size, dtype=dtype)
    dirs = params.num_directions
    with torch.no_grad():
        for k in range(params.num_layers):
            for d in range(dirs):
                layer = params.layers[k * dirs + d]
                w_ih, w_hh, b_ih, b_hh = (getattr(module, name) for name in _names(k, d))
                w_ih.copy_(torch.from_numpy(layer.U))
                w_hh.copy_(torch.from_numpy(layer.W))
                b_ih.copy_(torch.from_numpy(layer.b))
                if layer.b_hh is None:
                    b_hh.zero_()
                else:
                    b_hh.copy_(torch.from_numpy(layer.b_hh))
        linear.weight.copy_(torch.from_numpy(params.V))
        linear.bias.copy_(torch.from_numpy(params.c))
    return module, linear
