"""asv's parameters for the problems of ``fastrnn.bench``.

Legend: T time steps, B batch, D input size, H hidden size, O output size.

The problems are ``fastrnn.bench``'s (``training_problem``, ``gated_problem``,
``step_problem``), at its sizes and cases, so that asv's history and ``python -m fastrnn
bench`` speak of the same work. Here are only asv's axes and its way of skipping.
"""
import fastrnn
from fastrnn.bench import GATED_CASES, SIZES

SIZE_NAMES = tuple(SIZES)
GATED_CASE_NAMES = tuple(GATED_CASES)
DTYPES = ("float32", "float64")
BACKENDS = ("cython", "numba", "reference")


def size(name: str, dtype: str) -> dict:
    """``SIZES[name]`` (T, B, D, H, O, tokens) with its dtype replaced by ``dtype``."""
    return dict(SIZES[name], dtype=dtype)


def check_backend(backend: str) -> None:
    """Raise NotImplementedError (asv's "skip") when ``backend`` is not usable here."""
    if backend not in fastrnn.available_backends():
        raise NotImplementedError(f"backend {backend!r} is not available")


def skip_without_torch() -> None:
    """Raise NotImplementedError (asv's "skip") when PyTorch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise NotImplementedError("torch is not installed") from None
