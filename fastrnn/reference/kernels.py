"""The reference behind the kernel contract (documented in ``fastrnn.backends``).

The reference computes with its own temporaries and copies into the workspace: it is
the specification, not the fast path.
"""
import numpy as np

from ..backends import STEP_BAD_INPUT, STEP_BAD_OUTPUT, STEP_OK
from . import rnn


def forward(params, x, h0, ws):
    a, s, o = rnn.rnn_forward(params.U, params.W, params.b, params.V, params.c, x, h0,
                              params.cell)
    ws.a[...], ws.s[...], ws.o[...] = a, s, o


def loss(kind, reduction, y, ws):
    L, do = rnn.loss_and_output_grad(ws.o, y, kind, reduction)
    ws.do[...] = do
    return float(L)


def backward(params, x, ws, grads):
    g = rnn.bptt(params.U, params.W, params.V, x, ws.a, ws.s, ws.do, params.cell)
    for name in params.names:
        getattr(grads, name)[...] = g["d" + name]
    grads.h0[...] = g["dh0"]
    ws.kappa[...], ws.da[...] = g["kappa"], g["da"]


def step(params, x_t, h, a, o_out, h_out):
    if not np.isfinite(x_t).all():
        return STEP_BAD_INPUT
    _, s, o = rnn.rnn_forward(params.U, params.W, params.b, params.V, params.c,
                              x_t[None], h, params.cell)
    h_out[...] = s[1]
    o_out[...] = o[0]
    return STEP_OK if np.isfinite(o_out).all() else STEP_BAD_OUTPUT
