"""The Numba backend behind the kernel contract (documented in fastrnn.backends).

The time loop multiplies a (B, H) block by W at every step. Through BLAS that costs a
call of a few hundred nanoseconds plus the product; plain compiled loops have no call
cost but do not block for the cache. ``BLAS_MIN_WORK`` is the crossover in B * H * H
measured with ``benchmarks/crossover.py`` on the development machine (2 cores, T=25,
D=O=64): loops win at B = 1 up to H = 100 (B * H * H = 10,000), the two tie around
16,384, and BLAS wins everywhere from 65,536 on, by up to 2.2x.
"""
from . import rnn

BLAS_MIN_WORK = 16384


def _blas(B: int, H: int) -> bool:
    return B * H * H >= BLAS_MIN_WORK


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
