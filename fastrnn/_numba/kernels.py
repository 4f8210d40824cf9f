"""The Numba backend behind the kernel contract (documented in fastrnn.backends).

Every network runs through the stack kernels of ``stack``; a streaming step of the
derivation's network (one vanilla cell) has a fused kernel of its own (``rnn.step``).

The time loop multiplies a (B, H) block by W at every step. Through BLAS that costs a
call of a few hundred nanoseconds plus the product; plain compiled loops have no call
cost but do not block for the cache. ``BLAS_MIN_WORK`` is the crossover in B * H * H
measured with ``benchmarks/crossover.py`` on the development machine (2 cores, T=25,
D=O=64): loops win at B = 1 up to H = 100 (B * H * H = 10,000), the two tie around
16,384, and BLAS wins everywhere from 65,536 on, by up to 2.2x. Gated cells use
``BLAS_MIN_WORK_GATED``: they multiply by a W three or four times taller, and in a
float32 training step (T = 25, D = O = 64) the loops won up to B * H * H of about 4,096.
"""
import weakref

import numpy as np

from .._contract import CELL_CODES
from . import rnn, stack

BLAS_MIN_WORK = 16384
BLAS_MIN_WORK_GATED = 4096


def _blas(params, B: int) -> bool:
    H = params.hidden_size
    gated = params.gate_rows != H
    return B * H * H >= (BLAS_MIN_WORK_GATED if gated else BLAS_MIN_WORK)


def loss(kind, reduction, y, ws):
    scale = 1.0 / y.size if reduction == "mean" else 1.0
    kernel = rnn.cross_entropy if kind == "cross_entropy" else rnn.squared_error
    return kernel(ws.o, y, scale, ws.do)


# The stack kernels read per-cell arrays through offset tables (see ``stack``), built
# once per Params and Workspace object and kept while the object lives.

_tables: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _offset(base, view) -> int:
    """Where ``view`` starts in the 1-D array ``base``, in elements."""
    return (view.__array_interface__["data"][0]
            - base.__array_interface__["data"][0]) // base.itemsize


def _weight_table(params):
    """The weights table of a Params, and of its Grads (same layout): per cell, where U
    starts in the data, U's shape, and where W, b and b_hh start (b's offset for b_hh
    but in the GRU)."""
    found = _tables.get(params)
    if found is None:
        data = params.data
        found = _tables[params] = np.array(
            [(_offset(data, layer.U), *layer.U.shape, _offset(data, layer.W),
              _offset(data, layer.b), _offset(data, layer.b if layer.b_hh is None
                                               else layer.b_hh))
             for layer in params.layers], dtype=np.int64)
    return found


def _buffer_table(ws):
    """The buffers table of a Workspace (columns ``stack.BUFFERS``)."""
    found = _tables.get(ws)
    if found is None:
        arena, dirs = ws.arena, len(ws.cells) // len(ws.Y)
        found = _tables[ws] = np.array(
            [[_offset(arena, getattr(cell, name)) for name in stack.BUFFERS[:7]]
             + [_offset(arena, ws.Y[i // dirs]), _offset(arena, ws.dY[i // dirs])]
             for i, cell in enumerate(ws.cells)], dtype=np.int64)
    return found


def forward(params, x, h0, c0, ws):
    stack.stack_forward(CELL_CODES[params.cell], params.num_directions, x, params.data,
                        _weight_table(params), params.V, params.c, h0,
                        h0 if c0 is None else c0, ws.arena, _buffer_table(ws), ws.o,
                        ws.h_T, ws.c_T, ws.scratch, _blas(params, ws.B))


def backward(params, x, ws, grads):
    dh0 = grads.h0.reshape(ws.h_T.shape)
    dc0 = ws.grad_c0 if grads.c0 is None else grads.c0.reshape(dh0.shape)
    stack.stack_backward(CELL_CODES[params.cell], params.num_directions, x, params.data,
                         _weight_table(params), params.V, ws.arena, _buffer_table(ws),
                         ws.do, grads.data, grads.V, grads.c, dh0, dc0, _blas(params, ws.B))


def step(params, x_t, h0, c0, o_out, h_out, c_out, ws):
    cell = CELL_CODES[params.cell]
    if params.num_layers == 1 and params.gate_rows == params.hidden_size:
        return rnn.step(cell, params.U, params.W, params.b, params.V, params.c, x_t, h0,
                        ws.scratch, o_out, h_out)
    return stack.stack_step(cell, x_t, params.data, _weight_table(params), params.V, params.c,
                            h0, h0 if c0 is None else c0, ws.arena, _buffer_table(ws), o_out,
                            h_out, ws.c_T if c_out is None else c_out, ws.scratch)
