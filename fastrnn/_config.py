"""One place for environment switches and Numba options.

FASTRNN_BACKEND       overrides what backend="auto" resolves to ("numba", "reference", ...).
FASTRNN_NUMBA_CACHE   where the compiled Numba kernels are cached on disk:
                      unset, empty, "1", "true", "yes" or "on": the per-user folder (below);
                      "0", "false", "no" or "off": no cache, kernels compile in each process;
                      any other value: a folder, used as it is (created if missing), e.g.
                      one that the stages of a CI job share.

The per-user folder is ``<user cache folder>/fastrnn/<version>-<interpreter>``, e.g.
``~/.cache/fastrnn/0.1.0-cpython-311`` on Linux (under ``$XDG_CACHE_HOME`` when set),
``~/Library/Caches/fastrnn/...`` on macOS, ``%LOCALAPPDATA%/fastrnn/Cache/...`` on
Windows, and ``$NUMBA_CACHE_DIR/fastrnn/...`` when Numba's own NUMBA_CACHE_DIR is set.
In the folder, each source folder of fastrnn gets a subfolder named after its path, so
that two installs of one version keep their own kernels. Nothing is ever written into
the installed package (pip could not uninstall it), and other code's Numba caches stay
where Numba's settings put them: fastrnn's kernels have a cache locator of their own
rather than a change to Numba's process-wide settings. When the folder cannot be written
to, or fastrnn is imported from a zip archive, kernels compile in memory, every process.

Every Numba kernel is compiled through ``jit`` below, with ``nogil=True`` (independent
models can train in parallel threads) and no ``fastmath``: the kernels compute gradients
and must keep IEEE semantics for NaN and Inf. Nothing is compiled at import time.
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path

from ._version import __version__

NUMBA_OPTIONS = dict(nogil=True, fastmath=False, error_model="numpy")
# Streaming inference computes no gradient and checks nothing for finiteness: it may let
# LLVM reassociate sums (so that dot products vectorise), and nothing more.
STREAM_OPTIONS = dict(NUMBA_OPTIONS, fastmath={"reassoc", "contract"})


def backend_override() -> str | None:
    """The backend named by FASTRNN_BACKEND, or None when unset, empty or "auto"."""
    name = os.environ.get("FASTRNN_BACKEND")
    return None if name in (None, "", "auto") else name


_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def default_cache_dir() -> Path:
    """The per-user folder of fastrnn's kernels, for this version and interpreter."""
    from numba.core import config
    from numba.misc.appdirs import AppDirs

    base = (Path(config.CACHE_DIR, "fastrnn") if config.CACHE_DIR
            else Path(AppDirs(appname="fastrnn", appauthor=False).user_cache_dir))
    return base / f"{__version__}-{sys.implementation.cache_tag}"


@functools.cache
def kernel_cache_dir() -> Path | None:
    """The folder where compiled kernels are cached, or None when they are not.

    None when FASTRNN_NUMBA_CACHE turns the cache off, the folder cannot be written to,
    or fastrnn's sources are no files (imported from a zip archive: Numba's source stamps
    need files).
    """
    if not Path(__file__).is_file():
        return None
    setting = os.environ.get("FASTRNN_NUMBA_CACHE", "").strip()
    if setting.lower() in _OFF:
        return None
    folder = default_cache_dir() if setting.lower() in _ON else Path(setting).expanduser()
    return folder.absolute() if _writable(folder) else None


def numba_cache_enabled() -> bool:
    """Whether kernels are cached on disk (see ``kernel_cache_dir``)."""
    return kernel_cache_dir() is not None


@functools.cache
def _function_cache():
    """Numba's per-function cache, with a locator that writes into kernel_cache_dir()."""
    from numba.core import caching

    class Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            subfolder = self.get_suitable_cache_subpath(py_file)
            self._cache_path = str(kernel_cache_dir() / subfolder)

        def get_cache_path(self):
            return self._cache_path

    class Impl(caching.CompileResultCacheImpl):
        _locator_classes = [Locator]

    class KernelCache(caching.FunctionCache):
        _impl_class = Impl

    return KernelCache


def _compile(fn, options: dict):
    """``fn`` compiled lazily with ``options``, cached in kernel_cache_dir() if any."""
    import numba

    dispatcher = numba.njit(**options)(fn)
    if numba_cache_enabled():
        # What Dispatcher.enable_caching does, with fastrnn's folder instead of the ones
        # Numba's settings choose for every cached function of the process.
        dispatcher._cache = _function_cache()(fn)
    return dispatcher


def jit(fn):
    """Compile ``fn`` lazily with fastrnn's Numba options and on-disk cache policy."""
    return _compile(fn, NUMBA_OPTIONS)


def jit_stream(fn):
    """``jit`` with STREAM_OPTIONS, for the streaming-inference kernels only."""
    return _compile(fn, STREAM_OPTIONS)
