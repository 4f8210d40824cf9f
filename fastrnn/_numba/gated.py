"""Fused LSTM and GRU kernels compiled with Numba: one layer, one direction.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
G is the height of the stacked gate weights: 4H for the LSTM, 3H for the GRU.

The equations, gate orders and array names are those of ``fastrnn.reference.lstm`` and
``fastrnn.reference.gru``; the kernels here are checked against them entry by entry
(tests/test_gated_numba.py). As in ``fastrnn._numba.rnn``, every kernel is a pure function
of IN arrays that writes OUT arrays and allocates nothing, and only the recurrence
through W is sequential:

    forward   A = X U^T + b (one GEMM, or a gather for token ids), into ``gates``
              for t: gates_t += W h_{t-1}; the cell's elementwise update   (time loop)
              O = H V^T + c (one GEMM)
    backward  K = dO V (one GEMM: the V^T dL/do_t term of every kappa_t)
              for t = T .. 1: kappa_t += W^T da_{t+1} (+ the GRU's direct path);
                              the cell's elementwise backward, into da_t  (time loop)
              dW = dA^T H_prev, dV = dO^T H, dU = dA^T X (one GEMM each, or a scatter)

Arrays (time is 0-based, as in the references: ``gates[t]`` holds step t + 1, the
states keep the derivation's index, ``h[t]`` = h_t):

    LSTM                                   GRU
    U (4H, D)  W (4H, H)  b (4H,)          U (3H, D)  W (3H, H)  b (3H,)  b_hh (3H,)
    gate order i, f, g, og                 gate order r, z, n
    V (O, H)  c (O,)                       V (O, H)  c (O,)
    gates (T, B, 4H) i, f, g, og           gates (T, B, 3H) r, z, n
    cell  (T + 1, B, H), cell[0] = c0      ah_n  (T, B, H) = W_n h_{t-1} + b_hn
    h     (T + 1, B, H), h[0] = h0         h     (T + 1, B, H), h[0] = h0
    o, do (T, B, O)                        o, do (T, B, O)
    kappa (T, B, H) = dL/dh_t              kappa (T, B, H) = dL/dh_t
    da    (T, B, 4H) = dL/da_t             da    (T, B, 3H) = dL/dax_t (input side)
    dcell (B, H) scratch                   dah_n (T, B, H) = dL/dah_n = r_t * dL/dax_n

Every float array is of one dtype (float32 or float64; Numba compiles one specialisation
per dtype) and C-contiguous; token ids are an integer (T, B) array. h0 may be h[T] and c0
cell[T] of the same buffers (carrying the state over), because they are copied first.

The products inside the time loop go through BLAS when ``blas`` is true and through
plain loops otherwise; the caller picks, as in ``fastrnn._numba.kernels``. (In a float32
training step at T = 25, D = O = 64 on the development machine the loops, given WT,
won up to B * H * H of about 4,096 and BLAS from about 16,384 on.) Numba's np.dot cannot accumulate into its output, so each
product goes through scratch that is free at that moment: the forward product
W h_{t-1} through the first B * G entries of o (the output layer runs after the loop),
or, when o is smaller than that, one gate block of H rows at a time through h[t + 1]
(free until the step writes it); the backward product W^T da_{t+1} through the first
B * H entries of da[t] (free until the step writes it).

The looped backward adds rows of W (``_add_matvec_rows``), which vectorises. The looped
forward needs W^T for that: the forward kernels take an optional last argument
WT (H, G), scratch that receives W^T (as ``rnn.forward_dense`` takes WT (H, H)). Without
it they fall back to dot products of rows of W, which do not vectorise without
reassociation and were 3 to 7 times slower; ``blas`` true ignores WT.

The loss kernels are those of the vanilla RNN, re-exported here: ``cross_entropy`` and
``squared_error`` read o and fill do.
"""
import numpy as np

from .._config import jit
from .rnn import (_add, _add_matvec_rows, _add_rows, _copy, _flat, _output, _sum_rows,
                  _transpose, cross_entropy, project_dense, project_ids, squared_error)
from .vecmath import sigmoid, tanh

__all__ = ["lstm_forward_dense", "lstm_forward_ids", "lstm_backward_dense",
           "lstm_backward_ids", "gru_forward_dense", "gru_forward_ids",
           "gru_backward_dense", "gru_backward_ids", "cross_entropy", "squared_error"]


# ------------------------------------------------------------------ shared pieces
# Inner loops run over 1-D views: LLVM vectorises those. Each loop touches few arrays,
# so that the runtime alias checks LLVM needs before vectorising stay few.

@jit
def _add_matmul_nt(W, x, out):
    """out[j] += W[j] . x for every row j of W: out += W x, looping, W (N, K) as stored.

    x (K,), out (N,). Used by the looped forward, which has no scratch for W^T: every
    output is a dot product of two contiguous rows, computed four rows of W at a time
    (four independent running sums, one load of x[k] for all four), in order over k.
    """
    N, K = W.shape
    N4 = N - N % 4
    x0 = x[0]
    for j in range(0, N4, 4):
        w0, w1, w2, w3 = W[j], W[j + 1], W[j + 2], W[j + 3]
        s0, s1, s2, s3 = w0[0] * x0, w1[0] * x0, w2[0] * x0, w3[0] * x0
        for k in range(1, K):
            xk = x[k]
            s0 += w0[k] * xk
            s1 += w1[k] * xk
            s2 += w2[k] * xk
            s3 += w3[k] * xk
        out[j] += s0
        out[j + 1] += s1
        out[j + 2] += s2
        out[j + 3] += s3
    for j in range(N4, N):
        w = W[j]
        s = w[0] * x0
        for k in range(1, K):
            s += w[k] * x[k]
        out[j] += s


@jit
def _add_sum(a, b, c):
    """a += b + c, elementwise over 1-D arrays of one size."""
    for k in range(a.size):
        a[k] += b[k] + c[k]


@jit
def _set_sum(a, b, out):
    """out = a + b, elementwise over 1-D arrays of one size."""
    for k in range(out.size):
        out[k] = a[k] + b[k]


@jit
def _add_product(a, b, c):
    """a += b * c, elementwise over 1-D arrays of one size."""
    for k in range(a.size):
        a[k] += b[k] * c[k]


@jit
def _scatter(x, da, dU):
    """dU = sum_t dL/da_t e_{x_t}^T: every row of da adds to column x[t, r] of dU.

    x (T, B) ids, da (T, B, G), dU (G, D).
    """
    T, B = x.shape
    G = dU.shape[0]
    dU[:] = 0.0
    for t in range(T):
        for r in range(B):
            row, col = da[t, r], x[t, r]
            for i in range(G):
                dU[i, col] += row[i]


@jit
def _row_scratch(a, B, H):
    """The first B * H entries of a C-contiguous array, as a (B, H) view."""
    return _flat(a)[:B * H].reshape(B, H)


@jit
def recurrent_grad(da, h, dW):
    """dW = dA^T H_prev = sum_t dL/da_t h_{t-1}^T, one GEMM; h (T + 1, B, H)."""
    T, B, G = da.shape
    H = h.shape[2]
    np.dot(da.reshape(T * B, G).T, h[:T].reshape(T * B, H), dW)


@jit
def output_grads(do, states, dV, dc):
    """dV = dO^T S and dc = sum_t dL/do_t; states (T, B, K) are h_1 .. h_T."""
    T, B, O = do.shape
    do2 = do.reshape(T * B, O)
    np.dot(do2.T, states.reshape(T * B, states.shape[2]), dV)
    _sum_rows(do2, dc)


@jit
def input_grads_dense(x, da, dU, db):
    """dU = dA^T X (one GEMM) and db = sum_t dL/da_t."""
    T, B, D = x.shape
    G = da.shape[2]
    da2 = da.reshape(T * B, G)
    np.dot(da2.T, x.reshape(T * B, D), dU)
    _sum_rows(da2, db)


@jit
def input_grads_ids(x, da, dU, db):
    """dU by a scatter of dA into the columns x_t, and db = sum_t dL/da_t."""
    T, B = x.shape
    _scatter(x, da, dU)
    _sum_rows(da.reshape(T * B, da.shape[2]), db)


# ------------------------------------------------------------------------------ LSTM

@jit
def _lstm_cell_forward(g, c_prev, c_next, h_next):
    """One row of one step: the gates, c_t and h_t.

    g (4H,) IN a_t, OUT i_t, f_t, g_t, og_t; c_prev (H,) IN c_{t-1};
    c_next, h_next (H,) OUT c_t = f_t * c_{t-1} + i_t * g_t, h_t = og_t * tanh(c_t).
    """
    H = c_prev.size
    gif = g[:2 * H]
    for k in range(2 * H):
        gif[k] = sigmoid(gif[k])                        # i_t, f_t
    gg = g[2 * H:3 * H]
    for k in range(H):
        gg[k] = tanh(gg[k])                             # g_t
    og = g[3 * H:]
    for k in range(H):
        og[k] = sigmoid(og[k])                          # og_t
    i, f = g[:H], g[H:2 * H]
    for k in range(H):
        c_next[k] = f[k] * c_prev[k] + i[k] * gg[k]
    for k in range(H):
        h_next[k] = og[k] * tanh(c_next[k])


@jit
def lstm_recurrence(W, h0, c0, gates, cell, h, o, blas, WT):
    """for t: a_t = gates_t + W h_{t-1}; the gates, c_t and h_t.

    gates (T, B, 4H) holds b + U x_t on entry and the activated gates on exit. o is
    free until the output layer runs after the loop: when it holds B * 4H entries the
    product W h_{t-1} is one GEMM into it, otherwise four, one per gate, through h[t + 1].
    WT (H, 4H) or None: scratch for W^T, used by the looped product.
    """
    T, B, G = gates.shape
    H = G // 4
    _copy(h0, h[0])                              # h0 may be h[T], c0 cell[T]: copy first
    _copy(c0, cell[0])
    whole = o.size >= B * G
    if WT is not None:
        if not blas:
            _transpose(W, WT)
    for t in range(T):
        if blas and whole:
            scratch = _row_scratch(o, B, G)
            np.dot(h[t], W.T, scratch)
            _add(gates[t], scratch)
        elif blas:
            scratch = h[t + 1]                   # free until the cell update writes it
            for k in range(4):
                np.dot(h[t], W[k * H:(k + 1) * H].T, scratch)
                for r in range(B):
                    _add(gates[t, r, k * H:(k + 1) * H], scratch[r])
        elif WT is None:
            for r in range(B):
                _add_matmul_nt(W, h[t, r], gates[t, r])
        else:
            _add_matvec_rows(WT, h[t], gates[t])
        for r in range(B):
            _lstm_cell_forward(gates[t, r], cell[t, r], cell[t + 1, r], h[t + 1, r])


@jit
def lstm_forward_dense(U, W, b, V, c, x, h0, c0, gates, cell, h, o, blas, WT=None):
    """LSTM forward pass for dense inputs.

    IN  U (4H, D), W (4H, H), b (4H,), V (O, H), c (O,), x (T, B, D), h0 and c0 (B, H),
        blas (bool).
    OUT gates (T, B, 4H) the activated gates i, f, g, og; cell (T + 1, B, H) with
        cell[0] = c0; h (T + 1, B, H) with h[0] = h0; o (T, B, O).
    Scratch WT (H, 4H), optional: receives W^T for the looped product (blas false).
    """
    project_dense(U, b, x, gates)
    lstm_recurrence(W, h0, c0, gates, cell, h, o, blas, WT)
    _output(V, c, h[1:], o)


@jit
def lstm_forward_ids(U, W, b, V, c, x, h0, c0, gates, cell, h, o, blas, WT=None):
    """LSTM forward pass for token ids x (T, B): U x_t is column x_t of U, gathered.

    Arguments as ``lstm_forward_dense``.
    """
    project_ids(U, b, x, gates)
    lstm_recurrence(W, h0, c0, gates, cell, h, o, blas, WT)
    _output(V, c, h[1:], o)


@jit
def _lstm_cell_backward(g, c_prev, c, kappa, dcell, da):
    """One row of one step of BPTT through c_t, h_t and the gates.

    IN  g (4H,) i_t, f_t, g_t, og_t; c_prev, c (H,) c_{t-1}, c_t; kappa (H,) dL/dh_t.
    IN/OUT dcell (H,): f_{t+1} * dL/dc_{t+1} on entry, f_t * dL/dc_t on exit.
    OUT da (4H,) dL/da_t.
    """
    H = c.size
    one = g.dtype.type(1.0)                              # keeps float32 math in float32
    i, f, gg, og = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    da_i, da_f, da_g, da_o = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:]
    for k in range(H):
        da_o[k] = tanh(c[k])                             # tanh(c_t), kept here a moment
    for k in range(H):                                   # dL/dc_t
        dcell[k] = kappa[k] * og[k] * (one - da_o[k] * da_o[k]) + dcell[k]
    for k in range(H):                                   # sigmoid'(a_o) kappa_t tanh(c_t)
        da_o[k] = og[k] * (one - og[k]) * (kappa[k] * da_o[k])
    for k in range(H):                                   # sigmoid'(a_i) * dL/dc_t g_t
        da_i[k] = i[k] * (one - i[k]) * (dcell[k] * gg[k])
    for k in range(H):                                   # sigmoid'(a_f) * dL/dc_t c_{t-1}
        da_f[k] = f[k] * (one - f[k]) * (dcell[k] * c_prev[k])
    for k in range(H):                                   # tanh'(a_g) * dL/dc_t i_t
        da_g[k] = (one - gg[k] * gg[k]) * (dcell[k] * i[k])
    for k in range(H):                                   # f_t * dL/dc_t, to step t - 1
        dcell[k] *= f[k]


@jit
def lstm_layer_bptt(W, gates, cell, h, kappa, da, dcell, dh0, dc0, blas):
    """BPTT through one LSTM layer, given the gradient that reaches its states.

    IN/OUT kappa (T, B, H): dL/dh_t from outside the recurrence (V^T dL/do_t, or the
    layer above's) on entry, the whole kappa_t on exit. OUT da (T, B, 4H) = dL/da_t,
    dh0 and dc0 (B, H). Scratch dcell (B, H).
    """
    T, B, G = gates.shape
    H = G // 4
    dcell[:] = 0.0                               # nothing comes back from step T + 1
    for t in range(T - 1, -1, -1):
        if t < T - 1:                            # kappa_t += W^T dL/da_{t+1}
            if blas:
                scratch = _row_scratch(da[t], B, H)   # free until the step writes da[t]
                np.dot(da[t + 1], W, scratch)
                _add(kappa[t], scratch)
            else:
                _add_matvec_rows(W, da[t + 1], kappa[t])
        for r in range(B):
            _lstm_cell_backward(gates[t, r], cell[t, r], cell[t + 1, r], kappa[t, r],
                                dcell[r], da[t, r])
    np.dot(da[0], W, dh0)                        # dL/dh_0 = W^T dL/da_1
    _copy(dcell, dc0)                            # dL/dc_0 = f_1 * dL/dc_1


@jit
def _lstm_backward_common(W, V, gates, cell, h, do, kappa, da, dcell, dW, dV, dc, dh0,
                          dc0, blas):
    """Everything but dU and db, which the caller adds from da."""
    T, B, G = gates.shape
    np.dot(do.reshape(T * B, do.shape[2]), V, kappa.reshape(T * B, G // 4))
    lstm_layer_bptt(W, gates, cell, h, kappa, da, dcell, dh0, dc0, blas)
    recurrent_grad(da, h, dW)
    output_grads(do, h[1:], dV, dc)


@jit
def lstm_backward_dense(U, W, V, x, gates, cell, h, do, kappa, da, dcell, dU, dW, db, dV,
                        dc, dh0, dc0, blas):
    """LSTM backpropagation through time for dense inputs.

    IN  U (4H, D) (for its shape only), W (4H, H), V (O, H), x (T, B, D); gates, cell
        and h as ``lstm_forward_dense`` left them; do (T, B, O) = dL/do; blas (bool).
    OUT kappa (T, B, H) = dL/dh_t (kappa[t] = kappa_{t+1}, as in the reference);
        da (T, B, 4H) = dL/da_t; dU (4H, D), dW (4H, H), db (4H,), dV (O, H), dc (O,),
        dh0 and dc0 (B, H).
    Scratch dcell (B, H).
    """
    _lstm_backward_common(W, V, gates, cell, h, do, kappa, da, dcell, dW, dV, dc, dh0,
                          dc0, blas)
    input_grads_dense(x, da, dU, db)


@jit
def lstm_backward_ids(U, W, V, x, gates, cell, h, do, kappa, da, dcell, dU, dW, db, dV,
                      dc, dh0, dc0, blas):
    """LSTM BPTT for token ids x (T, B): da_t adds to column x_t of dU.

    Arguments as ``lstm_backward_dense``.
    """
    _lstm_backward_common(W, V, gates, cell, h, do, kappa, da, dcell, dW, dV, dc, dh0,
                          dc0, blas)
    input_grads_ids(x, da, dU, db)


# ------------------------------------------------------------------------------- GRU

@jit
def _gru_cell_forward(g, ah_n, h_prev, h_next):
    """One row of one step: the gates and h_t.

    g (3H,) IN [ax_r + ah_r, ax_z + ah_z, ax_n], OUT r_t, z_t, n_t; ah_n (H,) IN
    W_n h_{t-1} + b_hn; h_prev (H,) IN h_{t-1}; h_next (H,) OUT
    h_t = (1 - z_t) n_t + z_t h_{t-1}.
    """
    H = h_prev.size
    grz = g[:2 * H]
    for k in range(2 * H):
        grz[k] = sigmoid(grz[k])                        # r_t, z_t
    r, z, n = g[:H], g[H:2 * H], g[2 * H:]
    one = g.dtype.type(1.0)                             # keeps float32 math in float32
    for k in range(H):
        n[k] = tanh(n[k] + r[k] * ah_n[k])              # n_t = tanh(ax_n + r_t * ah_n)
    for k in range(H):
        h_next[k] = (one - z[k]) * n[k] + z[k] * h_prev[k]


@jit
def gru_recurrence(W, b_hh, h0, gates, ah_n, h, o, blas, WT):
    """for t: the hidden side ah_t = b_hh + W h_{t-1}; the gates and h_t.

    gates (T, B, 3H) holds the input side b + U x_t on entry and r, z, n on exit; the r
    and z blocks of ah_t are added into it, the n block goes to ah_n (T, B, H). As in
    ``lstm_recurrence``, W h_{t-1} is one GEMM into o when o holds B * 3H entries.
    WT (H, 3H) or None: scratch whose entries receive W_rz^T (H, 2H) and then W_n^T
    (H, H), each contiguous, for the looped product.
    """
    T, B, G = gates.shape
    H = G // 3
    _copy(h0, h[0])                              # h0 may be h[T]: copy first
    brz, bn = b_hh[:2 * H], b_hh[2 * H:]
    whole = o.size >= B * G
    if WT is not None:
        WT_rz = _flat(WT)[:2 * H * H].reshape(H, 2 * H)
        WT_n = _flat(WT)[2 * H * H:].reshape(H, H)
        if not blas:
            _transpose(W[:2 * H], WT_rz)
            _transpose(W[2 * H:], WT_n)
    for t in range(T):
        if blas and whole:
            scratch = _row_scratch(o, B, G)
            np.dot(h[t], W.T, scratch)
            for r in range(B):                   # ax + (W h + b_hh), as the reference
                row = scratch[r]
                _add_sum(gates[t, r, :2 * H], row[:2 * H], brz)
                _set_sum(row[2 * H:], bn, ah_n[t, r])
        elif blas:
            scratch = h[t + 1]                   # free until the state update writes it
            for k in range(2):
                lo, hi = k * H, (k + 1) * H
                np.dot(h[t], W[lo:hi].T, scratch)
                for r in range(B):
                    _add_sum(gates[t, r, lo:hi], scratch[r], b_hh[lo:hi])
            np.dot(h[t], W[2 * H:].T, ah_n[t])
            _add_rows(ah_n[t], bn)
        elif WT is None:
            for r in range(B):
                grz = gates[t, r, :2 * H]
                _add(grz, brz)
                _add_matmul_nt(W[:2 * H], h[t, r], grz)
                _copy(bn, ah_n[t, r])
                _add_matmul_nt(W[2 * H:], h[t, r], ah_n[t, r])
        else:
            for r in range(B):
                grz = gates[t, r, :2 * H]
                _add(grz, brz)
                _add_matvec_rows(WT_rz, h[t, r:r + 1], grz.reshape(1, 2 * H))
                _copy(bn, ah_n[t, r])
            _add_matvec_rows(WT_n, h[t], ah_n[t])
        for r in range(B):
            _gru_cell_forward(gates[t, r], ah_n[t, r], h[t, r], h[t + 1, r])


@jit
def gru_forward_dense(U, W, b, b_hh, V, c, x, h0, gates, ah_n, h, o, blas, WT=None):
    """GRU forward pass for dense inputs.

    IN  U (3H, D), W (3H, H), b and b_hh (3H,), V (O, H), c (O,), x (T, B, D),
        h0 (B, H), blas (bool).
    OUT gates (T, B, 3H) the gates r, z, n; ah_n (T, B, H) = W_n h_{t-1} + b_hn;
        h (T + 1, B, H) with h[0] = h0; o (T, B, O).
    Scratch WT (3H * H entries, e.g. (H, 3H)), optional: receives the transposed gate
    blocks of W for the looped product (blas false).
    """
    project_dense(U, b, x, gates)
    gru_recurrence(W, b_hh, h0, gates, ah_n, h, o, blas, WT)
    _output(V, c, h[1:], o)


@jit
def gru_forward_ids(U, W, b, b_hh, V, c, x, h0, gates, ah_n, h, o, blas, WT=None):
    """GRU forward pass for token ids x (T, B); arguments as ``gru_forward_dense``."""
    project_ids(U, b, x, gates)
    gru_recurrence(W, b_hh, h0, gates, ah_n, h, o, blas, WT)
    _output(V, c, h[1:], o)


@jit
def _gru_cell_backward(g, ah_n, h_prev, kappa, dah, dax_n):
    """One row of one step of BPTT through h_t and the gates.

    IN  g (3H,) r_t, z_t, n_t; ah_n (H,); h_prev (H,) h_{t-1}; kappa (H,) dL/dh_t.
    OUT dah (3H,) the hidden side dL/dah_t = [dL/dax_r, dL/dax_z, r_t * dL/dax_n];
        dax_n (H,) dL/dax_n.
    """
    H = h_prev.size
    one = g.dtype.type(1.0)                      # keeps float32 math in float32
    r, z, n = g[:H], g[H:2 * H], g[2 * H:]
    da_r, da_z, da_n = dah[:H], dah[H:2 * H], dah[2 * H:]
    for k in range(H):                           # dL/dn_t * tanh'(.)
        dax_n[k] = kappa[k] * (one - z[k]) * (one - n[k] * n[k])
    for k in range(H):                           # dL/dr_t = dL/dax_n * ah_n, * sigmoid'
        da_r[k] = dax_n[k] * ah_n[k] * r[k] * (one - r[k])
    for k in range(H):                           # dL/dz_t = kappa_t (h_{t-1} - n_t), *sig'
        da_z[k] = kappa[k] * (h_prev[k] - n[k]) * z[k] * (one - z[k])
    for k in range(H):                           # ah_n enters scaled by r_t
        da_n[k] = r[k] * dax_n[k]


@jit
def _gru_carry(kappa, z_next, kappa_next, from_w):
    """kappa += z_{t+1} * kappa_{t+1} + W^T dah_{t+1}, in the reference's order."""
    for k in range(kappa.size):
        kappa[k] += z_next[k] * kappa_next[k] + from_w[k]


@jit
def _swap(a, b):
    """Exchange the contents of two 1-D arrays of one size."""
    for k in range(a.size):
        a[k], b[k] = b[k], a[k]


@jit
def gru_layer_bptt(W, gates, ah_n, h, kappa, da, dah_n, dW, db_hh, dh0, blas):
    """BPTT through one GRU layer, given the gradient that reaches its states.

    IN/OUT kappa (T, B, H): dL/dh_t from outside the recurrence (V^T dL/do_t, or the
    layer above's) on entry, the whole kappa_t on exit. OUT da (T, B, 3H) = dL/dax_t,
    the input side; dah_n (T, B, H) = dL/dah_n; dW (3H, H), db_hh (3H,), dh0 (B, H).
    """
    T, B, G = gates.shape
    H = G // 3
    # In the time loop da holds the hidden side dL/dah_t (what W^T and dW need) and
    # dah_n holds dL/dax_n; the n blocks are exchanged after the loop.
    for t in range(T - 1, -1, -1):
        if t < T - 1:                 # kappa_t += z_{t+1} kappa_{t+1} + W^T dah_{t+1}
            if blas:
                scratch = _row_scratch(da[t], B, H)   # free until the step writes da[t]
                np.dot(da[t + 1], W, scratch)
                for r in range(B):
                    _gru_carry(kappa[t, r], gates[t + 1, r, H:2 * H], kappa[t + 1, r],
                               scratch[r])
            else:
                for r in range(B):
                    _add_product(kappa[t, r], gates[t + 1, r, H:2 * H], kappa[t + 1, r])
                _add_matvec_rows(W, da[t + 1], kappa[t])
        for r in range(B):
            _gru_cell_backward(gates[t, r], ah_n[t, r], h[t, r], kappa[t, r], da[t, r],
                               dah_n[t, r])
    np.dot(da[0], W, dh0)                        # dL/dh_0 = z_1 * kappa_1 + W^T dah_1
    for r in range(B):
        _add_product(dh0[r], gates[0, r, H:2 * H], kappa[0, r])
    recurrent_grad(da, h, dW)                    # dW = dAh^T H_prev
    _sum_rows(da.reshape(T * B, G), db_hh)
    for t in range(T):                           # da becomes dL/dax, dah_n dL/dah_n
        for r in range(B):
            _swap(da[t, r, 2 * H:], dah_n[t, r])


@jit
def _gru_backward_common(W, V, gates, ah_n, h, do, kappa, da, dah_n, dW, db_hh, dV, dc,
                         dh0, blas):
    """Everything but dU and db, which the caller adds from da (then dL/dax)."""
    T, B, G = gates.shape
    np.dot(do.reshape(T * B, do.shape[2]), V, kappa.reshape(T * B, G // 3))
    gru_layer_bptt(W, gates, ah_n, h, kappa, da, dah_n, dW, db_hh, dh0, blas)
    output_grads(do, h[1:], dV, dc)


@jit
def gru_backward_dense(U, W, V, x, gates, ah_n, h, do, kappa, da, dah_n, dU, dW, db, db_hh,
                       dV, dc, dh0, blas):
    """GRU backpropagation through time for dense inputs.

    IN  U (3H, D) (for its shape only), W (3H, H), V (O, H), x (T, B, D); gates, ah_n
        and h as ``gru_forward_dense`` left them; do (T, B, O) = dL/do; blas (bool).
    OUT kappa (T, B, H) = dL/dh_t (kappa[t] = kappa_{t+1}, as in the reference);
        da (T, B, 3H) = dL/dax_t, the input side; dah_n (T, B, H) = dL/dah_n, the
        candidate's hidden side (its other blocks equal da's); dU (3H, D), dW (3H, H),
        db and db_hh (3H,), dV (O, H), dc (O,), dh0 (B, H).
    """
    _gru_backward_common(W, V, gates, ah_n, h, do, kappa, da, dah_n, dW, db_hh, dV, dc,
                         dh0, blas)
    input_grads_dense(x, da, dU, db)


@jit
def gru_backward_ids(U, W, V, x, gates, ah_n, h, do, kappa, da, dah_n, dU, dW, db, db_hh,
                     dV, dc, dh0, blas):
    """GRU BPTT for token ids x (T, B); arguments as ``gru_backward_dense``."""
    _gru_backward_common(W, V, gates, ah_n, h, do, kappa, da, dah_n, dW, db_hh, dV, dc,
                         dh0, blas)
    input_grads_ids(x, da, dU, db)
