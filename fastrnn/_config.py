"""One place for environment switches (and, with the compiled core, Numba options).

FASTRNN_BACKEND   overrides what backend="auto" resolves to ("reference", ...).
"""
import os


def backend_override() -> str | None:
    """The backend named by FASTRNN_BACKEND, or None when unset or empty."""
    return os.environ.get("FASTRNN_BACKEND") or None
