"""The reference LSTM: forward pass and backpropagation through time, in plain NumPy.

The gated sibling of ``rnn.py``, written the same way: to be read beside the derivation,
not to be fast. There is one function per group of equations, a Python loop over time,
and the derivation's names. The loss, its gradient dL/do and the input term U x_t (a
gather for token ids) come from the vanilla reference in ``rnn.py``.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
The derivation writes column vectors (``W h``). A batch holds one sequence per row, so
the code computes the same products row-wise (``h @ W.T``).

The four gates are stacked along the first axis in PyTorch's order i, f, g, o, so the
weights of a one-layer ``torch.nn.LSTM`` load unchanged:

    U (4H, D) = weight_ih_l0            W (4H, H) = weight_hh_l0
    b (4H,)   = bias_ih_l0 + bias_hh_l0 (the two biases only ever appear as a sum)
    V (O, H), c (O,)                    the output layer, as in rnn.py

Forward, for t = 1 .. T, starting from h_0 = h0 and c_0 = c0:

    a_t  = b + W h_{t-1} + U x_t           four blocks of H rows: a_i, a_f, a_g, a_o
    i_t  = sigmoid(a_i)                    input gate
    f_t  = sigmoid(a_f)                    forget gate
    g_t  = tanh(a_g)                       candidate cell
    og_t = sigmoid(a_o)                    output gate
    c_t  = f_t * c_{t-1} + i_t * g_t       cell state
    h_t  = og_t * tanh(c_t)                hidden state
    o_t  = c + V h_t
    L    = sum_t L_t

PyTorch calls the output gate o_t. Here it is og_t, because o_t already names the outputs,
as it does in the vanilla reference. In the same way, c_t (with a time index) is the cell
state and c (without one) is the output bias. The code calls the array of cell states
``cell``, so that the parameter keeps the name ``c``.

Backward (BPTT), for t = T .. 1. Nothing comes back from step T + 1, so dL/da_{T+1} = 0
and dL/dc_{T+1} = 0:

    kappa_t   = dL/dh_t = V^T dL/do_t + W^T dL/da_{t+1}
    dL/dc_t   = kappa_t * og_t * (1 - tanh^2(c_t)) + f_{t+1} * dL/dc_{t+1}
    dL/di_t   = dL/dc_t * g_t               dL/df_t  = dL/dc_t * c_{t-1}
    dL/dg_t   = dL/dc_t * i_t               dL/dog_t = kappa_t * tanh(c_t)
    dL/da_t   = [dL/di_t * i_t (1 - i_t),   dL/df_t  * f_t (1 - f_t),
                 dL/dg_t * (1 - g_t^2),     dL/dog_t * og_t (1 - og_t)]
    dL/dV = sum_t dL/do_t h_t^T             dL/dc  = sum_t dL/do_t
    dL/dW = sum_t dL/da_t h_{t-1}^T         dL/db  = sum_t dL/da_t
    dL/dU = sum_t dL/da_t x_t^T
    dL/dh0 = W^T dL/da_1                    dL/dc0 = f_1 * dL/dc_1

There are two paths back in time. The hidden state goes back through the recurrence
(W^T dL/da_{t+1}), and the cell state goes back through the forget gate alone
(f_{t+1} * dL/dc_{t+1}). The second path has no squashing nonlinearity, which is why the
LSTM's gradients vanish more slowly.

Arrays are 0-based in time, as in ``rnn.py``: ``gates[t]`` and ``o[t]`` hold step t + 1,
while the states keep the derivation's index, ``h[t]`` = h_t and ``cell[t]`` = c_t.
"""
from __future__ import annotations

import numpy as np

from .rnn import activation, input_term

sigmoid = activation("sigmoid")


def split_gates(z):
    """The four H-column blocks of a (..., 4H) array, in the order i, f, g, og, as views.

    They are the row blocks of U and W: row-wise, ``x_t @ U.T`` turns rows into columns.
    """
    return np.split(z, 4, axis=-1)


# ------------------------------------------------------------------------- forward

def lstm_pre_activation(U, W, b, x_t, h_prev):
    """a_t = b + W h_{t-1} + U x_t, (B, 4H); x_t is (B, D) or token ids (B,)."""
    return b + h_prev @ W.T + input_term(U, x_t)


def lstm_gates(a_t):
    """i_t, f_t, g_t, og_t from a_t (B, 4H), stacked in the same order, (B, 4H)."""
    a_i, a_f, a_g, a_o = split_gates(a_t)
    return np.concatenate([sigmoid(a_i),                # i_t  = sigmoid(a_i)
                           sigmoid(a_f),                # f_t  = sigmoid(a_f)
                           np.tanh(a_g),                # g_t  = tanh(a_g)
                           sigmoid(a_o)],               # og_t = sigmoid(a_o)
                          axis=-1)


def lstm_cell_update(gates_t, c_prev):
    """The new cell state c_t and hidden state h_t, (B, H) each.

    gates_t (B, 4H) holds i_t, f_t, g_t, og_t; c_prev = c_{t-1} (B, H).
    """
    i, f, g, og = split_gates(gates_t)
    c_t = f * c_prev + i * g                            # c_t = f_t * c_{t-1} + i_t * g_t
    h_t = og * np.tanh(c_t)                             # h_t = og_t * tanh(c_t)
    return c_t, h_t


def lstm_forward(U, W, b, V, c, x, h0, c0):
    """Run the LSTM over all T steps.

    x (T, B, D) or token ids (T, B); h0 and c0 (B, H).
    Returns a dict with:
      gates (T, B, 4H)  i_t, f_t, g_t, og_t stacked as the rows of U are
      c     (T + 1, B, H)  the cell states, c[0] = c0
      h     (T + 1, B, H)  the hidden states, h[0] = h0
      o     (T, B, O)  the outputs
    """
    T, B = x.shape[:2]
    H, O = W.shape[1], V.shape[0]
    gates = np.empty((T, B, 4 * H), dtype=W.dtype)
    cell = np.empty((T + 1, B, H), dtype=W.dtype)
    h = np.empty((T + 1, B, H), dtype=W.dtype)
    o = np.empty((T, B, O), dtype=W.dtype)
    cell[0], h[0] = c0, h0
    for t in range(T):
        a_t = lstm_pre_activation(U, W, b, x[t], h[t])  # a_t = b + W h_{t-1} + U x_t
        gates[t] = lstm_gates(a_t)                      # i, f, g, og = sig, sig, tanh, sig
        cell[t + 1], h[t + 1] = lstm_cell_update(gates[t], cell[t])  # c_t, h_t
        o[t] = c + h[t + 1] @ V.T                       # o_t = c + V h_t
    return dict(gates=gates, c=cell, h=h, o=o)


# ------------------------------------------------------------------------ backward

def lstm_cell_backward(gates_t, c_prev, c_t, kappa_t, dcell_next):
    """Backpropagate through c_t and h_t to the cell state and the four gates.

    gates_t (B, 4H); c_prev = c_{t-1}, c_t and kappa_t = dL/dh_t (B, H); dcell_next =
    f_{t+1} * dL/dc_{t+1} (B, H), which is the cell state's direct path from step t + 1.
    Returns dL/dc_t (B, H) and dL/d(i_t, f_t, g_t, og_t) (B, 4H).
    """
    i, f, g, og = split_gates(gates_t)
    tanh_c = np.tanh(c_t)
    dcell_t = kappa_t * og * (1.0 - tanh_c * tanh_c) + dcell_next  # dL/dc_t
    dgates_t = np.concatenate([dcell_t * g,             # dL/di_t  = dL/dc_t * g_t
                               dcell_t * c_prev,        # dL/df_t  = dL/dc_t * c_{t-1}
                               dcell_t * i,             # dL/dg_t  = dL/dc_t * i_t
                               kappa_t * tanh_c],       # dL/dog_t = kappa_t * tanh(c_t)
                              axis=-1)
    return dcell_t, dgates_t


def lstm_gates_derivative(gates_t):
    """d(gates_t)/da_t elementwise, (B, 4H), written through the gates' values."""
    i, f, g, og = split_gates(gates_t)
    return np.concatenate([i * (1.0 - i),               # sigmoid'(a_i) = i_t (1 - i_t)
                           f * (1.0 - f),               # sigmoid'(a_f) = f_t (1 - f_t)
                           1.0 - g * g,                 # tanh'(a_g)    = 1 - g_t^2
                           og * (1.0 - og)],            # sigmoid'(a_o) = og_t (1 - og_t)
                          axis=-1)


def lstm_bptt(U, W, V, x, cache, do):
    """Backpropagation through time for the LSTM.

    x (T, B, D) or token ids (T, B); cache is what ``lstm_forward`` returned;
    do = dL/do (T, B, O).
    Returns a dict with dU (4H, D), dW (4H, H), db (4H,), dV (O, H), dc (O,),
    dh0 = dL/dh0 and dc0 = dL/dc0 (B, H), and the per-step kappa (T, B, H) and
    da (T, B, 4H), indexed like gates: kappa[t] = kappa_{t+1} = dL/dh_{t+1}.
    """
    gates, cell, h = cache["gates"], cache["c"], cache["h"]
    T = gates.shape[0]
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db = np.zeros(W.shape[0], dtype=W.dtype)
    dc = np.zeros(V.shape[0], dtype=V.dtype)
    kappa = np.empty_like(h[1:])
    da = np.empty_like(gates)
    from_next = np.zeros_like(h[0])               # W^T dL/da_{t+1}; 0 after T
    dcell_next = np.zeros_like(cell[0])           # f_{t+1} * dL/dc_{t+1}; 0 after T
    for t in reversed(range(T)):
        kappa[t] = do[t] @ V + from_next          # kappa_t = V^T dL/do_t + W^T dL/da_{t+1}
        dcell_t, dgates_t = lstm_cell_backward(gates[t], cell[t], cell[t + 1], kappa[t],
                                               dcell_next)
        da[t] = da_t = lstm_gates_derivative(gates[t]) * dgates_t  # dL/da_t
        from_next = da_t @ W                      # W^T dL/da_t, to step t - 1
        dcell_next = split_gates(gates[t])[1] * dcell_t    # f_t * dL/dc_t, to step t - 1

        dV += do[t].T @ h[t + 1]                  # dL/do_t h_t^T
        dc += do[t].sum(axis=0)
        dW += da_t.T @ h[t]                       # dL/da_t h_{t-1}^T
        db += da_t.sum(axis=0)
        if x.ndim == 2:                           # token ids: dL/da_t e_i^T adds to column i
            np.add.at(dU.T, x[t], da_t)
        else:
            dU += da_t.T @ x[t]                   # dL/da_t x_t^T
    dh0 = from_next                               # dL/dh_0 = W^T dL/da_1
    dc0 = dcell_next                              # dL/dc_0 = f_1 * dL/dc_1
    return dict(dU=dU, dW=dW, db=db, dV=dV, dc=dc, dh0=dh0, dc0=dc0, kappa=kappa, da=da)
