"""One place for environment switches and Numba options.

FASTRNN_BACKEND       overrides what backend="auto" resolves to ("numba", "reference", ...).
FASTRNN_NUMBA_CACHE   "0" turns Numba's on-disk cache of compiled kernels off.

Every Numba kernel is compiled through ``jit`` below, with ``nogil=True`` (independent
models can train in parallel threads) and no ``fastmath``: the kernels compute gradients
and must keep IEEE semantics for NaN and Inf. Nothing is compiled at import time.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

NUMBA_OPTIONS = dict(nogil=True, fastmath=False, error_model="numpy")
# Streaming inference computes no gradient and checks nothing for finiteness: it may let
# LLVM reassociate sums (so that dot products vectorise), and nothing more.
STREAM_OPTIONS = dict(NUMBA_OPTIONS, fastmath={"reassoc", "contract"})


def backend_override() -> str | None:
    """The backend named by FASTRNN_BACKEND, or None when unset, empty or "auto"."""
    name = os.environ.get("FASTRNN_BACKEND")
    return None if name in (None, "", "auto") else name


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@functools.cache
def numba_cache_enabled(package_dir: Path | None = None) -> bool:
    """Whether kernels are cached on disk.

    Numba writes its cache beside the sources, or in NUMBA_CACHE_DIR, or in a user-wide
    cache folder when the install is read-only. Caching is turned off, rather than left
    to fail at the first compile, when FASTRNN_NUMBA_CACHE=0 or none of these is writable.
    """
    if os.environ.get("FASTRNN_NUMBA_CACHE", "1").strip() in ("0", "false", "no", "off"):
        return False
    from numba.core import config
    from numba.misc.appdirs import AppDirs

    package_dir = package_dir or Path(__file__).parent
    candidates = [package_dir / "_numba" / "__pycache__",
                  Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)]
    if config.CACHE_DIR:
        candidates.insert(0, Path(config.CACHE_DIR))
    return any(_writable(folder) for folder in candidates)


def jit(fn):
    """Compile ``fn`` lazily with fastrnn's Numba options and on-disk cache policy."""
    import numba

    return numba.njit(cache=numba_cache_enabled(), **NUMBA_OPTIONS)(fn)


def jit_stream(fn):
    """``jit`` with STREAM_OPTIONS, for the streaming-inference kernels only."""
    import numba

    return numba.njit(cache=numba_cache_enabled(), **STREAM_OPTIONS)(fn)
