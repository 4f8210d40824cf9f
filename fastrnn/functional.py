"""The functional API: validate once, find the workspace, dispatch to a backend.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
"""
from __future__ import annotations

import math
import threading
import weakref

import numpy as np

from . import _checks, backends
from ._contract import STEP_BAD_INPUT, STEP_BAD_OUTPUT
from .params import Grads, Params, allocate
from .workspace import Workspace

# Workspaces cached per thread, Params object and (T, B). A handful covers the usual mix
# (full training windows, a shorter last window, evaluation batches). Each thread has
# caches of its own: the kernels release the GIL, and threads sharing one Params object
# must not share the buffers a pass writes.
_CACHE_SIZE = 4


class _Caches(threading.local):
    def __init__(self):
        self.sequences: "weakref.WeakKeyDictionary[Params, dict]" = \
            weakref.WeakKeyDictionary()
        # Streaming steps keep theirs apart, so that a step leaves the final state and
        # the gradients of a sequence of one step alone.
        self.steps: "weakref.WeakKeyDictionary[Params, dict]" = weakref.WeakKeyDictionary()


_caches = _Caches()


def get_workspace(params: Params, T: int, B: int) -> Workspace:
    """The calling thread's cached Workspace for ``params`` and sequences of T steps in
    batches of B (each thread has its own, so threads may share a Params object)."""
    return _cached_workspace(_caches.sequences, params, T, B)


def _step_workspace(params: Params, B: int) -> Workspace:
    """The calling thread's cached Workspace of streaming steps of ``params`` in batches
    of B."""
    return _cached_workspace(_caches.steps, params, 1, B)


def _cached_workspace(caches, params: Params, T: int, B: int) -> Workspace:
    cache = caches.setdefault(params, {})
    ws = cache.get((T, B))
    if ws is None or not ws.fits(params, T, B):
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        ws = cache[(T, B)] = Workspace(params, T, B)
    return ws


def _check_workspace(workspace, params: Params, T: int, B: int) -> Workspace:
    if workspace is None:
        return get_workspace(params, T, B)
    if not isinstance(workspace, Workspace):
        raise TypeError(f"workspace: expected fastrnn.Workspace, got "
                        f"{type(workspace).__name__}")
    if not workspace.fits(params, T, B):
        raise ValueError(
            f"workspace: expected one for T={T}, B={B}, cell={params.cell!r}, "
            f"dtype={params.dtype.name} and the params' sizes, got {workspace!r}")
    return workspace


def _check_grads(grads, params: Params, B: int) -> Grads | None:
    if grads is None:
        return None
    if not isinstance(grads, Grads) or not params.same_layout(grads):
        raise TypeError(f"grads: expected fastrnn.Grads of the params' layout ({params!r}), "
                        f"got {grads!r}")
    shape = params.state_shape(B)
    if grads.h0.shape != shape:
        raise ValueError(f"grads: expected grads.h0 of the state's shape {shape}, got "
                         f"{grads.h0.shape}")
    return grads


def _initial_state(state, ws: Workspace):
    """The initial (h0, c0) as (n, B, H) arrays (c0 None but for the LSTM).

    A missing state is zeros, written into the final-state buffers: each cell reads its
    h0 before any cell writes its h_T, so those may serve as h0 (and so may an h_T that
    the caller passes back).
    """
    if state is None:
        ws.h_T.fill(0.0)
        ws.c_T.fill(0.0)
        return ws.h_T, (ws.c_T if ws.has_cell_state else None)
    h0, c0 = state if ws.has_cell_state else (state, None)
    shape = ws.h_T.shape
    return h0.reshape(shape), (None if c0 is None else c0.reshape(shape))


def _copy_state(state):
    if isinstance(state, tuple):
        return tuple(part.copy() for part in state)
    return state.copy()


def _shaped_like(state, given):
    """state, each part reshaped as the caller gave the initial state: PyTorch's (1, B, H)
    for one layer in one direction stays (1, B, H)."""
    if given is None:
        return state
    if isinstance(state, tuple):
        return tuple(part.reshape(np.shape(g)) for part, g in zip(state, given))
    return state.reshape(np.shape(given))


def forward(params: Params, x, h0=None, *, backend="auto"):
    """Run the RNN over a sequence.

    Parameters
    ----------
    params : Params
    x : ndarray (T, B, D) of the params' dtype, or integer token ids (T, B)
    h0 : ndarray, or a pair (h0, c0) for the LSTM, optional
        The initial state s_0 of ``params.state_shape(B)``: (B, H) for one layer in one
        direction, else (num_layers * directions, B, H) in PyTorch's order. PyTorch's
        (1, B, H) is accepted for one layer in one direction too. Zeros when omitted.
    backend : str
        "auto" or one of ``available_backends()``.

    Returns
    -------
    o : ndarray (T, B, O)
        Outputs o_t = c + V s_t (the logits of a cross-entropy model).
    h_T : ndarray, or a pair (h_T, c_T) for the LSTM
        The final state s_T, shaped like h0 (``params.state_shape(B)`` when h0 is
        omitted), to carry into the next call.
    Both are fresh arrays that later calls leave alone. Params, x and h0 are checked to
    be finite, and FloatingPointError is raised if the outputs overflow nevertheless.
    """
    params = _checks.check_params(params)
    kernels = backends.get(backend)
    x = _checks.check_x(params, x)
    T, B = x.shape[:2]
    given, h0 = h0, _checks.check_state(params, h0, B)
    ws = get_workspace(params, T, B)
    kernels.forward(params, x, *_initial_state(h0, ws), ws)
    final = ws.final_state()
    parts = final if isinstance(final, tuple) else (final,)
    if not all(map(_checks.all_finite, (ws.o, *parts))):
        raise FloatingPointError("o: the outputs or the final state overflowed with finite "
                                 "params, x and h0 (weights too large)")
    return ws.o.copy(), _shaped_like(_copy_state(final), given)


def loss_and_grad(params: Params, x, y, h0=None, *, loss="cross_entropy", reduction="sum",
                  backend="auto", workspace=None, grads=None):
    """The loss and its gradient with respect to every parameter and to h0, by BPTT.

    Parameters
    ----------
    params : Params
    x : ndarray (T, B, D) of the params' dtype, or integer token ids (T, B) in [0, D)
    y : ndarray
        Integer class ids (T, B) in [0, O) for ``loss="cross_entropy"`` (softmax over
        o_t), float targets (T, B, O) for ``loss="mse"`` (L_t = ||o_t - y_t||^2, no 1/2).
    h0 : ndarray, or a pair (h0, c0) for the LSTM, optional
        The initial state s_0 of ``params.state_shape(B)`` (see ``forward``); zeros when
        omitted.
    loss : {"cross_entropy", "mse"}
    reduction : {"sum", "mean"}
        "sum" is the derivation's L = sum_t L_t; "mean" divides by the number of terms,
        as PyTorch does (T * B for cross-entropy, T * B * O for mse).
    backend : str
        "auto" or one of ``available_backends()``.
    workspace : Workspace, optional
        Buffers for this (T, B); by default one cached per params and size.
    grads : Grads, optional
        Where to write the gradients; by default the workspace's own.

    Returns
    -------
    loss : float
        Always finite: params are checked first (ValueError naming ``params`` when one
        is NaN or infinite), and a loss that overflows raises FloatingPointError naming
        what overflowed: the outputs (weights too large), or the squared error of targets
        y far larger than the outputs.
    grads : Grads
        dL/dU, dL/dW, dL/db, dL/dV, dL/dc (and every other layer's and direction's) as
        views of ``grads.data``, and ``grads.h0`` = dL/dh0 (``grads.c0`` = dL/dc0 for
        the LSTM), shaped like the state. Unless ``grads`` was passed, these belong to
        the workspace and the next call with the same workspace overwrites them.
    h_T : ndarray, or a pair (h_T, c_T) for the LSTM
        The final state s_T, shaped like h0, views into the workspace (overwritten by
        the next call; passing them back as ``h0`` is safe).
    """
    params = _checks.check_params(params)
    kernels = backends.get(backend)
    _checks.check_choice(loss, _checks.LOSSES, "loss")
    _checks.check_choice(reduction, _checks.REDUCTIONS, "reduction")
    x = _checks.check_x(params, x)
    T, B = x.shape[:2]
    y = _checks.check_y(params, y, loss, T, B)
    given, h0 = h0, _checks.check_state(params, h0, B)
    ws = _check_workspace(workspace, params, T, B)
    grads = _check_grads(grads, params, B) or ws.grads
    kernels.forward(params, x, *_initial_state(h0, ws), ws)
    value = _checks.check_loss(kernels.loss(loss, reduction, y, ws), ws.o, y, loss)
    kernels.backward(params, x, ws, grads)
    return value, grads, _shaped_like(ws.final_state(), given)


def _check_out_buffer(buf, shape, dtype, name: str, also=None) -> None:
    """A writable C-contiguous buffer of ``shape`` (or of ``also``) and ``dtype``."""
    if (not isinstance(buf, np.ndarray) or buf.shape not in (shape, also)
            or buf.dtype != dtype or not buf.flags.c_contiguous or not buf.flags.writeable):
        raise ValueError(f"out: expected {name} to be a writable C-contiguous {dtype.name} "
                         f"array of shape {shape}, got {_checks.describe(buf)}")


def _check_step_out(out, params: Params, B: int):
    """(o_out, h_out): new buffers, or the caller's checked; h_out is a pair for the LSTM.

    The caller's h_out may have PyTorch's (1, B, H) for one layer in one direction, as h
    may: the kernels get (n, B, H) views of it (see ``_cell_major``)."""
    o_shape, h_shape = (B, params.output_size), params.state_shape(B)
    torch_shape = (1,) + h_shape if len(h_shape) == 2 else None
    if out is None:
        o_out = np.empty(o_shape, dtype=params.dtype)
        h_out = np.empty(h_shape, dtype=params.dtype)
        if params.has_cell_state:
            h_out = (h_out, np.empty(h_shape, dtype=params.dtype))
        return o_out, h_out
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"out: expected a pair (o_out, h_out), got {type(out).__name__}")
    o_out, h_out = out
    _check_out_buffer(o_out, o_shape, params.dtype, "o_out")
    if params.has_cell_state:
        if not isinstance(h_out, tuple) or len(h_out) != 2:
            raise TypeError(f"out: expected h_out to be a pair (h, c) for an LSTM, got "
                            f"{_checks.describe(h_out)}")
        for name, buf in zip(("h_out[0]", "h_out[1]"), h_out):
            _check_out_buffer(buf, h_shape, params.dtype, name, torch_shape)
    else:
        _check_out_buffer(h_out, h_shape, params.dtype, "h_out", torch_shape)
    return o_out, h_out


def _parts(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two C-contiguous arrays of one size start at the same address."""
    return a is b or (a.nbytes == b.nbytes and a.__array_interface__["data"][0]
                      == b.__array_interface__["data"][0])


def _check_out_apart(o_out, h_out, h) -> None:
    """The out buffers in separate memory, and each part of h_out either one of the parts
    of the state h itself (an update in place; the LSTM's h and c may swap) or apart from
    them: the kernels write a cell's new state while the next cells still read the old."""
    names = ("o_out", "h_out[0]", "h_out[1]") if isinstance(h_out, tuple) else \
        ("o_out", "h_out")
    outs = (o_out,) + _parts(h_out)
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            if np.may_share_memory(outs[i], outs[j]):
                raise ValueError(f"out: expected o_out and h_out in separate memory, got "
                                 f"{names[i]} overlapping {names[j]}")
    for name, out in zip(names[1:], outs[1:]):
        for part in _parts(h):
            if np.may_share_memory(out, part) and not _same_memory(out, part):
                raise ValueError(f"out: expected h_out to be h itself or apart from it, got "
                                 f"{name} partly overlapping the state h")


def _check_step_input(params: Params, x_t) -> np.ndarray:
    """x_t: one token id, (B,) token ids or a (B, D) block; returned as a batch.

    Finiteness is left to the kernel, which reports it (see ``_check_step_status``).
    """
    x_t = _checks._as_array(x_t, "x_t")
    D = params.input_size
    if x_t.size == 0:
        raise ValueError(f"x_t: expected a token id, (B,) token ids or a (B, {D}) block, "
                         f"B >= 1, got {_checks.describe(x_t)}")
    if x_t.dtype.kind in "iu" and x_t.ndim <= 1:
        return _checks.check_x(params, x_t.reshape(1, -1), "x_t")[0]
    if x_t.dtype.kind != "f" or x_t.ndim != 2 or x_t.shape[1] != D or x_t.shape[0] == 0:
        raise ValueError(f"x_t: expected a (B, {D}) block of {params.dtype.name}, one token "
                         f"id or (B,) token ids, got {_checks.describe(x_t)}")
    if x_t.dtype != params.dtype:
        raise TypeError(f"x_t: expected dtype {params.dtype.name} (the params' dtype), got "
                        f"{x_t.dtype.name}")
    return np.ascontiguousarray(x_t)


def _check_step_status(status: int, params: Params, h) -> None:
    """Turn a kernel's step status into the error it stands for."""
    if status == STEP_BAD_INPUT:
        raise ValueError("x_t: expected finite values, got NaN or Inf")
    if status == STEP_BAD_OUTPUT:
        _checks.check_finite(params.data, "params")
        for part in (h if isinstance(h, tuple) else (h,)):
            _checks.check_finite(part, "h")
        raise FloatingPointError("o_t: the output overflowed with finite params, state and "
                                 "input (weights too large)")


def _step(kernels, params: Params, x_t, state, o_out, state_out) -> int:
    """One step; state and state_out are pairs (h, c) of (n, B, H) arrays (c None but for
    the LSTM), state_out may be state. Returns a step status."""
    ws = _step_workspace(params, x_t.shape[0])
    return kernels.step(params, x_t, state[0], state[1], o_out, state_out[0], state_out[1],
                        ws)


def _cell_major(params: Params, state):
    """A state as the stack kernels take it: a pair of (n, B, H) views (c None)."""
    h, c = state if params.has_cell_state else (state, None)
    shape = (params.num_layers * params.num_directions,) + h.shape[-2:]
    return h.reshape(shape), (None if c is None else c.reshape(shape))


def _zeros(shape, dtype, argument: str) -> np.ndarray:
    """np.zeros(shape, dtype), or an error naming ``argument`` that says its bytes when
    it cannot be allocated (see ``params.allocate``)."""
    return allocate(math.prod(shape), dtype,
                    lambda: f"{argument}: a buffer of shape {shape}").reshape(shape)


def _zero_state(params: Params, B: int, argument: str):
    shape = params.state_shape(B)
    if params.has_cell_state:
        return (_zeros(shape, params.dtype, argument), _zeros(shape, params.dtype, argument))
    return _zeros(shape, params.dtype, argument)


def step(params: Params, x_t, h=None, *, out=None, backend="auto"):
    """Advance the network by one time step, for streaming (online) inference.

    Parameters
    ----------
    params : Params
    x_t : int, ndarray (B,) of token ids, or ndarray (B, D) of the params' dtype
    h : ndarray, or a pair (h, c) for the LSTM, optional
        The state s_{t-1} of ``params.state_shape(B)``; zeros when omitted.
    out : (o_out, h_out), optional
        Buffers of shapes (B, O) and the state's (a pair for the LSTM) to write o_t and
        s_t into; with them, and x_t given as an array, the call allocates nothing.
        ``h_out`` may be ``h`` itself, to update the state in place.
    backend : str

    Returns
    -------
    (o_t, h_t)
        The output o_t = c + V s_t (B, O) and the new state s_t, shaped like ``h``
        (``out`` when given).

    For a loop over many steps, ``Stream`` makes these checks once. A bidirectional
    network has no streaming step: its reverse direction needs the whole sequence.
    """
    params = _checks.check_params(params, finite=False)
    _check_streamable(params)
    kernels = backends.get(backend, backends.step_kind(params))
    x_t = _check_step_input(params, x_t)
    B = x_t.shape[0]
    given = h
    h = _zero_state(params, B, "x_t") if h is None else \
        _checks.check_state(params, h, B, "h")
    o_out, h_out = _check_step_out(out, params, B)
    if out is not None:
        _check_out_apart(o_out, h_out, h)
    status = _step(kernels, params, x_t, _cell_major(params, h), o_out,
                   _cell_major(params, h_out))
    _check_step_status(status, params, h)
    return o_out, (h_out if out is not None else _shaped_like(h_out, given))


def _check_streamable(params: Params) -> None:
    if params.bidirectional:
        raise ValueError("params: a bidirectional network cannot run step by step (its "
                         "reverse direction reads the sequence from the end); use forward")
