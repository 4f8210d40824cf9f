"""The reference GRU: forward pass and backpropagation through time, in plain NumPy.

The gated sibling of ``rnn.py``, written the same way: to be read beside the derivation,
not to be fast. There is one function per group of equations, a Python loop over time,
and the derivation's names. The loss, its gradient dL/do and the input term U x_t (a
gather for token ids) come from the vanilla reference in ``rnn.py``.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
The derivation writes column vectors (``W h``). A batch holds one sequence per row, so
the code computes the same products row-wise (``h @ W.T``).

The three gates are stacked along the first axis in PyTorch's order r, z, n, so the
weights of a one-layer ``torch.nn.GRU`` load unchanged:

    U (3H, D) = weight_ih_l0            W (3H, H)    = weight_hh_l0
    b (3H,)   = bias_ih_l0              b_hh (3H,)   = bias_hh_l0
    V (O, H), c (O,)                    the output layer, as in rnn.py

A subscript r, z or n names a block of H rows (W_n = W[2H:3H], b_hn = b_hh[2H:3H]).
Unlike the vanilla RNN and the LSTM, the GRU needs both biases. The reset gate multiplies
the hidden side of the candidate, W_n h_{t-1} + b_hn, so b_hn is scaled by r_t and b_n is
not. For r and z the two biases are only ever summed, and their gradients are equal.

Forward, for t = 1 .. T, starting from h_0 = h0:

    ax_t = b + U x_t                       input side, blocks of H: ax_r, ax_z, ax_n
    ah_t = b_hh + W h_{t-1}                hidden side, blocks of H: ah_r, ah_z, ah_n
    r_t  = sigmoid(ax_r + ah_r)            reset gate
    z_t  = sigmoid(ax_z + ah_z)            update gate
    n_t  = tanh(ax_n + r_t * ah_n)         candidate state
    h_t  = (1 - z_t) * n_t + z_t * h_{t-1}
    o_t  = c + V h_t
    L    = sum_t L_t

Written out, these are PyTorch's equations: r_t = sigmoid(U_r x_t + b_r + W_r h_{t-1} +
b_hr), z_t likewise, and n_t = tanh(U_n x_t + b_n + r_t * (W_n h_{t-1} + b_hn)).

Backward (BPTT), for t = T .. 1. Nothing comes back from step T + 1, so kappa_{T+1} = 0 and
dL/dah_{T+1} = 0:

    kappa_t  = dL/dh_t = V^T dL/do_t + z_{t+1} * kappa_{t+1} + W^T dL/dah_{t+1}
    dL/dn_t  = kappa_t * (1 - z_t)          dL/dz_t  = kappa_t * (h_{t-1} - n_t)
    dL/dax_n = dL/dn_t * (1 - n_t^2)
    dL/dr_t  = dL/dax_n * ah_n
    dL/dax_r = dL/dr_t * r_t (1 - r_t)      dL/dax_z = dL/dz_t * z_t (1 - z_t)
    dL/dax_t = [dL/dax_r, dL/dax_z, dL/dax_n]
    dL/dah_t = [dL/dax_r, dL/dax_z, r_t * dL/dax_n]
    dL/dV = sum_t dL/do_t h_t^T             dL/dc    = sum_t dL/do_t
    dL/dU = sum_t dL/dax_t x_t^T            dL/db    = sum_t dL/dax_t
    dL/dW = sum_t dL/dah_t h_{t-1}^T        dL/db_hh = sum_t dL/dah_t
    dL/dh0 = z_1 * kappa_1 + W^T dL/dah_1

The two sides differ only in the candidate's block: ah_n is multiplied by r_t and ax_n is
not. The state goes back in time along two paths. One is direct, through the update gate
(z_{t+1} * kappa_{t+1}), and the other goes through the recurrence (W^T dL/dah_{t+1}).

Arrays are 0-based in time, as in ``rnn.py``: ``gates[t]``, ``ah_n[t]`` and ``o[t]`` hold
step t + 1, while the states keep the derivation's index, ``h[t]`` = h_t.
"""
from __future__ import annotations

import numpy as np

from .rnn import activation, input_term

sigmoid = activation("sigmoid")


def split_gates(z):
    """The three H-column blocks of a (..., 3H) array, in the order r, z, n, as views.

    They are the row blocks of U and W: row-wise, ``x_t @ U.T`` turns rows into columns.
    (``z`` is any such array here, not the update gate.)
    """
    return np.split(z, 3, axis=-1)


# ------------------------------------------------------------------------- forward

def gru_pre_activations(U, W, b, b_hh, x_t, h_prev):
    """The input side ax_t = b + U x_t and the hidden side ah_t = b_hh + W h_{t-1}.

    x_t is (B, D) or token ids (B,); h_prev = h_{t-1} (B, H). Returns two (B, 3H) arrays.
    """
    ax_t = b + input_term(U, x_t)                       # ax_t = b + U x_t
    ah_t = b_hh + h_prev @ W.T                          # ah_t = b_hh + W h_{t-1}
    return ax_t, ah_t


def gru_gates(ax_t, ah_t):
    """r_t, z_t, n_t from the two sides (B, 3H), stacked in the same order, (B, 3H)."""
    ax_r, ax_z, ax_n = split_gates(ax_t)
    ah_r, ah_z, ah_n = split_gates(ah_t)
    r = sigmoid(ax_r + ah_r)                            # r_t = sigmoid(ax_r + ah_r)
    z = sigmoid(ax_z + ah_z)                            # z_t = sigmoid(ax_z + ah_z)
    n = np.tanh(ax_n + r * ah_n)                        # n_t = tanh(ax_n + r_t * ah_n)
    return np.concatenate([r, z, n], axis=-1)


def gru_state_update(gates_t, h_prev):
    """h_t (B, H) from gates_t (B, 3H), which holds r_t, z_t, n_t, and h_prev = h_{t-1}."""
    _, z, n = split_gates(gates_t)
    return (1.0 - z) * n + z * h_prev                   # h_t = (1 - z_t) n_t + z_t h_{t-1}


def gru_forward(U, W, b, b_hh, V, c, x, h0):
    """Run the GRU over all T steps.

    x (T, B, D) or token ids (T, B); h0 (B, H).
    Returns a dict with:
      gates (T, B, 3H)  r_t, z_t, n_t stacked as the rows of U are
      ah_n  (T, B, H)  the candidate's hidden side W_n h_{t-1} + b_hn, which dL/dr_t needs
      h     (T + 1, B, H)  the hidden states, h[0] = h0
      o     (T, B, O)  the outputs
    """
    T, B = x.shape[:2]
    H, O = W.shape[1], V.shape[0]
    gates = np.empty((T, B, 3 * H), dtype=W.dtype)
    ah_n = np.empty((T, B, H), dtype=W.dtype)
    h = np.empty((T + 1, B, H), dtype=W.dtype)
    o = np.empty((T, B, O), dtype=W.dtype)
    h[0] = h0
    for t in range(T):
        ax_t, ah_t = gru_pre_activations(U, W, b, b_hh, x[t], h[t])  # ax_t, ah_t
        gates[t] = gru_gates(ax_t, ah_t)                # r_t, z_t, n_t
        ah_n[t] = split_gates(ah_t)[2]                  # ah_n = W_n h_{t-1} + b_hn
        h[t + 1] = gru_state_update(gates[t], h[t])     # h_t = (1 - z_t) n_t + z_t h_{t-1}
        o[t] = c + h[t + 1] @ V.T                       # o_t = c + V h_t
    return dict(gates=gates, ah_n=ah_n, h=h, o=o)


# ------------------------------------------------------------------------ backward

def gru_state_backward(gates_t, h_prev, kappa_t):
    """Backpropagate through h_t = (1 - z_t) n_t + z_t h_{t-1}.

    gates_t (B, 3H); h_prev = h_{t-1} and kappa_t = dL/dh_t (B, H).
    Returns dL/dz_t, dL/dn_t and the direct part of dL/dh_{t-1}, each (B, H).
    """
    _, z, n = split_gates(gates_t)
    dz_t = kappa_t * (h_prev - n)                       # dL/dz_t = kappa_t * (h_{t-1} - n_t)
    dn_t = kappa_t * (1.0 - z)                          # dL/dn_t = kappa_t * (1 - z_t)
    direct = z * kappa_t                                # z_t * kappa_t
    return dz_t, dn_t, direct


def gru_gates_backward(gates_t, ah_n_t, dz_t, dn_t):
    """Backpropagate through r_t, z_t and n_t to both sides' pre-activations.

    gates_t (B, 3H); ah_n_t = W_n h_{t-1} + b_hn, dz_t = dL/dz_t and dn_t = dL/dn_t
    (B, H). Returns dL/dax_t and dL/dah_t, (B, 3H) each.
    """
    r, z, n = split_gates(gates_t)
    dax_n = dn_t * (1.0 - n * n)                        # dL/dax_n = dL/dn_t * (1 - n_t^2)
    dr_t = dax_n * ah_n_t                               # dL/dr_t  = dL/dax_n * ah_n
    dax_r = dr_t * r * (1.0 - r)                        # dL/dax_r = dL/dr_t * r_t (1 - r_t)
    dax_z = dz_t * z * (1.0 - z)                        # dL/dax_z = dL/dz_t * z_t (1 - z_t)
    dax_t = np.concatenate([dax_r, dax_z, dax_n], axis=-1)
    dah_t = np.concatenate([dax_r, dax_z, r * dax_n], axis=-1)  # ah_n enters scaled by r_t
    return dax_t, dah_t


def gru_bptt(U, W, V, x, cache, do):
    """Backpropagation through time for the GRU.

    x (T, B, D) or token ids (T, B); cache is what ``gru_forward`` returned;
    do = dL/do (T, B, O).
    Returns a dict with dU (3H, D), dW (3H, H), db and db_hh (3H,), dV (O, H), dc (O,),
    dh0 = dL/dh0 (B, H), and the per-step kappa (T, B, H) and da = dL/dax (T, B, 3H),
    the input side, indexed like gates: kappa[t] = kappa_{t+1} = dL/dh_{t+1}.
    """
    gates, ah_n, h = cache["gates"], cache["ah_n"], cache["h"]
    T = gates.shape[0]
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db = np.zeros(W.shape[0], dtype=W.dtype)
    db_hh = np.zeros(W.shape[0], dtype=W.dtype)
    dc = np.zeros(V.shape[0], dtype=V.dtype)
    kappa = np.empty_like(h[1:])
    da = np.empty_like(gates)
    from_next = np.zeros_like(h[0])    # z_{t+1} * kappa_{t+1} + W^T dL/dah_{t+1}; 0 after T
    for t in reversed(range(T)):
        kappa[t] = do[t] @ V + from_next          # kappa_t = V^T dL/do_t + (from t + 1)
        dz_t, dn_t, direct = gru_state_backward(gates[t], h[t], kappa[t])
        dax_t, dah_t = gru_gates_backward(gates[t], ah_n[t], dz_t, dn_t)
        da[t] = dax_t
        from_next = direct + dah_t @ W            # z_t * kappa_t + W^T dL/dah_t, to t - 1

        dV += do[t].T @ h[t + 1]                  # dL/do_t h_t^T
        dc += do[t].sum(axis=0)
        dW += dah_t.T @ h[t]                      # dL/dah_t h_{t-1}^T
        db_hh += dah_t.sum(axis=0)
        db += dax_t.sum(axis=0)
        if x.ndim == 2:                           # token ids: dL/dax_t e_i^T adds to column i
            np.add.at(dU.T, x[t], dax_t)
        else:
            dU += dax_t.T @ x[t]                  # dL/dax_t x_t^T
    dh0 = from_next                               # dL/dh_0 = z_1 * kappa_1 + W^T dL/dah_1
    return dict(dU=dU, dW=dW, db=db, db_hh=db_hh, dV=dV, dc=dc, dh0=dh0, kappa=kappa, da=da)
