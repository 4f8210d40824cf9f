"""Streaming inference with the state kept between calls: ``o_t = stream(x_t)``.

Legend: B batch, D input size, H hidden size, O output size.
"""
from __future__ import annotations

import numpy as np

from . import _checks, backends
from .functional import (_cell_major, _check_step_input, _check_step_status,
                         _check_streamable, _zero_state, _zeros)
from .params import Params
from .workspace import Workspace


class Stream:
    """Streaming inference with the state kept: ``o_t = stream(x_t)``.

    The checks that ``step`` makes on every call (params, buffers, backend) are made
    once here, so that a call costs little more than the compiled step. Each call still
    checks x_t, and the kernel reports a non-finite input or output. The returned o_t
    (B, O) and ``state`` (of ``params.state_shape(B)``, a pair (h, c) for the LSTM) are
    buffers that the next call overwrites. The Stream reads ``params`` at every call, so
    it sees updates made to them in place.
    """

    def __init__(self, params: Params, batch_size: int = 1, h0=None, *, backend="auto"):
        self.params = _checks.check_params(params)
        _check_streamable(params)
        self._kernels = backends.get(backend, backends.step_kind(params))
        if isinstance(batch_size, (bool, np.bool_)) or \
                not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        B = self.batch_size = int(batch_size)
        self.state = _zero_state(params, B, "batch_size")
        self._h, self._c = _cell_major(params, self.state)
        self._workspace = Workspace(params, 1, B)
        self.output = _zeros((B, params.output_size), params.dtype, "batch_size")
        self._id = np.zeros(1, dtype=np.int64)
        self._dense = ((B, params.input_size), params.dtype)
        self.reset(h0)

    def reset(self, h0=None) -> None:
        """Start again from h0 (a state for a batch of B), or from zeros."""
        h0 = _checks.check_state(self.params, h0, self.batch_size)
        if isinstance(self.state, tuple):
            for part, value in zip(self.state, h0 or (0.0, 0.0)):
                part[...] = value
        else:
            self.state[...] = 0.0 if h0 is None else h0

    def __call__(self, x_t) -> np.ndarray:
        """Advance by one step. x_t: a token id (B = 1), (B,) ids, or a (B, D) block."""
        if type(x_t) is int and self.batch_size == 1 and 0 <= x_t < self.params.input_size:
            self._id[0] = x_t
            x_t = self._id
        elif not (type(x_t) is np.ndarray and (x_t.shape, x_t.dtype) == self._dense
                  and x_t.flags.c_contiguous):
            x_t = _check_step_input(self.params, x_t)
            if x_t.shape[0] != self.batch_size:
                raise ValueError(f"x_t: expected a batch of {self.batch_size} (the "
                                 f"stream's batch_size), got {x_t.shape[0]}")
        status = self._kernels.step(self.params, x_t, self._h, self._c, self.output,
                                    self._h, self._c, self._workspace)
        if status:
            _check_step_status(status, self.params, self.state)
        return self.output
