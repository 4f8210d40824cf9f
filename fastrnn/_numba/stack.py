"""Stacks in one compiled call: gated cells, several layers, two directions.

Legend: T time steps, B batch, D input size, H hidden size, O output size, G gate rows,
L layers, dirs directions, n = L * dirs cells; cell i = k * dirs + d for layer k and
direction d, PyTorch's order.

The equations are those of ``fastrnn.reference.stack``: each cell is a single-layer
cell (the vanilla, LSTM and GRU kernels of ``rnn.py`` and ``gated.py``), layer k reads
layer k - 1's states, and BPTT runs from the top layer down, each layer handing the one
below dL/dx_t = U^T dL/da_t. The loops over layers and directions are compiled here, so
a forward or backward pass of the whole network is one call from Python.

A reverse cell runs the same kernels over the sequence in its reading order, last step
first. Its input projection is computed for all steps at once and then reversed in time
in place; its states are written into the layer's Y reversed back, and in BPTT its dL/da
is reversed into time order before dU and dL/dx are taken. Each cell's buffers (of the
stack ``Workspace``) thus stay contiguous and the single-layer kernels run unchanged.

Per-cell arrays come as tuples with one entry per cell (Numba indexes homogeneous tuples
at run time); ``bhhs`` holds the GRU's b_hh and, for the other cells, anything of b's
type (it is not read).
"""
import numpy as np

from .._config import jit
from .gated import (gru_layer_bptt, gru_recurrence, input_grads_dense, input_grads_ids,
                    lstm_layer_bptt, lstm_recurrence, output_grads, recurrent_grad)
from ..backends import STEP_BAD_INPUT, STEP_BAD_OUTPUT, STEP_OK
from .rnn import (CELLS, _add, _all_finite, _bptt, _copy, _output, _recurrence,
                  project_dense, project_ids)

LSTM, GRU = 3, 4
CODES = dict(CELLS, lstm=LSTM, gru=GRU)


@jit
def _reverse_time(a):
    """Reverse a (T, ...) array along its first axis, in place."""
    T = a.shape[0]
    for t in range(T // 2):
        u, v = a[t].reshape(a[t].size), a[T - 1 - t].reshape(a[t].size)
        for k in range(u.size):
            u[k], v[k] = v[k], u[k]


@jit
def _cell_recurrence(cell, W, b_hh, WT, h0, c0, gates, aux, h, scratch, blas):
    """The time loop of one cell; gates holds b + U x_t on entry (see ``gated.py``)."""
    T = gates.shape[0]
    if cell == LSTM:
        lstm_recurrence(W, h0, c0, gates, aux, h, scratch, blas, WT)
    elif cell == GRU:
        gru_recurrence(W, b_hh, h0, gates, aux[:T], h, scratch, blas, WT)
    else:
        _recurrence(cell, W, WT, h0, gates, h, blas)


@jit
def _cell_bptt(cell, W, gates, aux, h, kappa, da, dah, dW, db_hh, dh0, dc0, blas):
    """BPTT through one cell, kappa holding dL/dh_t from above on entry.

    Leaves dL/da_t in da (for the GRU the input side, dL/dax_t), in the cell's reading
    order; fills dW, dh0 and the GRU's db_hh or the LSTM's dc0.
    """
    T = gates.shape[0]
    if cell == LSTM:
        lstm_layer_bptt(W, gates, aux, h, kappa, da, dah[0], dh0, dc0, blas)
        recurrent_grad(da, h, dW)
    elif cell == GRU:
        gru_layer_bptt(W, gates, aux[:T], h, kappa, da, dah, dW, db_hh, dh0, blas)
    else:
        _bptt(cell, W, gates, h, kappa, da, dh0, blas)
        recurrent_grad(da, h, dW)


@jit
def _scatter_states(h, d, Y):
    """Y[t, :, d H:(d + 1) H] = the cell's state at time t: h[t + 1] for the forward
    direction, h[T - t] for the reverse one (which read the sequence backwards)."""
    T, B = Y.shape[:2]
    H = h.shape[2]
    for t in range(T):
        src = h[t + 1] if d == 0 else h[T - t]
        for r in range(B):
            _copy(src[r], Y[t, r, d * H:(d + 1) * H])


@jit
def _gather_grads(dY, d, kappa):
    """kappa[p] = the part of dY that belongs to direction d, in its reading order."""
    T, B = kappa.shape[:2]
    H = kappa.shape[2]
    for p in range(T):
        src = dY[p] if d == 0 else dY[T - 1 - p]
        for r in range(B):
            _copy(src[r, d * H:(d + 1) * H], kappa[p, r])


@jit
def _layers_forward(cell, dirs, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y, o,
                    h_T, c_T, scratch, blas):
    """Every layer's time loop and the output layer; layer 0's gates already hold
    b + U x_t (in each direction's reading order), the caller having projected x."""
    n = len(Ws)
    for i in range(n):
        k, d = i // dirs, i % dirs
        if k > 0:                                # layer k reads layer k - 1's states
            project_dense(Us[i], bs[i], Y[k - 1], gates[i])
            if d == 1:
                _reverse_time(gates[i])
        _cell_recurrence(cell, Ws[i], bhhs[i], WTs[i], h0[i], c0[i], gates[i], aux[i],
                         hs[i], scratch, blas)
        T = gates[i].shape[0]
        _copy(hs[i][T], h_T[i])
        if cell == LSTM:
            _copy(aux[i][T], c_T[i])
        if dirs == 2:
            _scatter_states(hs[i], d, Y[k])
    _output(V, c, Y[n // dirs - 1], o)


@jit
def stack_forward_dense(cell, dirs, x, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs,
                        Y, o, h_T, c_T, scratch, blas):
    """Forward pass of a stack for dense inputs x (T, B, D).

    IN  cell (a code of ``CODES``), dirs; per cell Us, Ws, bs, bhhs; V (O, dirs H),
        c (O,); h0 and c0 (n, B, H) (c0 read for the LSTM only; they may be h_T, c_T).
    OUT per cell gates, aux, hs (see the stack ``Workspace``); Y per layer; o (T, B, O);
        h_T and c_T (n, B, H).
    Scratch WTs per cell, scratch (1, B, G).
    """
    for d in range(dirs):
        project_dense(Us[d], bs[d], x, gates[d])
        if d == 1:
            _reverse_time(gates[d])
    _layers_forward(cell, dirs, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y, o,
                    h_T, c_T, scratch, blas)


@jit
def stack_forward_ids(cell, dirs, x, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y,
                      o, h_T, c_T, scratch, blas):
    """Forward pass of a stack for token ids x (T, B); as ``stack_forward_dense``."""
    for d in range(dirs):
        project_ids(Us[d], bs[d], x, gates[d])
        if d == 1:
            _reverse_time(gates[d])
    _layers_forward(cell, dirs, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y, o,
                    h_T, c_T, scratch, blas)


@jit
def _step_layers(cell, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y, o_out,
                 h_out, c_out, scratch):
    """A step's layers and output, layer 0's gates holding b + U x_t; returns STEP_OK or
    STEP_BAD_OUTPUT."""
    _layers_forward(cell, 1, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y,
                    o_out.reshape((1,) + o_out.shape), h_out, c_out, scratch, True)
    return STEP_OK if _all_finite(o_out) else STEP_BAD_OUTPUT


@jit
def stack_step_dense(cell, x_t, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y,
                     o_out, h_out, c_out, scratch):
    """One streaming step of a one-direction stack: its forward pass over x_t (B, D).

    As ``stack_forward_dense`` with T = 1, but the outputs go straight to o_out (B, O),
    h_out and c_out (n, B, H), which may be h0 and c0. Returns STEP_OK, STEP_BAD_INPUT
    when x_t is not finite (nothing is written), or STEP_BAD_OUTPUT.

    The products with W always go through BLAS: the looped product first transposes W,
    a pass over W as costly as the product itself, which one step cannot amortise (an
    LSTM step at B = 1 took 4.7 us looped against 3.6 through BLAS at H = 32, 184
    against 6.9 at H = 128).
    """
    if not _all_finite(x_t):
        return STEP_BAD_INPUT
    project_dense(Us[0], bs[0], x_t.reshape((1,) + x_t.shape), gates[0])
    return _step_layers(cell, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y,
                        o_out, h_out, c_out, scratch)


@jit
def stack_step_ids(cell, x_t, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y,
                   o_out, h_out, c_out, scratch):
    """One streaming step for token ids x_t (B,); as ``stack_step_dense``."""
    project_ids(Us[0], bs[0], x_t.reshape((1,) + x_t.shape), gates[0])
    return _step_layers(cell, Us, Ws, bs, bhhs, WTs, V, c, h0, c0, gates, aux, hs, Y,
                        o_out, h_out, c_out, scratch)


@jit
def _layers_backward(cell, dirs, Us, Ws, V, gates, aux, hs, kappas, das, dahs, Y, dY, do,
                     dUs, dWs, dbs, dbhhs, dV, dc, dh0, dc0, blas):
    """BPTT from the output layer down; layer 0's dU and db are left to the caller.

    Each layer's Y serves as scratch once the layers above it are done.
    """
    n = len(Ws)
    L = n // dirs
    T, B, O = do.shape
    K = Y[L - 1].shape[2]
    np.dot(do.reshape(T * B, O), V, dY[L - 1].reshape(T * B, K))   # V^T dL/do_t
    output_grads(do, Y[L - 1], dV, dc)
    for i in range(n - 1, -1, -1):
        k, d = i // dirs, i % dirs
        if dirs == 2:
            _gather_grads(dY[k], d, kappas[i])
        _cell_bptt(cell, Ws[i], gates[i], aux[i], hs[i], kappas[i], das[i], dahs[i], dWs[i],
                   dbhhs[i], dh0[i], dc0[i], blas)
        if d == 1:
            _reverse_time(das[i])                # into time order, for dU and dL/dx
        if k > 0:
            input_grads_dense(Y[k - 1], das[i], dUs[i], dbs[i])
            G, Din = Us[i].shape
            da2 = das[i].reshape(T * B, G)
            if d == dirs - 1:                    # the first of the layer's cells, going down
                np.dot(da2, Us[i], dY[k - 1].reshape(T * B, Din))
            else:
                into = Y[k].reshape(T * B * K)[:T * B * Din].reshape(T * B, Din)
                np.dot(da2, Us[i], into)
                _add(dY[k - 1], into)


@jit
def stack_backward_dense(cell, dirs, x, Us, Ws, V, gates, aux, hs, kappas, das, dahs, Y, dY,
                         do, dUs, dWs, dbs, dbhhs, dV, dc, dh0, dc0, blas):
    """BPTT through a stack for dense inputs x (T, B, D), after its forward pass and loss.

    IN  what ``stack_forward_dense`` left; do (T, B, O) = dL/do.
    OUT per cell kappas (dL/dh_t), das (dL/da_t), dahs; dY per layer; per cell dUs, dWs,
        dbs, dbhhs (the GRU's); dV, dc; dh0 and dc0 (n, B, H) (dc0 the LSTM's).
    Y is overwritten (scratch).
    """
    _layers_backward(cell, dirs, Us, Ws, V, gates, aux, hs, kappas, das, dahs, Y, dY, do,
                     dUs, dWs, dbs, dbhhs, dV, dc, dh0, dc0, blas)
    for d in range(dirs):
        input_grads_dense(x, das[d], dUs[d], dbs[d])


@jit
def stack_backward_ids(cell, dirs, x, Us, Ws, V, gates, aux, hs, kappas, das, dahs, Y, dY,
                       do, dUs, dWs, dbs, dbhhs, dV, dc, dh0, dc0, blas):
    """BPTT through a stack for token ids x (T, B); as ``stack_backward_dense``."""
    _layers_backward(cell, dirs, Us, Ws, V, gates, aux, hs, kappas, das, dahs, Y, dY, do,
                     dUs, dWs, dbs, dbhhs, dV, dc, dh0, dc0, blas)
    for d in range(dirs):
        input_grads_ids(x, das[d], dUs[d], dbs[d])
