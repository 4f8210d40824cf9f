"""The Numba backend behind the kernel contract (documented in fastrnn.backends).

The time loop multiplies a (B, H) block by W at every step. Through BLAS that costs a
call of a few hundred nanoseconds plus the product; plain compiled loops have no call
cost but do not block for the cache. ``BLAS_MIN_WORK`` is the crossover in B * H * H
measured with ``benchmarks/crossover.py`` on the development machine (2 cores, T=25,
D=O=64): loops win at B = 1 up to H = 100 (B * H * H = 10,000), the two tie around
16,384, and BLAS wins everywhere from 65,536 on, by up to 2.2x. Stacks use
``BLAS_MIN_WORK_GATED``: gated cells multiply by a W three or four times taller, and in a
float32 training step (T = 25, D = O = 64) the loops won up to B * H * H of about 4,096.
"""
import weakref

from . import rnn, stack

BLAS_MIN_WORK = 16384
BLAS_MIN_WORK_GATED = 4096


def _blas(B: int, H: int) -> bool:
    return B * H * H >= BLAS_MIN_WORK


def _blas_gated(B: int, H: int) -> bool:
    return B * H * H >= BLAS_MIN_WORK_GATED


def forward(params, x, h0, ws):
    kernel = rnn.forward_ids if x.ndim == 2 else rnn.forward_dense
    kernel(rnn.CELLS[params.cell], params.U, params.W, params.b, params.V, params.c, x, h0,
           ws.a, ws.s, ws.o, ws.WT, _blas(ws.B, params.hidden_size))


def loss(kind, reduction, y, ws):
    scale = 1.0 / y.size if reduction == "mean" else 1.0
    kernel = rnn.cross_entropy if kind == "cross_entropy" else rnn.squared_error
    return kernel(ws.o, y, scale, ws.do)


def backward(params, x, ws, grads):
    kernel = rnn.backward_ids if x.ndim == 2 else rnn.backward_dense
    kernel(rnn.CELLS[params.cell], params.W, params.V, x, ws.a, ws.s, ws.do, ws.kappa,
           ws.da, grads.U, grads.W, grads.b, grads.V, grads.c, grads.h0,
           _blas(ws.B, params.hidden_size))


def step(params, x_t, h, a, o_out, h_out):
    kernel = rnn.step_ids if x_t.ndim == 1 else rnn.step_dense
    return kernel(rnn.CELLS[params.cell], params.U, params.W, params.b, params.V, params.c,
                  x_t, h, a, o_out, h_out)


# ------------------------------------------------------------------------- stacks
# The stack kernels take per-cell arrays as tuples. They are built once per Params,
# Grads and Workspace object and kept while the object lives.

_tuples: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _weights(params):
    """(Us, Ws, bs, bhhs) of a Params or Grads; bhhs is bs but for the GRU."""
    found = _tuples.get(params)
    if found is None:
        layers = params.layers
        found = _tuples[params] = (
            tuple(layer.U for layer in layers), tuple(layer.W for layer in layers),
            tuple(layer.b for layer in layers),
            tuple(layer.b if layer.b_hh is None else layer.b_hh for layer in layers))
    return found


def _buffers(ws):
    """The workspace's per-cell buffers, and its per-layer Y and dY, as tuples."""
    found = _tuples.get(ws)
    if found is None:
        found = _tuples[ws] = tuple(
            tuple(getattr(cell, name) for cell in ws.cells)
            for name in ("gates", "aux", "h", "WT", "kappa", "da", "dah")) + (
            tuple(ws.Y), tuple(ws.dY))
    return found


def stack_forward(params, x, h0, c0, ws):
    kernel = stack.stack_forward_ids if x.ndim == 2 else stack.stack_forward_dense
    Us, Ws, bs, bhhs = _weights(params)
    gates, aux, hs, WTs, _, _, _, Y, _ = _buffers(ws)
    kernel(stack.CODES[params.cell], params.num_directions, x, Us, Ws, bs, bhhs, WTs,
           params.V, params.c, h0, h0 if c0 is None else c0, gates, aux, hs, Y, ws.o,
           ws.h_T, ws.c_T, ws.scratch, _blas_gated(ws.B, params.hidden_size))


def stack_backward(params, x, ws, grads):
    kernel = stack.stack_backward_ids if x.ndim == 2 else stack.stack_backward_dense
    Us, Ws, _, _ = _weights(params)
    dUs, dWs, dbs, dbhhs = _weights(grads)
    gates, aux, hs, _, kappas, das, dahs, Y, dY = _buffers(ws)
    n = len(Ws)
    dh0 = grads.h0.reshape(n, ws.B, params.hidden_size)
    dc0 = ws.grad_c0 if grads.c0 is None else grads.c0.reshape(dh0.shape)
    kernel(stack.CODES[params.cell], params.num_directions, x, Us, Ws, params.V, gates, aux,
           hs, kappas, das, dahs, Y, dY, ws.do, dUs, dWs, dbs, dbhhs, grads.V, grads.c, dh0,
           dc0, _blas_gated(ws.B, params.hidden_size))


def stack_step(params, x_t, h0, c0, o_out, h_out, c_out, ws):
    # 19 arguments: a call of a Numba 0.68 function of exactly 20 leaves about 400 bytes
    # of cyclic garbage for the garbage collector (seen with tracemalloc; 19 and 21
    # leave none).
    kernel = stack.stack_step_ids if x_t.ndim == 1 else stack.stack_step_dense
    Us, Ws, bs, bhhs = _weights(params)
    gates, aux, hs, WTs, _, _, _, Y, _ = _buffers(ws)
    return kernel(stack.CODES[params.cell], x_t, Us, Ws, bs, bhhs, WTs, params.V, params.c,
                  h0, h0 if c0 is None else c0, gates, aux, hs, Y, o_out, h_out,
                  ws.c_T if c_out is None else c_out, ws.scratch)
