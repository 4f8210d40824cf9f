"""Finite-difference checks of the analytic gradients."""
from __future__ import annotations

import math

import numpy as np

from . import _checks
from .functional import loss_and_grad
from .params import Grads, Params


def _loss(params, x, y, h0, loss, reduction, backend):
    return loss_and_grad(params, x, y, h0, loss=loss, reduction=reduction,
                         backend=backend)[0]


def _check_eps(eps) -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.number)):
        raise TypeError(f"eps: expected a positive finite step, got {eps!r}")
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps: expected a positive finite step, got {eps!r}")
    return float(eps)


def numeric_gradient(f, theta: np.ndarray, eps: float = 1e-4, *, at=None) -> np.ndarray:
    """dL/dtheta by the fourth-order central difference, perturbing theta in place.

    (-f(+2e) + 8 f(+e) - 8 f(-e) + f(-2e)) / (12 e) has truncation error O(e^4), so a
    fairly large step keeps the rounding error of the loss small as well. The differences
    are taken first, so that a loss that does not change gives exactly 0. ``theta`` is a
    writable float64 array of any layout (a float32 entry would round the steps), which
    ``f`` reads. Each entry costs four calls of ``f``.

    ``at`` (optional): flat positions in ``theta`` (C order) to differentiate at; the
    result is then the 1-D array of those entries, in that order.
    """
    if not isinstance(theta, np.ndarray) or theta.dtype != np.float64:
        raise TypeError(f"theta: expected a float64 array, got {_checks.describe(theta)}")
    if not theta.flags.writeable:
        raise ValueError("theta: expected a writable array (it is perturbed in place), got a "
                         "read-only one")
    eps = _check_eps(eps)
    positions = list(np.ndindex(theta.shape)) if at is None else \
        list(zip(*np.unravel_index(np.asarray(at, dtype=np.intp), theta.shape)))
    grad = np.empty(len(positions))
    for n, i in enumerate(positions):
        saved = theta[i]
        values = []
        for k in (2, 1, -1, -2):
            theta[i] = saved + k * eps
            values.append(f())
        theta[i] = saved
        grad[n] = (8 * (values[1] - values[2]) - (values[0] - values[3])) / (12 * eps)
    return grad.reshape(theta.shape) if at is None else grad


def relative_error(numeric: np.ndarray, analytic: np.ndarray) -> float:
    """max |numeric - analytic| / max(|numeric|, |analytic|) over a tensor; 0 if both are 0,
    inf if either has a NaN or an infinite entry (so that it fails any tolerance)."""
    if not (np.isfinite(numeric).all() and np.isfinite(analytic).all()):
        return math.inf
    scale = max(np.abs(numeric).max(), np.abs(analytic).max())
    return float(np.abs(numeric - analytic).max() / scale) if scale > 0 else 0.0


def _float64_state(h0):
    """h0 (an array, or a pair of them) in float64, its structure kept for the checks."""
    try:
        if isinstance(h0, (tuple, list)):
            return tuple(np.asarray(part, dtype=np.float64) for part in h0)
        return np.asarray(h0, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"h0: expected a state of floats, got {_checks.describe(h0)}") \
            from None


def _check_grads(grads, given: Params, B: int) -> Grads:
    """A Grads of the params' cell and layout, in either dtype, for batches of B."""
    if not isinstance(grads, Grads) or grads.cell != given.cell \
            or grads.layout != given.layout:
        got = repr(grads) if isinstance(grads, Params) else _checks.describe(grads)
        raise TypeError(f"grads: expected fastrnn.Grads of the params' layout ({given!r}, "
                        f"float32 or float64), got {got}")
    shape = given.state_shape(B)
    for name in ("h0", "c0") if given.has_cell_state else ("h0",):
        part = getattr(grads, name)
        if part is None or part.shape != shape:
            raise ValueError(f"grads: expected grads.{name} of shape {shape}, got "
                             f"{None if part is None else part.shape}")
    return grads


def _check_entries(entries):
    if entries is None:
        return None
    if isinstance(entries, (bool, np.bool_)) or not isinstance(entries, (int, np.integer)) \
            or entries < 1:
        raise ValueError(f"entries: expected a positive int, or None for every entry, got "
                         f"{entries!r}")
    return int(entries)


def gradcheck(params: Params, x, y, h0=None, *, loss="cross_entropy", reduction="sum",
              eps=1e-4, backend="reference", grads=None, entries=None,
              seed=0) -> dict[str, float]:
    """Compare analytic gradients with finite differences, tensor by tensor.

    Finite differences need float64, so the check runs on float64 copies of ``params``,
    ``x``, ``y`` and ``h0`` whatever their dtype. ``grads`` (a Grads with ``h0``) is the
    analytic gradient to check; by default ``loss_and_grad`` computes it with ``backend``.
    ``h0`` is a state as ``loss_and_grad`` takes it (a pair (h0, c0) for the LSTM).

    Returns ``{name: error}`` for every parameter (U, W, b, V, c, and those of the other
    layers and directions), h0 (dL/dh0) and, for the LSTM, c0 (dL/dc0), where the error
    of a tensor is its largest absolute difference divided by its largest entry in magnitude,
    max_i |numeric_i - analytic_i| / max_i max(|numeric_i|, |analytic_i|), so that tiny
    entries of an otherwise large gradient do not dominate. A tensor whose gradient is
    exactly zero both ways has error 0, and one with a NaN or an infinite entry has error inf.

    Finite differences cost four loss evaluations per entry, every entry of every tensor by
    default. ``entries=k`` checks k entries of each tensor instead (all of a smaller one),
    drawn at random with ``seed``: for a network of any size, a check in seconds.
    """
    given = _checks.check_params(params)
    eps = _check_eps(eps)
    entries = _check_entries(entries)
    rng = np.random.default_rng(seed)
    params = given.astype(np.float64)
    x = _checks._as_array(x, "x")
    if x.dtype.kind == "f":
        x = x.astype(np.float64)
    x = _checks.check_x(params, x)
    y = _checks._as_array(y, "y")
    if y.dtype.kind == "f":
        y = y.astype(np.float64)
    B = x.shape[1]
    shape = params.state_shape(B)
    names = ("h0", "c0") if params.has_cell_state else ("h0",)
    if h0 is None:
        states = [np.zeros(shape) for _ in names]
    else:
        h0 = _checks.check_state(params, _float64_state(h0), B)
        states = [part.copy() for part in (h0 if params.has_cell_state else (h0,))]
    h0 = tuple(states) if params.has_cell_state else states[0]
    if grads is None:
        grads = loss_and_grad(params, x, y, h0, loss=loss, reduction=reduction,
                              backend=backend)[1]
    else:
        grads = _check_grads(grads, given, B)
    analytic = {name: np.array(view, dtype=np.float64) for name, view in grads.items()}
    for name in names:
        analytic[name] = np.array(getattr(grads, name), dtype=np.float64)

    def f():
        return _loss(params, x, y, h0, loss, reduction, backend)

    def error(name, theta):
        if entries is None or entries >= theta.size:
            return relative_error(numeric_gradient(f, theta, eps), analytic[name])
        at = rng.choice(theta.size, size=entries, replace=False)
        return relative_error(numeric_gradient(f, theta, eps, at=at),
                              analytic[name].reshape(-1)[at])

    return {name: error(name, theta)
            for name, theta in params.items() + list(zip(names, states))}
