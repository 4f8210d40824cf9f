"""The reference behind the kernel contract (documented in ``fastrnn.backends``).

The reference computes with its own temporaries and copies into the workspace: it is
the specification, not the fast path. Every network goes through ``stack``, which builds
it from the single-layer cells.
"""
import numpy as np

from .._contract import STEP_BAD_INPUT, STEP_BAD_OUTPUT, STEP_OK
from . import rnn, stack


def forward(params, x, h0, c0, ws):
    o, cache = stack.stack_forward(params, x, h0, c0)
    ws.o[...], ws.h_T[...] = o, cache["h_T"]
    if c0 is not None:
        ws.c_T[...] = cache["c_T"]
    ws.reference_cache = cache          # the reference keeps its own forward cache


def loss(kind, reduction, y, ws):
    L, do = rnn.loss_and_output_grad(ws.o, y, kind, reduction)
    ws.do[...] = do
    return float(L)


def backward(params, x, ws, grads):
    g = stack.stack_bptt(params, x, ws.reference_cache, ws.do)
    for name in params.names:
        getattr(grads, name)[...] = g["d" + name]
    grads.h0[...] = g["dh0"].reshape(grads.h0.shape)
    if grads.c0 is not None:
        grads.c0[...] = g["dc0"].reshape(grads.c0.shape)
    for cell, kappa in zip(ws.cells, g["kappa"]):
        cell.kappa[...] = kappa


def step(params, x_t, h0, c0, o_out, h_out, c_out, ws):
    """``forward`` over a sequence of one step."""
    if not np.isfinite(x_t).all():
        return STEP_BAD_INPUT
    forward(params, x_t[None], h0, c0, ws)
    o_out[...] = ws.o[0]
    h_out[...] = ws.h_T
    if c_out is not None:
        c_out[...] = ws.c_T
    return STEP_OK if np.isfinite(o_out).all() else STEP_BAD_OUTPUT
