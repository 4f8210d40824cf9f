"""Validation of public inputs, shared by every backend.

Each function checks one argument once, before any computation, and returns it prepared
for the kernels: a C-contiguous array of the params' dtype in the machine's byte order,
token ids as int64. Errors name the argument and give the expected and the actual value.
Nothing here allocates for an input that is already prepared, so a training step on good
input stays allocation-free.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
"""
from __future__ import annotations

import math

import numpy as np

from . import _vec
from .params import Params

_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LOSSES = ("cross_entropy", "mse")
REDUCTIONS = ("sum", "mean")


def _as_array(value, argument: str) -> np.ndarray:
    """``value`` as an array in the machine's byte order.

    Every array argument passes here first. Another byte order (big-endian data read on
    a little-endian machine, say) is converted, at the cost of a copy, so that the dtype
    checks compare like with like and the compiled kernels, which take native types
    only, never see it.
    """
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{argument}: expected an array, got {type(value).__name__}") \
                from exc
    if not value.dtype.isnative:
        return value.astype(value.dtype.newbyteorder("="))
    return value


def all_finite(a: np.ndarray) -> bool:
    """Whether every element is finite, without allocating for finite input.

    A C-contiguous float32 or float64 array is tested by a compiled loop, several times
    faster than its sum (asv's bench_checks times it). Any other is summed: the sum of
    finite numbers is finite unless it overflows, and only then is the exact, allocating
    test needed.
    """
    if a.dtype in _COMPILED_DTYPES and a.flags.c_contiguous:
        return _vec.all_finite(a.reshape(-1))
    with np.errstate(over="ignore", invalid="ignore"):
        total = a.sum()
    return bool(np.isfinite(total)) or bool(np.isfinite(a).all())


def check_finite(a: np.ndarray, argument: str) -> None:
    if a.dtype.kind == "f" and not all_finite(a):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{argument}: expected finite values, got {a[tuple(bad)]} at index "
                         f"{tuple(int(i) for i in bad)}")


def check_params(params, *, finite=True) -> Params:
    """A Params object; with ``finite``, also that every parameter is finite.

    ``step`` passes finite=False: its kernel reports a non-finite output, and only then
    are the params checked (see ``functional._check_step_status``).
    """
    if not isinstance(params, Params):
        raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
    if finite:
        check_finite(params.data, "params")
    return params


def check_loss(value: float, o: np.ndarray, y: np.ndarray, loss: str) -> float:
    """A finite loss, or a FloatingPointError that says what overflowed.

    Params and inputs are finite (checked before the pass), so a non-finite loss is an
    overflow: of the outputs o (T, B, O), the weights being too large, or, for the
    squared error, of (o - y)^2 when the targets y are larger than the outputs.
    """
    if math.isfinite(value):
        return value
    if loss == "mse" and all_finite(o):
        y_max, o_max = float(np.abs(y).max()), float(np.abs(o).max())
        if y_max > o_max:
            raise FloatingPointError(
                f"y: the squared error overflowed {o.dtype.name} (the loss is {value}): the "
                f"targets reach {y_max:.3g} in magnitude, the outputs {o_max:.3g}; scale "
                f"the targets down")
    raise FloatingPointError(
        f"loss: the loss is {value} with finite params and inputs; the outputs "
        f"overflowed (weights too large: lower the learning rate or clip gradients)")


def check_choice(value, choices, argument: str) -> str:
    if value not in choices:
        raise ValueError(f"{argument}: expected one of {choices}, got {value!r}")
    return value


def _float_block(params: Params, a: np.ndarray, argument: str) -> np.ndarray:
    if a.dtype.kind != "f":
        raise TypeError(f"{argument}: expected dtype {params.dtype.name} (the params' dtype), "
                        f"got {a.dtype.name}")
    if a.dtype != params.dtype:
        raise TypeError(f"{argument}: expected dtype {params.dtype.name} (the params' dtype), "
                        f"got {a.dtype.name}; convert one of them, mixing float32 and "
                        f"float64 is not supported")
    check_finite(a, argument)
    return np.ascontiguousarray(a)


def _token_ids(a: np.ndarray, size: int, argument: str, what: str) -> np.ndarray:
    lo, hi = _vec.min_max(np.ascontiguousarray(a))
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{argument}: expected {what} in [0, {size}), got {bad}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _is_int(a: np.ndarray) -> bool:
    return a.dtype.kind in "iu"


def check_x(params: Params, x, argument: str = "x") -> np.ndarray:
    """x: (T, B, D) floats, or (T, B) integer token ids in [0, D)."""
    x = _as_array(x, argument)
    D = params.input_size
    if _is_int(x):
        if x.ndim != 2:
            raise ValueError(f"{argument}: token ids must have shape (T, B), got shape "
                             f"{x.shape}")
    elif x.ndim != 3 or x.shape[2] != D:
        raise ValueError(f"{argument}: expected shape (T, B, {D}) with D = {D} the params' "
                         f"input size, or integer token ids of shape (T, B); got shape "
                         f"{x.shape} of dtype {x.dtype.name}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{argument}: expected at least one time step and one sequence "
                         f"(T >= 1, B >= 1), got shape {x.shape}")
    if _is_int(x):
        return _token_ids(x, D, argument, "token ids")
    return _float_block(params, x, argument)


def describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype.name} array of shape {a.shape}"
    if isinstance(a, (tuple, list)):
        return f"{type(a).__name__} of {len(a)}"
    return type(a).__name__


def _state_array(params: Params, h, shape, argument: str) -> np.ndarray:
    h = _as_array(h, argument)
    if h.shape == (1,) + shape:                  # PyTorch's (1, B, H) for one layer
        h = h[0]
    if h.shape != shape:
        what = "(B, H)" if len(shape) == 2 else "(num_layers * directions, B, H)"
        raise ValueError(f"{argument}: expected shape {what} = {shape}, got {h.shape}")
    return _float_block(params, h, argument)


def check_state(params: Params, h, B: int, argument: str = "h0"):
    """A state, or None.

    The state is an array of ``params.state_shape(B)`` ((B, H), or (n, B, H) for n
    layers and directions), and for the LSTM a pair (h, c) of such arrays.
    """
    if h is None:
        return None
    shape = params.state_shape(B)
    if params.has_cell_state:
        if not isinstance(h, (tuple, list)) or len(h) != 2:
            raise TypeError(f"{argument}: expected an LSTM state, a pair (h, c) of arrays "
                            f"of shape {shape}, got {describe(h)}")
        return (_state_array(params, h[0], shape, f"{argument}[0] (h)"),
                _state_array(params, h[1], shape, f"{argument}[1] (c)"))
    if isinstance(h, (tuple, list)):
        raise TypeError(f"{argument}: expected one array of shape {shape} for cell "
                        f"{params.cell!r}, got a {describe(h)} (a pair (h, c) is the "
                        f"state of an LSTM)")
    return _state_array(params, h, shape, argument)


def check_y(params: Params, y, loss: str, T: int, B: int) -> np.ndarray:
    """Targets: (T, B) class ids in [0, O) for cross-entropy, (T, B, O) floats for mse."""
    y = _as_array(y, "y")
    O = params.output_size
    if loss == "cross_entropy":
        if not _is_int(y):
            raise TypeError(f"y: cross-entropy expects integer class ids of shape (T, B) = "
                            f"{(T, B)}, got dtype {y.dtype.name}; float targets go with "
                            f"loss='mse'")
        if y.shape != (T, B):
            raise ValueError(f"y: expected shape (T, B) = {(T, B)} to match x, got {y.shape}")
        return _token_ids(y, O, "y", "class ids")
    if _is_int(y):
        raise TypeError(f"y: loss='mse' expects float targets of shape (T, B, O) = "
                        f"{(T, B, O)}, got dtype {y.dtype.name}")
    if y.shape != (T, B, O):
        raise ValueError(f"y: expected shape (T, B, O) = {(T, B, O)} to match x and the "
                         f"params' output size, got {y.shape}")
    return _float_block(params, y, "y")


def check_learning_rate(lr) -> float:
    if isinstance(lr, (bool, np.bool_)) or \
            not isinstance(lr, (int, float, np.integer, np.floating)):
        raise TypeError(f"lr: expected a positive number, got {lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: expected a positive finite number, got {lr!r}")
    return float(lr)
