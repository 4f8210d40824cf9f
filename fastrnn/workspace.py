"""Workspace: every buffer a forward and backward pass needs, in one allocation.

Legend: T time steps, B batch, H hidden size, O output size, G gate rows (H, 4H for the
LSTM, 3H for the GRU), n = L * dirs cells, cell i = k * dirs + d for layer k and direction
d (see ``fastrnn.reference.stack``). The derivation's network is the stack of one vanilla
cell: its a_t, s_t, kappa_t and dL/da_t are cells[0].gates, .h, .kappa and .da.

    cells[i]  per cell: gates (T, B, G) (the pre-activations a_t), h (T + 1, B, H) (h[0] =
              h0), kappa (T, B, H) = dL/dh_t, da (T, B, G) = dL/da_t, WT (H, G) scratch,
              and for gated cells two more: aux (T + 1, B, H) (the LSTM's cell states c_t,
              the GRU's W_n h_{t-1} + b_hn in its first T) and dah (T, B, H) (the GRU's
              dL/d(W_n h_{t-1} + b_hn), the LSTM's dL/dc_t in its first B rows); a
              vanilla cell's have no time steps. A reverse cell keeps its buffers in its
              own reading order, last time step first.
    Y[k], dY[k]  (T, B, dirs * H): layer k's states in time order, [h_t^fwd; h_t^rev],
              and dL/dY; for one direction, views of h[1:] and kappa of the layer's cell
    o, do     (T, B, O)
    h_T, c_T  (n, B, H): the final states (c_T for the LSTM only)
    scratch   (1, B, G)
    grads     Grads, with h0 (and c0) = dL/dh0 (and dL/dc0) of ``params.state_shape(B)``

A Workspace is sized for one (T, B) and one Params layout and reused for every call of
that size, so that a training step allocates nothing once it exists. The arrays it hands
out (outputs, gradients, the final state) are views: the next call overwrites them.
"""
from __future__ import annotations

import math

from .params import Grads, Params, _check_size, allocate, memory_limit


_CELL_BUFFERS = ("gates", "aux", "h", "kappa", "da", "dah", "WT")


class CellBuffers:
    """The buffers of one cell (see the module docstring)."""

    def __init__(self, views: dict, i: int):
        for name in _CELL_BUFFERS:
            setattr(self, name, views[f"{name}{i}"])


def _buffers(T: int, B: int, params: Params):
    """The sizes table: (name, shape) of every buffer, in arena order."""
    H, G, O = params.hidden_size, params.gate_rows, params.output_size
    dirs = params.num_directions
    n = params.num_layers * dirs
    gated = G != H                      # aux and dah serve the gated cells only
    table = []
    for i in range(n):
        table += [(f"gates{i}", (T, B, G)), (f"aux{i}", (T + 1 if gated else 0, B, H)),
                  (f"h{i}", (T + 1, B, H)), (f"kappa{i}", (T, B, H)),
                  (f"da{i}", (T, B, G)), (f"dah{i}", (T if gated else 0, B, H)),
                  (f"WT{i}", (H, G))]
    if dirs == 2:
        for k in range(params.num_layers):
            table += [(f"Y{k}", (T, B, 2 * H)), (f"dY{k}", (T, B, 2 * H))]
    table += [("o", (T, B, O)), ("do", (T, B, O)), ("h_T", (n, B, H)), ("c_T", (n, B, H)),
              ("scratch", (1, B, G)), ("grad_data", (params.data.size,)),
              ("grad_h0", (n, B, H)), ("grad_c0", (n, B, H))]
    return tuple(table)


# The most elements one buffer may hold: the compiled kernels pass its sizes to BLAS and
# index it with 32-bit ints.
MAX_BUFFER = 2**31 - 1


def _arena(table, dtype, T: int, B: int, params: Params):
    """One zeroed allocation for a sizes table, and a dict of views into it."""
    size = sum(math.prod(shape) for _, shape in table)
    shape = max((shape for _, shape in table), key=math.prod)
    if math.prod(shape) > MAX_BUFFER and size * dtype.itemsize <= memory_limit():
        raise ValueError(f"T, B: a workspace for T={T} steps in batches of B={B} needs "
                         f"a buffer of shape {shape}, {math.prod(shape):,} elements; the kernels "
                         f"take at most {MAX_BUFFER:,} in one buffer (32-bit sizes)")
    arena = allocate(size, dtype, lambda: (
        f"T, B: a workspace for T={T} steps in batches of B={B} for {params!r}"))
    offset = 0
    views = {}
    for name, shape in table:
        n = math.prod(shape)
        views[name] = arena[offset:offset + n].reshape(shape)
        offset += n
    return arena, views


class Workspace:
    """Buffers for sequences of T steps in batches of B, for Params shaped like ``params``."""

    def __init__(self, params: Params, T: int, B: int):
        if not isinstance(params, Params):
            raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
        self.T, self.B = _check_size(T, "T"), _check_size(B, "B")
        self.cell = params.cell
        self.layout = params.layout
        self.dtype = params.dtype
        self.state_shape = params.state_shape(self.B)
        self.arena, views = _arena(_buffers(self.T, self.B, params), self.dtype, self.T,
                                   self.B, params)
        n = params.num_layers * params.num_directions
        self.cells = [CellBuffers(views, i) for i in range(n)]
        if params.num_directions == 2:
            self.Y = [views[f"Y{k}"] for k in range(params.num_layers)]
            self.dY = [views[f"dY{k}"] for k in range(params.num_layers)]
        else:
            self.Y = [cell.h[1:] for cell in self.cells]
            self.dY = [cell.kappa for cell in self.cells]
        self.o, self.do, self.scratch = views["o"], views["do"], views["scratch"]
        self.h_T, self.c_T = views["h_T"], views["c_T"]
        self.has_cell_state = params.has_cell_state
        c0 = views["grad_c0"].reshape(self.state_shape) if self.has_cell_state else None
        self.grads = Grads(params, self.B, data=views["grad_data"],
                           h0=views["grad_h0"].reshape(self.state_shape), c0=c0)
        self.grad_c0 = views["grad_c0"]

    def final_state(self):
        """The state after the last step, as views into this workspace: h_T of the
        params' state shape, or the pair (h_T, c_T) for the LSTM."""
        h_T = self.h_T.reshape(self.state_shape)
        return (h_T, self.c_T.reshape(self.state_shape)) if self.has_cell_state else h_T

    def fits(self, params: Params, T: int, B: int) -> bool:
        """Whether this workspace serves a call with these params and sizes."""
        return (self.T == T and self.B == B and self.cell == params.cell
                and self.layout == params.layout and self.dtype == params.dtype)

    @property
    def nbytes(self) -> int:
        return self.arena.nbytes

    def __repr__(self):
        return (f"Workspace(T={self.T}, B={self.B}, cell={self.cell!r}, "
                f"dtype={self.dtype.name}, {self.nbytes / 2**20:.2f} MiB)")
