"""Deep and bidirectional networks in the reference: stacks of single-layer cells.

Legend: T time steps, B batch, D input size, H hidden size, O output size, L layers,
dirs = 2 for a bidirectional network, else 1; n = L * dirs cells in all.

A network of L layers is a stack. Layer 0 reads x, layer k reads the states of layer
k - 1, and the output layer reads the top layer's states:

    h_t^(0) = cell^(0)(x_t, h_{t-1}^(0))
    h_t^(k) = cell^(k)(h_t^(k-1), h_{t-1}^(k))          k = 1 .. L - 1
    o_t     = c + V h_t^(L-1)

A bidirectional layer holds two cells with their own weights. One reads the sequence
forwards; the other reads it backwards, from x_T to x_1, and is computed as the same cell
run over the time-reversed sequence, its states then reversed back. The layer's state at
time t is the two states side by side, [h_t^fwd; h_t^rev] (2H). This is how PyTorch's
``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` are built, with the same cell order: cell
k * dirs + d for layer k and direction d.

Each cell is one of the single-layer references (``rnn.py``, ``lstm.py``, ``gru.py``)
with an identity output layer (V = I, c = 0), so that its outputs are its states. That
makes its backpropagation the single-layer BPTT unchanged: where the derivation has
V^T dL/do_t, the gradient arriving at the states, a cell inside the stack receives

    dL/dh_t^(L-1) = V^T dL/do_t                         the top layer, as before
    dL/dh_t^(k)   = sum_d U^(k+1,d)T dL/da_t^(k+1,d)    from the layer above (d: its cells)

so BPTT runs layer by layer from the top down, and each layer hands the one below it
dL/dx_t = U^T dL/da_t (for the GRU, dL/dax_t, the input side of its gates). In a
bidirectional layer, dL/dh_t is 2H wide: each cell takes its own H-column half.
"""
from __future__ import annotations

import numpy as np

from ..params import suffix
from .gru import gru_bptt, gru_forward
from .lstm import lstm_bptt, lstm_forward
from .rnn import bptt, rnn_forward


def _identity_output(H, dtype):
    """V = I (H, H) and c = 0 (H,): an output layer whose outputs are the states."""
    return np.eye(H, dtype=dtype), np.zeros(H, dtype=dtype)


def cell_forward(cell, layer, x, h0, c0=None):
    """Run one layer in one direction over x (T, B, D_k) or token ids (T, B).

    layer is a ``fastrnn.params.Layer``; h0 (and the LSTM's c0) (B, H).
    Returns the single-layer reference's cache, with the states under "h" (T + 1, B, H)
    and, for the LSTM, the cell states under "c".
    """
    I, zero = _identity_output(layer.W.shape[1], layer.W.dtype)
    if cell == "lstm":
        return lstm_forward(layer.U, layer.W, layer.b, I, zero, x, h0, c0)
    if cell == "gru":
        return gru_forward(layer.U, layer.W, layer.b, layer.b_hh, I, zero, x, h0)
    a, s, _ = rnn_forward(layer.U, layer.W, layer.b, I, zero, x, h0, cell)
    return dict(a=a, h=s)


def cell_bptt(cell, layer, x, cache, dh):
    """BPTT through one layer in one direction, given dh = dL/dh_t (T, B, H) from above.

    Returns the single-layer reference's gradients (dU, dW, db, dh0, and db_hh or dc0),
    with da = dL/da_t (T, B, G), through which dL/dx_t = U^T dL/da_t; G is the number
    of rows of U (H for the vanilla cell, 4H for the LSTM, 3H for the GRU).
    """
    I, _ = _identity_output(layer.W.shape[1], layer.W.dtype)
    if cell == "lstm":
        return lstm_bptt(layer.U, layer.W, I, x, cache, dh)
    if cell == "gru":
        return gru_bptt(layer.U, layer.W, I, x, cache, dh)
    return bptt(layer.U, layer.W, I, x, cache["a"], cache["h"], dh, cell)


def _in_direction(sequence, direction):
    """The sequence as a cell of this direction reads it: reversed in time for d = 1."""
    return sequence[::-1] if direction else sequence


def stack_forward(params, x, h0, c0=None):
    """Run the whole network over x (T, B, D) or token ids (T, B).

    h0 (and the LSTM's c0) (n, B, H), one state per cell in ``params.layers`` order.
    Returns o (T, B, O) and a cache for ``stack_bptt`` holding, per cell, the
    single-layer cache ("cells"), the input of every layer ("inputs"), the top layer's
    states h_t^(L-1) (T, B, dirs * H) ("top"), and the final states h_T and c_T (n, B, H)
    ("h_T", "c_T"; c_T is None but for the LSTM).
    """
    dirs = params.num_directions
    caches, inputs, h_T, c_T = [], [], [], []
    layer_input = x
    for k in range(params.num_layers):
        inputs.append(layer_input)
        states = []
        for d in range(dirs):
            i = k * dirs + d
            cache = cell_forward(params.cell, params.layers[i],
                                 _in_direction(layer_input, d), h0[i],
                                 None if c0 is None else c0[i])
            caches.append(cache)
            states.append(_in_direction(cache["h"][1:], d))   # back in time order
            h_T.append(cache["h"][-1])
            if c0 is not None:
                c_T.append(cache["c"][-1])
        layer_input = np.concatenate(states, axis=-1)         # [h_t^fwd; h_t^rev]
    o = params.c + layer_input @ params.V.T                   # o_t = c + V h_t^(L-1)
    return o, dict(cells=caches, inputs=inputs, top=layer_input, h_T=np.stack(h_T),
                   c_T=np.stack(c_T) if c0 is not None else None)


def stack_bptt(params, x, cache, do):
    """Backpropagation through time through the whole network; do = dL/do (T, B, O).

    Returns a dict of gradients keyed by "d" + the parameter's name ("dU", "dW_l1",
    "db_hh_reverse", "dV", ...), dh0 (and the LSTM's dc0) (n, B, H), and under "kappa"
    every cell's kappa_t = dL/dh_t (T, B, H), in the cell's reading order.
    """
    H, dirs = params.hidden_size, params.num_directions
    grads = {"dV": np.einsum("tbo,tbh->oh", do, cache["top"]),  # sum_t dL/do_t h_t^T
             "dc": do.sum(axis=(0, 1))}                          # sum_t dL/do_t
    dh0 = np.empty_like(cache["h_T"])
    dc0 = None if cache["c_T"] is None else np.empty_like(cache["c_T"])
    kappa = [None] * len(params.layers)
    from_above = do @ params.V                   # dL/dh_t of the top layer = V^T dL/do_t
    for k in reversed(range(params.num_layers)):
        layer_input = cache["inputs"][k]
        to_below = None
        for d in range(dirs):
            i = k * dirs + d
            layer = params.layers[i]
            g = cell_bptt(params.cell, layer, _in_direction(layer_input, d),
                          cache["cells"][i],
                          _in_direction(from_above[..., d * H:(d + 1) * H], d))
            for key in ("dU", "dW", "db", "db_hh"):
                if key in g:
                    grads[key + suffix(k, d)] = g[key]
            dh0[i], kappa[i] = g["dh0"], g["kappa"]
            if dc0 is not None:
                dc0[i] = g["dc0"]
            if k > 0:                            # dL/dx_t = U^T dL/da_t, to the layer below
                dx = _in_direction(g["da"] @ layer.U, d)
                to_below = dx if to_below is None else to_below + dx
        from_above = to_below
    grads["dh0"], grads["dc0"], grads["kappa"] = dh0, dc0, kappa
    return grads
