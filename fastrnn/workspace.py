"""Workspace: every buffer a forward and backward pass needs, in one allocation.

Legend: T time steps, B batch, H hidden size, O output size.

    a      (T, B, H)      pre-activations; a[t] holds a_{t+1} of the 1-based derivation
    s      (T + 1, B, H)  states; s[0] = s_0 = h0 and s[t] = s_t
    o      (T, B, O)      outputs (logits); o[t] holds o_{t+1}
    do     (T, B, O)      dL/do
    kappa  (T, B, H)      dL/ds; kappa[t] holds kappa_{t+1} = dL/ds_{t+1}
    da     (T, B, H)      dL/da = f'(a) * kappa
    grads  Grads          dL/dU, dL/dW, dL/db, dL/dV, dL/dc (flat) and dL/dh0 (B, H)
    WT     (H, H)         scratch for the compiled backends (receives W^T)

A Workspace is sized for one (T, B) and one Params layout and reused for every call of
that size, so that a training step allocates nothing once it exists. The arrays it hands
out (outputs, gradients, the final state) are views: the next call overwrites them.
"""
from __future__ import annotations

import math

import numpy as np

from .params import Grads, Params


def _buffers(T: int, B: int, H: int, O: int, P: int):
    """The sizes table: (name, shape) of every buffer, in arena order."""
    return (("a", (T, B, H)), ("s", (T + 1, B, H)), ("o", (T, B, O)), ("do", (T, B, O)),
            ("kappa", (T, B, H)), ("da", (T, B, H)), ("grad_data", (P,)),
            ("grad_h0", (B, H)), ("WT", (H, H)))


class Workspace:
    """Buffers for sequences of T steps in batches of B, for Params shaped like ``params``."""

    def __init__(self, params: Params, T: int, B: int):
        if not isinstance(params, Params):
            raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
        if not isinstance(T, (int, np.integer)) or not isinstance(B, (int, np.integer)) \
                or T < 1 or B < 1:
            raise ValueError(f"Workspace: expected T >= 1 and B >= 1, got T={T}, B={B}")
        self.T, self.B = int(T), int(B)
        self.cell = params.cell
        self.layout = params.layout
        self.dtype = params.dtype
        table = _buffers(self.T, self.B, params.hidden_size, params.output_size,
                         params.data.size)
        self.arena = np.zeros(sum(math.prod(shape) for _, shape in table), dtype=self.dtype)
        offset = 0
        views = {}
        for name, shape in table:
            n = math.prod(shape)
            views[name] = self.arena[offset:offset + n].reshape(shape)
            offset += n
        self.a, self.s, self.o, self.do = views["a"], views["s"], views["o"], views["do"]
        self.kappa, self.da, self.WT = views["kappa"], views["da"], views["WT"]
        self.grads = Grads(params, self.B, data=views["grad_data"], h0=views["grad_h0"])

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
