"""The reference behind the kernel contract.

Every backend module provides these four functions over prepared arrays (validated,
C-contiguous, of the params' dtype; token ids as int64). Legend: T time, B batch,
D input, H hidden, O output.

forward(params, x, h0, ws)
    x (T, B, D) or ids (T, B); h0 (B, H). Fills ws.a, ws.s (ws.s[0] = h0) and ws.o.
loss(kind, reduction, y, ws) -> float
    y ids (T, B) for "cross_entropy", (T, B, O) for "mse". Reads ws.o, fills ws.do.
backward(params, x, ws, grads)
    Reads ws.a, ws.s, ws.do; fills ws.kappa, ws.da, grads.data and grads.h0.
step(params, x_t, h, a, o_out, h_out)
    One step of online inference: x_t (B, D) or ids (B,); h (B, H); a (B, H) scratch.
    Writes the new state s_t into h_out (B, H) and o_t into o_out (B, O). h_out may be h.

The reference computes with its own temporaries and copies into the workspace: it is
the specification, not the fast path.
"""
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
    _, s, o = rnn.rnn_forward(params.U, params.W, params.b, params.V, params.c,
                              x_t[None], h, params.cell)
    h_out[...] = s[1]
    o_out[...] = o[0]
