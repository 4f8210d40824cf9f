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
time-major and applies no dropout, so the Params compute the module's outputs in eval
mode), and the module may live on any device that holds values (not "meta"). The
modules ``to_torch`` builds are time-major (``batch_first=False``) and have no dropout.

State dicts. ``load_state_dict(params, module_state, linear_state)`` copies the
``state_dict()`` of such a module and Linear (torch tensors or NumPy arrays, same keys,
same bias convention) into existing Params, checking every key and shape against params'
layout before it writes anything; ``state_dict(params)`` is its inverse, NumPy arrays under
PyTorch's keys, ready for ``module.load_state_dict`` on a module of the same configuration.
A state dict does not record nn.RNN's nonlinearity, so "tanh" and "relu" weights are
interchangeable there; the cell type (vanilla, LSTM or GRU) shows in the row count of
``weight_ih_l0`` (H, 4H or 3H) and is checked.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping

import numpy as np

from ..params import GATES, Params

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
        Any ``num_layers`` and ``bidirectional``; for the LSTM, ``proj_size=0``; every
        weight of one dtype. ``batch_first`` and ``dropout`` are ignored: the Params
        compute the module's outputs in eval mode. With ``bias=False`` the Params' b
        (and b_hh) are zeros.
    linear : torch.nn.Linear
        The output layer, with ``in_features = (2 if bidirectional else 1) * hidden_size``;
        without a bias (a tied output layer, say), c is zeros.

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
    if module.proj_size:
        raise ValueError(f"module: expected proj_size=0, got proj_size={module.proj_size}")
    dirs = 2 if module.bidirectional else 1
    if linear.in_features != dirs * module.hidden_size:
        raise ValueError(f"linear: expected in_features = {dirs * module.hidden_size} "
                         f"(the module's directions x hidden_size), got {linear.in_features}")
    dtype = module.weight_hh_l0.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"module: expected float32 or float64 weights, got {dtype}")
    for argument, owner in (("module", module), ("linear", linear)):
        for name, tensor in owner.named_parameters():
            if tensor.dtype != dtype:
                raise TypeError(f"{argument}: expected every weight in {dtype} (the dtype "
                                f"of module.weight_hh_l0), got {name} in {tensor.dtype}")
            if tensor.is_meta:
                raise ValueError(f"{argument}: {name} is on the meta device, which holds "
                                 f"no values; expected materialised weights")

    params = Params(module.input_size, module.hidden_size, linear.out_features,
                    cell=_MODES[module.mode], num_layers=module.num_layers,
                    bidirectional=module.bidirectional,
                    dtype=np.float64 if dtype == torch.float64 else np.float32)
    def tensor(name):
        if name.startswith("bias") and not module.bias:     # bias=False: zeros
            return 0.0
        return _numpy(getattr(module, name))

    return _fill(params, tensor, _numpy(linear.weight),
                 0.0 if linear.bias is None else _numpy(linear.bias))


def _fill(params: Params, tensor, weight, bias) -> Params:
    """Copy a module's tensors into params: ``tensor(name)`` is the array of PyTorch's
    ``name`` (weight_ih_l0, ...), weight and bias the Linear's; returns params. A bias
    may be the scalar 0.0 (a module without biases)."""
    dirs = params.num_directions
    for k in range(params.num_layers):
        for d in range(dirs):
            layer = params.layers[k * dirs + d]
            w_ih, w_hh, b_ih, b_hh = (tensor(name) for name in _names(k, d))
            layer.U[...] = w_ih
            layer.W[...] = w_hh
            if params.cell == "gru":
                layer.b[...] = b_ih
                layer.b_hh[...] = b_hh
            else:                            # summed in the wider of their dtypes
                layer.b[...] = np.add(b_ih, b_hh, dtype=np.result_type(b_ih, b_hh,
                                                                        params.dtype))
    params.V[...] = weight
    params.c[...] = bias
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


# --- state dicts -------------------------------------------------------------------------

_MODULE_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_CELL_NAMES = {1: "a vanilla RNN (nn.RNN)", 3: "a GRU", 4: "an LSTM"}
_ROWS = {1: "H", 3: "3H", 4: "4H"}


def _check_params(params: Params) -> None:
    if not isinstance(params, Params):
        raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
    if params.cell == "sigmoid":
        raise ValueError(f"params: torch.nn.RNN supports nonlinearities {_NONLINEARITIES} "
                         "and no PyTorch module computes cell 'sigmoid'")


def _module_shapes(params: Params) -> dict:
    """PyTorch key -> (expected shape, the shape in symbols) of params' module."""
    rows = _ROWS[GATES[params.cell]]
    dirs = params.num_directions
    below = {1: "H", 2: "2H"}[dirs]
    shapes = {}
    for k in range(params.num_layers):
        for d in range(dirs):
            layer = params.layers[k * dirs + d]
            w_ih, w_hh, b_ih, b_hh = _names(k, d)
            shapes[w_ih] = layer.U.shape, f"({rows}, {'D' if k == 0 else below})"
            shapes[w_hh] = layer.W.shape, f"({rows}, H)"
            shapes[b_ih] = layer.b.shape, f"({rows},)"
            shapes[b_hh] = layer.b.shape, f"({rows},)"
    return shapes


def _linear_shapes(params: Params) -> dict:
    below = {1: "H", 2: "2H"}[params.num_directions]
    return {"weight": (params.V.shape, f"(O, {below})"), "bias": (params.c.shape, "(O,)")}


def _describe(params: Params) -> str:
    kind = {"lstm": "nn.LSTM", "gru": "nn.GRU"}.get(params.cell, "nn.RNN")
    direction = "bidirectional" if params.bidirectional else "unidirectional"
    return (f"a {params.num_layers}-layer {direction} {kind}(input_size={params.input_size}, "
            f"hidden_size={params.hidden_size})")


def _array(value, argument: str, key) -> np.ndarray:
    """``value`` (a torch tensor or anything NumPy reads) as a floating-point ndarray."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{argument}: {key!r}: expected a floating-point tensor, got "
                            f"dtype {value.dtype}")
        if value.is_meta:
            raise ValueError(f"{argument}: {key!r} is on the meta device, which holds no "
                             f"values; expected a materialised tensor")
        value = value.detach().cpu()
        if value.dtype not in (torch.float16, torch.float32, torch.float64):
            value = value.to(torch.float64)           # bfloat16 etc.: NumPy has no such type
        return value.numpy()
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(f"{argument}: {key!r}: expected a floating-point tensor or array, "
                        f"got {type(value).__name__} of dtype {array.dtype}")
    return array


def _check_mapping(state, argument: str) -> None:
    if not isinstance(state, Mapping):
        raise TypeError(f"{argument}: expected a state dict (a mapping of names to tensors "
                        f"or arrays), got {type(state).__name__}")


def _check_keys(state: Mapping, expected, argument: str, what: str) -> None:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing:
        hint = ""
        prefixed = [key for key in state if isinstance(key, str)
                    and any(key.endswith("." + m) for m in missing)]
        if prefixed:
            hint = (f"; its keys look prefixed ({prefixed[0]!r}): pass the state dict of the "
                    "module itself, or strip the prefix")
        elif all(key.startswith("bias") for key in missing):
            hint = "; built with bias=False? fastrnn needs the biases"
        raise ValueError(f"{argument}: missing keys {missing} (expected the keys of {what}, "
                         f"{list(expected)}{hint})")
    if unexpected:
        raise ValueError(f"{argument}: unexpected keys {unexpected} (expected exactly the keys "
                         f"of {what}, {list(expected)})")


def _check_module_structure(params: Params, state: Mapping) -> None:
    """Projections, cell type, depth and direction: the mismatches worth a sentence."""
    argument = "module_state"
    parsed = [m for m in (_MODULE_KEY.match(key) for key in state if isinstance(key, str))
              if m is not None]
    projections = [m.group(0) for m in parsed if m.group(1) == "weight_hr"]
    if projections:
        raise ValueError(f"{argument}: holds LSTM projection weights ({projections[0]}, from "
                         "nn.LSTM(proj_size > 0)); LSTM projections are unsupported")

    if "weight_ih_l0" in state:
        w_ih = _array(state["weight_ih_l0"], argument, "weight_ih_l0")
        H = params.hidden_size
        w_hh = state.get("weight_hh_l0")
        if w_hh is not None:
            w_hh = _array(w_hh, argument, "weight_hh_l0")
            if w_hh.ndim == 2:
                H = w_hh.shape[1]
        gates, params_gates = None, GATES[params.cell]
        if w_ih.ndim == 2 and H > 0 and w_ih.shape[0] % H == 0:
            gates = w_ih.shape[0] // H
        if gates in _CELL_NAMES and gates != params_gates:
            with_h = "" if H == params.hidden_size else f" with H = {H}"
            params_h = "" if H == params.hidden_size else f" with H = {params.hidden_size}"
            raise ValueError(
                f"{argument}: holds the weights of {_CELL_NAMES[gates]}{with_h} (weight_ih_l0 "
                f"has {_ROWS[gates]} = {w_ih.shape[0]} rows), but params are a "
                f"{params.cell!r} cell{params_h} ({_ROWS[params_gates]} = "
                f"{params_gates * params.hidden_size} rows)")

    if parsed:
        layers = 1 + max(int(m.group(2)) for m in parsed)
        if layers != params.num_layers:
            raise ValueError(
                f"{argument}: holds {layers} layer{'s' if layers > 1 else ''} (keys _l0 to "
                f"_l{layers - 1}), but params have num_layers={params.num_layers}")
        bidirectional = any(m.group(3) for m in parsed)
        if bidirectional != params.bidirectional:
            if bidirectional:
                raise ValueError(f"{argument}: holds a bidirectional module (keys ending in "
                                 "_reverse), but params are unidirectional")
            raise ValueError(f"{argument}: holds a unidirectional module (no _reverse keys), "
                             "but params are bidirectional")


def _checked_arrays(state: Mapping, shapes: dict, argument: str) -> dict:
    arrays = {}
    for key, (shape, symbols) in shapes.items():
        array = _array(state[key], argument, key)
        if array.shape != shape:
            raise ValueError(f"{argument}: {key!r}: expected shape {shape} = {symbols}, got "
                             f"{array.shape}")
        arrays[key] = array
    return arrays


def load_state_dict(params: Params, module_state, linear_state) -> Params:
    """Copy a PyTorch module's and Linear's ``state_dict()`` into ``params``, in place.

    Parameters
    ----------
    params : Params
        The destination; its cell, sizes, ``num_layers`` and ``bidirectional`` must match
        the state dicts'. Any cell but "sigmoid".
    module_state : mapping
        ``module.state_dict()`` of an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (bias=True,
        no projections): ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
        ``bias_hh_l0``, ... ``_reverse``; torch tensors or NumPy arrays of floats.
    linear_state : mapping
        ``linear.state_dict()`` of the output ``nn.Linear``: ``weight`` and ``bias``.

    Returns
    -------
    Params
        ``params`` itself. The values are cast to its dtype; the biases follow
        ``from_torch`` (b = bias_ih + bias_hh, except the GRU's b = bias_ih and
        b_hh = bias_hh). Every key, shape and dtype is checked before anything is
        written, so a refused state dict leaves ``params`` untouched.
    """
    _check_params(params)
    _check_mapping(module_state, "module_state")
    _check_mapping(linear_state, "linear_state")

    _check_module_structure(params, module_state)
    module_shapes = _module_shapes(params)
    _check_keys(module_state, module_shapes, "module_state", _describe(params))
    module = _checked_arrays(module_state, module_shapes, "module_state")

    linear_shapes = _linear_shapes(params)
    _check_keys(linear_state, linear_shapes, "linear_state",
                f"nn.Linear({params.V.shape[1]}, {params.output_size})")
    linear = _checked_arrays(linear_state, linear_shapes, "linear_state")

    return _fill(params, module.__getitem__, linear["weight"], linear["bias"])


def state_dict(params: Params) -> tuple[dict, dict]:
    """``params`` as PyTorch state dicts: the inverse of ``load_state_dict``.

    Returns
    -------
    module_state : dict
        NumPy arrays (copies, of params' dtype) under the keys of the ``nn.RNN`` /
        ``nn.LSTM`` / ``nn.GRU`` that ``to_torch(params)`` builds, in its order;
        bias_ih = b and bias_hh = 0, except the GRU's bias_hh = b_hh.
    linear_state : dict
        ``weight`` = V and ``bias`` = c.

    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in module_state.items()})``
    loads them into a module of the same configuration.
    """
    _check_params(params)
    module_state = {}
    dirs = params.num_directions
    for k in range(params.num_layers):
        for d in range(dirs):
            layer = params.layers[k * dirs + d]
            w_ih, w_hh, b_ih, b_hh = _names(k, d)
            module_state[w_ih] = layer.U.copy()
            module_state[w_hh] = layer.W.copy()
            module_state[b_ih] = layer.b.copy()
            module_state[b_hh] = (np.zeros_like(layer.b) if layer.b_hh is None
                                  else layer.b_hh.copy())
    linear_state = {"weight": params.V.copy(), "bias": params.c.copy()}
    return module_state, linear_state
