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
``Workspace``) thus stay contiguous and the single-layer kernels run unchanged.

Per-cell arrays reach the kernels as one flat array and a table of offsets, as the Cython
backend's cells table does: ``weights`` is the flat data of a Params (or of its Grads,
which share its layout) and ``wtab`` (n, 6) holds, per cell, where U starts in it, U's
shape (G, D_i), and where W, b and b_hh start (b_hh is the GRU's; for the other cells,
b's offset, not read); ``arena`` is the Workspace's single allocation and ``btab``
(n, 9) holds, per cell, where its buffers and its layer's Y and dY start (``BUFFERS``).
The kernels make views from these. Their Numba types thus depend on the dtype and the
input kind only: one compiled kernel serves every number of layers and directions (a
tuple of per-cell arrays, whose length is part of its type, compiled the whole chain
again for each).
"""
import numpy as np

from .._config import jit
from .._contract import GRU, LSTM, STEP_BAD_INPUT, STEP_BAD_OUTPUT, STEP_OK
from .._vec import all_finite, flat
from .gated import (gru_layer_bptt, gru_recurrence, input_grads_dense, input_grads_ids,
                    lstm_layer_bptt, lstm_recurrence, output_grads, recurrent_grad)
from .rnn import _add, _bptt, _copy, _output, _recurrence, project_dense, project_ids

# The columns of the buffers table (see the module docstring), in order.
BUFFERS = ("gates", "aux", "h", "kappa", "da", "dah", "WT", "Y", "dY")


@jit
def _view(a, at, shape):
    """The C-contiguous block of ``shape`` that starts at offset ``at`` of the 1-D a."""
    size = 1
    for n in shape:
        size *= n
    return a[at:at + size].reshape(shape)


@jit
def _cell_weights(data, wtab, i, H):
    """Cell i's U (G, D_i), W (G, H), b (G,) and b_hh (G,): views into data."""
    G, D_i = wtab[i, 1], wtab[i, 2]
    return (_view(data, wtab[i, 0], (G, D_i)), _view(data, wtab[i, 3], (G, H)),
            _view(data, wtab[i, 4], (G,)), _view(data, wtab[i, 5], (G,)))


@jit
def _cell_buffers(arena, btab, i, T, B, H, G):
    """Cell i's gates, aux, h, kappa, da, dah and WT (see the ``Workspace``): views
    into arena; a vanilla cell's (G = H) aux and dah have no time steps."""
    at = btab[i]
    gated = G != H
    return (_view(arena, at[0], (T, B, G)), _view(arena, at[1], (T + 1 if gated else 0, B, H)),
            _view(arena, at[2], (T + 1, B, H)), _view(arena, at[3], (T, B, H)),
            _view(arena, at[4], (T, B, G)), _view(arena, at[5], (T if gated else 0, B, H)),
            _view(arena, at[6], (H, G)))


@jit
def _layer_states(arena, btab, k, dirs, T, B, H):
    """Layer k's Y and dY (T, B, dirs H): views into arena."""
    at = btab[k * dirs]
    return _view(arena, at[7], (T, B, dirs * H)), _view(arena, at[8], (T, B, dirs * H))


@jit
def _project(U, b, x, a):
    """a = b + U x_t for every step: one GEMM for dense x (T, B, D), a gather of U's
    columns for token ids x (T, B). Numba compiles only the branch of x's kind."""
    if x.ndim == 2:
        project_ids(U, b, x, a)
    else:
        project_dense(U, b, x, a)


@jit
def _input_grads(x, da, dU, db):
    """dU and db of the input projection: one GEMM for dense x, a scatter-add into dU's
    columns for token ids."""
    if x.ndim == 2:
        input_grads_ids(x, da, dU, db)
    else:
        input_grads_dense(x, da, dU, db)


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
def _layers_forward(cell, dirs, weights, wtab, V, c, h0, c0, arena, btab, o, h_T, c_T,
                    scratch, blas):
    """Every layer's time loop and the output layer; layer 0's gates already hold
    b + U x_t (in each direction's reading order), the caller having projected x."""
    T, B = o.shape[:2]
    n, _, H = h0.shape
    G = scratch.shape[2]
    for i in range(n):
        k, d = i // dirs, i % dirs
        U, W, b, b_hh = _cell_weights(weights, wtab, i, H)
        gates, aux, h, _, _, _, WT = _cell_buffers(arena, btab, i, T, B, H, G)
        if k > 0:                                # layer k reads layer k - 1's states
            project_dense(U, b, _layer_states(arena, btab, k - 1, dirs, T, B, H)[0], gates)
            if d == 1:
                _reverse_time(gates)
        _cell_recurrence(cell, W, b_hh, WT, h0[i], c0[i], gates, aux, h, scratch, blas)
        _copy(h[T], h_T[i])
        if cell == LSTM:
            _copy(aux[T], c_T[i])
        if dirs == 2:
            _scatter_states(h, d, _layer_states(arena, btab, k, dirs, T, B, H)[0])
    _output(V, c, _layer_states(arena, btab, n // dirs - 1, dirs, T, B, H)[0], o)


@jit
def stack_forward(cell, dirs, x, weights, wtab, V, c, h0, c0, arena, btab, o, h_T, c_T,
                  scratch, blas):
    """Forward pass of a stack for dense inputs x (T, B, D) or token ids x (T, B).

    IN  cell (a code of ``fastrnn._contract``), dirs; weights and wtab (the params);
        V (O, dirs H), c (O,); h0 and c0 (n, B, H) (c0 read for the LSTM only; they may
        be h_T, c_T).
    OUT through arena and btab, every cell's gates, aux, h and every layer's Y (see the
        ``Workspace``); o (T, B, O); h_T and c_T (n, B, H).
    Scratch the cells' WT, scratch (1, B, G).
    """
    T, B = x.shape[:2]
    H = h0.shape[2]
    for d in range(dirs):
        U, _, b, _ = _cell_weights(weights, wtab, d, H)
        gates = _cell_buffers(arena, btab, d, T, B, H, wtab[d, 1])[0]
        _project(U, b, x, gates)
        if d == 1:
            _reverse_time(gates)
    _layers_forward(cell, dirs, weights, wtab, V, c, h0, c0, arena, btab, o, h_T, c_T,
                    scratch, blas)


@jit
def stack_step(cell, x_t, weights, wtab, V, c, h0, c0, arena, btab, o_out, h_out, c_out,
               scratch):
    """One streaming step of a one-direction stack: its forward pass over x_t, dense
    (B, D) or token ids (B,).

    As ``stack_forward`` with T = 1, but the outputs go straight to o_out (B, O), h_out
    and c_out (n, B, H), which may be h0 and c0. Returns STEP_OK, STEP_BAD_INPUT when a
    dense x_t is not finite (nothing is written), or STEP_BAD_OUTPUT.

    The products with W always go through BLAS: the looped product first transposes W,
    a pass over W as costly as the product itself, which one step cannot amortise.
    """
    if x_t.ndim == 2:
        if not all_finite(x_t):
            return STEP_BAD_INPUT
    H = h0.shape[2]
    U, _, b, _ = _cell_weights(weights, wtab, 0, H)
    gates = _cell_buffers(arena, btab, 0, 1, x_t.shape[0], H, wtab[0, 1])[0]
    _project(U, b, x_t.reshape((1,) + x_t.shape), gates)
    _layers_forward(cell, 1, weights, wtab, V, c, h0, c0, arena, btab,
                    o_out.reshape((1,) + o_out.shape), h_out, c_out, scratch, True)
    return STEP_OK if all_finite(o_out) else STEP_BAD_OUTPUT


@jit
def stack_backward(cell, dirs, x, weights, wtab, V, arena, btab, do, grads, dV, dc, dh0,
                   dc0, blas):
    """BPTT through a stack for dense inputs x (T, B, D) or token ids x (T, B), after its
    forward pass and loss, from the output layer down.

    IN  what ``stack_forward`` left; do (T, B, O) = dL/do.
    OUT through arena and btab, every cell's kappa (dL/dh_t), da (dL/da_t) and dah, and
        every layer's dY; grads (the flat data of a Grads laid out as the params, whose
        table wtab is): every cell's dU, dW, db and the GRU's db_hh, and dV, dc; dh0 and
        dc0 (n, B, H) (dc0 the LSTM's).
    Each layer's Y serves as scratch once the layers above it are done.
    """
    T, B, O = do.shape
    n, _, H = dh0.shape
    L = n // dirs
    G = wtab[0, 1]
    K = dirs * H
    Y_top, dY_top = _layer_states(arena, btab, L - 1, dirs, T, B, H)
    np.dot(do.reshape(T * B, O), V, dY_top.reshape(T * B, K))      # V^T dL/do_t
    output_grads(do, Y_top, dV, dc)
    for i in range(n - 1, -1, -1):
        k, d = i // dirs, i % dirs
        U, W, _, _ = _cell_weights(weights, wtab, i, H)
        dU, dW, db, db_hh = _cell_weights(grads, wtab, i, H)
        gates, aux, h, kappa, da, dah, _ = _cell_buffers(arena, btab, i, T, B, H, G)
        Y, dY = _layer_states(arena, btab, k, dirs, T, B, H)
        if dirs == 2:
            _gather_grads(dY, d, kappa)
        _cell_bptt(cell, W, gates, aux, h, kappa, da, dah, dW, db_hh, dh0[i], dc0[i], blas)
        if d == 1:
            _reverse_time(da)                    # into time order, for dU and dL/dx
        if k == 0:
            _input_grads(x, da, dU, db)
            continue
        Y_below, dY_below = _layer_states(arena, btab, k - 1, dirs, T, B, H)
        input_grads_dense(Y_below, da, dU, db)
        D_i = U.shape[1]
        da2 = da.reshape(T * B, G)
        if d == dirs - 1:                        # the first of the layer's cells, going down
            np.dot(da2, U, dY_below.reshape(T * B, D_i))
        else:
            into = flat(Y)[:T * B * D_i].reshape(T * B, D_i)
            np.dot(da2, U, into)
            _add(dY_below, into)
