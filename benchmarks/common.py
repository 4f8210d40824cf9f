"""Seeded problems shared by the benchmarks.

Legend: T time steps, B batch, D input size, H hidden size, O output size.

The sizes are those of ``python -m fastrnn bench`` (``fastrnn.bench.SIZES``), so that
asv's history and the one-run comparison speak of the same problems. Builders here are
append-only: changing what an existing builder returns invalidates the asv history.
"""
import numpy as np

import fastrnn
from fastrnn.bench import GATED_CASES, SIZES, STEP_SIZE, _gated_problem

SIZE_NAMES = tuple(SIZES)
DTYPES = ("float32", "float64")
BACKENDS = ("cython", "numba", "reference")


def size(name: str, dtype: str) -> dict:
    """``SIZES[name]`` (T, B, D, H, O, tokens) with its dtype replaced by ``dtype``."""
    return dict(SIZES[name], dtype=dtype)


def check_backend(backend: str) -> None:
    """Raise NotImplementedError (asv's "skip") when ``backend`` is not usable here."""
    if backend not in fastrnn.available_backends():
        raise NotImplementedError(f"backend {backend!r} is not available")


def training_problem(name: str, dtype: str, seed: int = 0):
    """Params, inputs and targets for one training step at size ``name``.

    Returns
    -------
    params : fastrnn.Params (D, H, O) of ``dtype``, PyTorch's initialisation
    x : ndarray (T, B) int64 token ids in [0, D) when the size uses tokens,
        else (T, B, D) standard normal of ``dtype``
    y : ndarray (T, B) int64 class ids in [0, O)
    """
    s = size(name, dtype)
    T, B, D, H, O = s["T"], s["B"], s["D"], s["H"], s["O"]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, size=(T, B)) if s["tokens"] else \
        rng.standard_normal((T, B, D)).astype(dtype)
    y = rng.integers(0, O, size=(T, B))
    params = fastrnn.init_params(D, H, O, dtype=dtype, seed=seed)
    return params, x, y


def step_problem(seed: int = 0, cell: str = "tanh"):
    """Params and buffers for one streaming step at ``STEP_SIZE``.

    Returns
    -------
    params : fastrnn.Params (D, H, O) of STEP_SIZE's dtype, of one layer of ``cell``
    x : ndarray (B, D) standard normal input block
    h : ndarray (B, H) zero state
    o : ndarray (B, O) output buffer
    """
    s = STEP_SIZE
    B, D, H, O, dtype = s["B"], s["D"], s["H"], s["O"], s["dtype"]
    rng = np.random.default_rng(seed)
    params = fastrnn.init_params(D, H, O, cell=cell, dtype=dtype, seed=seed)
    x = rng.standard_normal((B, D)).astype(dtype)
    return params, x, np.zeros((B, H), dtype=dtype), np.zeros((B, O), dtype=dtype)


GATED_CASE_NAMES = tuple(GATED_CASES)


def gated_problem(name: str, seed: int = 0):
    """Params, inputs and targets of the gated case ``GATED_CASES[name]``.

    Returns
    -------
    params : fastrnn.Params (D, H, O) of the case's cell, layers, directions and dtype,
        PyTorch's initialisation (the LSTM's forget-gate bias at one)
    x : ndarray (T, B, D) standard normal of the case's dtype
    y : ndarray (T, B) int64 class ids in [0, O)
    """
    return _gated_problem(GATED_CASES[name], seed)
