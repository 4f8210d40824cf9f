"""The reference: a vanilla (Elman) RNN and backpropagation through time, in plain NumPy.

This module is the specification that every fast backend is checked against. It is
written to be read beside the derivation, not to be fast: one function per group of
equations, a Python loop over time, the derivation's names.

Legend: T time steps, B batch, D input size, H hidden size, O output size.
The derivation writes column vectors (``W s``); a batch holds one sequence per row, so
the code computes the same products row-wise: W s is ``s @ W.T``, V^T kappa is
``kappa @ V``, and an outer product such as dL/da_t s_{t-1}^T, summed over the batch,
is ``da.T @ s``. The loss and every weight and bias gradient are summed over the batch.

Forward, for t = 1 .. T, starting from s_0 = h0:

    a_t = b + W s_{t-1} + U x_t
    s_t = f(a_t)
    o_t = c + V s_t
    p_t = softmax(o_t)                     (cross-entropy models)
    L_t = -log p_t[y_t]    or    ||o_t - y_t||^2      (cross-entropy or squared error)
    L   = sum_t L_t

Backward (BPTT), for t = T .. 1, with kappa_{T+1} = 0, starting from the loss gradient
dL/do_t = p_t - onehot(y_t) (cross-entropy) or 2 (o_t - y_t) (squared error):

    kappa_t = dL/ds_t = V^T dL/do_t + W^T (f'(a_{t+1}) * kappa_{t+1})
    dL/da_t = f'(a_t) * kappa_t
    dL/dV = sum_t dL/do_t s_t^T          dL/dc = sum_t dL/do_t
    dL/dW = sum_t dL/da_t s_{t-1}^T      dL/db = sum_t dL/da_t
    dL/dU = sum_t dL/da_t x_t^T          dL/dh0 = W^T dL/da_1

Arrays are 0-based in time: ``a[t]``, ``o[t]``, ``kappa[t]`` and ``da[t]`` hold step
t + 1, while the states keep the derivation's index, ``s[t]`` = s_t, because they start
with s_0 = h0. The comments in the loops use the derivation's index.
"""
from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------- nonlinearities f, f'

def activation(cell: str):
    """f, the elementwise nonlinearity."""
    if cell == "tanh":
        return np.tanh
    if cell == "sigmoid":
        return lambda a: 1.0 / (1.0 + np.exp(-a))
    if cell == "relu":
        return lambda a: np.maximum(a, 0.0)
    raise ValueError(f"cell: expected 'tanh', 'sigmoid' or 'relu', got {cell!r}")


def activation_derivative(cell: str, a_t, s_t):
    """f'(a_t), written through s_t = f(a_t) where that is the textbook form."""
    if cell == "tanh":
        return 1.0 - s_t * s_t
    if cell == "sigmoid":
        return s_t * (1.0 - s_t)
    if cell == "relu":
        return (a_t > 0.0).astype(a_t.dtype)
    raise ValueError(f"cell: expected 'tanh', 'sigmoid' or 'relu', got {cell!r}")


# ------------------------------------------------------------------------- forward

def input_term(U, x_t):
    """U x_t for one time step, (B, H).

    x_t is either a (B, D) block of input vectors or (B,) token ids. A token id i means
    the one-hot vector e_i, and U e_i is column i of U: a gather, never a dense product.
    """
    if x_t.ndim == 1:
        return U[:, x_t].T
    return x_t @ U.T


def rnn_forward(U, W, b, V, c, x, h0, cell="tanh"):
    """Run the recurrence over all T steps.

    x (T, B, D) or token ids (T, B); h0 (B, H).
    Returns a (T, B, H), s (T + 1, B, H) with s[0] = h0, and o (T, B, O).
    """
    f = activation(cell)
    T, B = x.shape[:2]
    H, O = W.shape[0], V.shape[0]
    a = np.empty((T, B, H), dtype=W.dtype)
    s = np.empty((T + 1, B, H), dtype=W.dtype)
    o = np.empty((T, B, O), dtype=W.dtype)
    s[0] = h0
    for t in range(T):
        a[t] = b + s[t] @ W.T + input_term(U, x[t])    # a_t = b + W s_{t-1} + U x_t
        s[t + 1] = f(a[t])                              # s_t = f(a_t)
        o[t] = c + s[t + 1] @ V.T                       # o_t = c + V s_t
    return a, s, o


# --------------------------------------------------------------------------- losses

def log_softmax(o):
    """log p = o - log(sum(exp(o))), through the max so that exp never overflows."""
    m = o.max(axis=-1, keepdims=True)
    return o - m - np.log(np.exp(o - m).sum(axis=-1, keepdims=True))


def cross_entropy(o, y):
    """L = sum_t L_t with L_t = -sum_b log p_t[b, y_t[b]]; o (T, B, O), y (T, B) ints.

    Returns L and dL/do = p - onehot(y), (T, B, O).
    """
    log_p = log_softmax(o)
    # The loss in float64 whatever o's dtype, as the compiled kernels take it: in float32
    # a term -log p at the edge of the range, or the sum of many, would overflow first.
    log_p64 = log_softmax(o.astype(np.float64))
    L = -np.take_along_axis(log_p64, y[..., None], axis=-1).sum()
    onehot = np.eye(o.shape[-1], dtype=o.dtype)[y]
    return L, np.exp(log_p) - onehot


def squared_error(o, y):
    """L = sum_t ||o_t - y_t||^2 (no factor 1/2); o and y (T, B, O).

    Returns L and dL/do = 2 (o - y).
    """
    r = o - y
    return (r * r).sum(dtype=np.float64), 2.0 * r       # summed in float64, as above


def loss_and_output_grad(o, y, loss="cross_entropy", reduction="sum"):
    """The loss and dL/do under a reduction.

    "sum" is the derivation's L = sum_t L_t. "mean" divides by the number of terms, as
    PyTorch does: T * B for cross-entropy, T * B * O for squared error.
    """
    if loss == "cross_entropy":
        L, do = cross_entropy(o, y)
    elif loss == "mse":
        L, do = squared_error(o, y)
    else:
        raise ValueError(f"loss: expected 'cross_entropy' or 'mse', got {loss!r}")
    if reduction == "mean":
        terms = y.size
        return L / terms, do / terms
    if reduction == "sum":
        return L, do
    raise ValueError(f"reduction: expected 'sum' or 'mean', got {reduction!r}")


# ------------------------------------------------------------------------ backward

def bptt(U, W, V, x, a, s, do, cell="tanh"):
    """Backpropagation through time.

    x (T, B, D) or token ids (T, B); a (T, B, H); s (T + 1, B, H); do = dL/do (T, B, O).
    Returns a dict with dU, dW, db, dV, dc, dh0 and the per-step kappa (T, B, H) and
    da = dL/da (T, B, H), indexed like a: kappa[t] = kappa_{t+1} = dL/ds_{t+1}.
    """
    T = a.shape[0]
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db = np.zeros(W.shape[0], dtype=W.dtype)
    dc = np.zeros(V.shape[0], dtype=V.dtype)
    kappa = np.empty_like(a)
    da = np.empty_like(a)
    from_next = np.zeros_like(s[0])               # W^T (f'(a_{t+1}) * kappa_{t+1}); 0 after T
    for t in reversed(range(T)):
        kappa[t] = do[t] @ V + from_next          # kappa_t = V^T dL/do_t + W^T (...)
        da[t] = activation_derivative(cell, a[t], s[t + 1]) * kappa[t]   # f'(a_t) * kappa_t
        from_next = da[t] @ W                     # W^T dL/da_t, to step t - 1

        dV += do[t].T @ s[t + 1]                  # dL/do_t s_t^T
        dc += do[t].sum(axis=0)
        dW += da[t].T @ s[t]                      # dL/da_t s_{t-1}^T
        db += da[t].sum(axis=0)
        if x.ndim == 2:                           # token ids: dL/da_t e_i^T adds to column i
            np.add.at(dU.T, x[t], da[t])          # (add.at, so that repeated ids all add)
        else:
            dU += da[t].T @ x[t]                  # dL/da_t x_t^T
    dh0 = from_next                               # dL/ds_0 = W^T dL/da_1
    return dict(dU=dU, dW=dW, db=db, dV=dV, dc=dc, dh0=dh0, kappa=kappa, da=da)


# -------------------------------------------------------------------------- update

def sgd_update(theta, dtheta, lr):
    """theta <- theta - lr * dL/dtheta: descent subtracts the gradient."""
    theta -= lr * dtheta
