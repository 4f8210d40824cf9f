"""Registry of the backends that implement the kernel contract.

"auto" resolves to the fastest backend that imports for the kind of call, unless
FASTRNN_BACKEND names one. The order comes from ``fastrnn bench`` (each backend in its
own process; the figures are in the README's Backends section):

- sequences (``forward``, ``loss_and_grad``, training): cython, then numba. Cython's
  BLAS calls accumulate into a_t and kappa_t, where Numba's np.dot needs a separate pass,
  and its float32 gated passes run on both cores (``stack.pass_threads``).
- steps (``step``, ``Stream``, sampling) of the derivation's network, one vanilla cell:
  numba, then cython: Numba passes its few arguments more cheaply and its dot products
  use AVX-512.
- steps of any other network (gated cells, several layers): cython, then numba: Numba
  unboxes every array argument at every call, where Cython's ``Cells`` holds their
  addresses.

The kernel contract
-------------------
Every backend module provides these four functions over prepared arrays (validated,
C-contiguous, of the params' dtype; token ids as int64) and the buffers of a
``fastrnn.workspace.Workspace``. Every network is a stack of cells (``fastrnn.reference.stack``);
the derivation's network is the stack of one vanilla cell, for which a backend may run
a fused kernel of its own. Legend: T time, B batch, D input, H hidden, O output, n =
num_layers * directions.

forward(params, x, h0, c0, ws)
    x (T, B, D) or ids (T, B); h0 and c0 (n, B, H), c0 None but for the LSTM; they may be
    ws.h_T and ws.c_T. Fills ws.o, ws.h_T (and ws.c_T), and what ``backward`` reads.
loss(kind, reduction, y, ws) -> float
    y ids (T, B) for "cross_entropy", (T, B, O) for "mse". Reads ws.o, fills ws.do.
backward(params, x, ws, grads)
    After ``loss``: fills grads.data, grads.h0 (and grads.c0), and every cell's kappa =
    dL/dh_t (ws.cells[i].kappa, in the cell's reading order).
step(params, x_t, h0, c0, o_out, h_out, c_out, ws) -> status
    One streaming step of a one-direction network, its forward pass over one time step,
    with ws a workspace for T = 1: x_t (B, D) or ids (B,); h0, c0, h_out, c_out (n, B,
    H), c0 and c_out None but for the LSTM; h_out may be h0 and c_out c0. Writes o_t
    into o_out (B, O) and returns STEP_OK (0); STEP_BAD_INPUT (1) when x_t is not
    finite, having written nothing; STEP_BAD_OUTPUT (2) when o_t is not finite.

The status codes and the cells' integer codes are in ``fastrnn._contract``.
"""
from __future__ import annotations

import functools
import importlib

from . import _config

_MODULES = {
    "cython": "fastrnn._cython.kernels",
    "numba": "fastrnn._numba.kernels",
    "reference": "fastrnn.reference.kernels",
}
KINDS = {"sequence": ("cython", "numba", "reference"),
         "step": ("numba", "cython", "reference"),
         "step of a stack": ("cython", "numba", "reference")}
_loaded: dict = {}


def _load(name: str):
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except ImportError:
            _loaded[name] = None
    return _loaded[name]


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable now, fastest first for training."""
    return tuple(name for name in _MODULES if _load(name) is not None)


def step_kind(params) -> str:
    """The kind of a streaming step of ``params``: "step" for the derivation's network
    (one vanilla cell), else "step of a stack"."""
    one_vanilla_cell = (params.gate_rows == params.hidden_size
                        and params.num_layers * params.num_directions == 1)
    return "step" if one_vanilla_cell else "step of a stack"


@functools.cache
def _fastest(kind: str) -> str:
    return next(name for name in KINDS[kind] if _load(name) is not None)


def resolve(backend: str = "auto", kind: str = "sequence") -> str:
    """The concrete backend name that ``backend`` stands for in a call of ``kind``."""
    if backend == "auto":
        override = _config.backend_override()
        if override is None:
            return _fastest(kind)
        backend, source = override, "FASTRNN_BACKEND"
    else:
        source = "backend"
    if not isinstance(backend, str) or backend not in _MODULES:
        raise ValueError(f"{source}: expected 'auto' or one of {tuple(_MODULES)}, "
                         f"got {backend!r}")
    if _load(backend) is None:
        raise ValueError(f"{source}: backend {backend!r} is not available here; "
                         f"available: {available_backends()}")
    return backend


def get(backend: str = "auto", kind: str = "sequence"):
    """The module implementing the kernel contract for ``backend``."""
    return _load(resolve(backend, kind))

