"""The functional API: validate once, find the workspace, dispatch to a backend.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import _checks, backends
from .params import Grads, Params
from .workspace import Workspace

# Workspaces cached per Params object and (T, B). A handful covers the usual mix
# (full training windows, a shorter last window, evaluation batches).
_CACHE_SIZE = 4
_workspaces: "weakref.WeakKeyDictionary[Params, dict]" = weakref.WeakKeyDictionary()


def get_workspace(params: Params, T: int, B: int) -> Workspace:
    """The cached Workspace for ``params`` and sequences of T steps in batches of B.

    One cache serves one thread: threads that share a Params object pass their own
    ``workspace=`` to ``loss_and_grad``.
    """
    cache = _workspaces.setdefault(params, {})
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
    if grads.h0.shape != (B, params.hidden_size):
        raise ValueError(f"grads: expected grads.h0 of shape (B, H) = "
                         f"{(B, params.hidden_size)}, got {grads.h0.shape}")
    return grads


def _run_forward(kernels, params: Params, x, h0, ws: Workspace) -> None:
    if h0 is None:
        ws.s[0].fill(0.0)
        h0 = ws.s[0]
    kernels.forward(params, x, h0, ws)


def forward(params: Params, x, h0=None, *, backend="auto"):
    """Run the RNN over a sequence.

    Parameters
    ----------
    params : Params
    x : ndarray (T, B, D) of the params' dtype, or integer token ids (T, B)
    h0 : ndarray (B, H), optional
        The initial state s_0; zeros when omitted.
    backend : str
        "auto" or one of ``available_backends()``.

    Returns
    -------
    o : ndarray (T, B, O)
        Outputs o_t = c + V s_t (the logits of a cross-entropy model).
    h_T : ndarray (B, H)
        The final state s_T, to carry into the next call.
    Both are fresh arrays that later calls leave alone.
    """
    params = _checks.check_params(params)
    kernels = backends.get(backend)
    x = _checks.check_x(params, x)
    T, B = x.shape[:2]
    h0 = _checks.check_state(params, h0, B)
    ws = get_workspace(params, T, B)
    _run_forward(kernels, params, x, h0, ws)
    return ws.o.copy(), ws.s[T].copy()


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
    h0 : ndarray (B, H), optional
        The initial state s_0; zeros when omitted.
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
    grads : Grads
        dL/dU, dL/dW, dL/db, dL/dV, dL/dc as views of ``grads.data``, and ``grads.h0``
        = dL/dh0 (B, H). Unless ``grads`` was passed, these belong to the workspace and
        the next call with the same workspace overwrites them.
    h_T : ndarray (B, H)
        The final state s_T, a view into the workspace (overwritten by the next call;
        passing it back as ``h0`` is safe).
    """
    params = _checks.check_params(params)
    kernels = backends.get(backend)
    _checks.check_choice(loss, _checks.LOSSES, "loss")
    _checks.check_choice(reduction, _checks.REDUCTIONS, "reduction")
    x = _checks.check_x(params, x)
    T, B = x.shape[:2]
    y = _checks.check_y(params, y, loss, T, B)
    h0 = _checks.check_state(params, h0, B)
    ws = _check_workspace(workspace, params, T, B)
    grads = _check_grads(grads, params, B) or ws.grads
    _run_forward(kernels, params, x, h0, ws)
    value = kernels.loss(loss, reduction, y, ws)
    kernels.backward(params, x, ws, grads)
    return value, grads, ws.s[T]


def sgd_step(params: Params, grads: Params, lr) -> Params:
    """The derivation's update, theta <- theta - lr * dL/dtheta, in place on params.data.

    Returns ``params``.
    """
    params = _checks.check_params(params)
    if not isinstance(grads, Params) or not params.same_layout(grads):
        raise TypeError(f"grads: expected gradients of the params' layout ({params!r}), "
                        f"got {grads!r}")
    lr = _checks.check_learning_rate(lr)
    params.data -= lr * grads.data
    return params
