"""OpenBLAS on one thread while a fastrnn pass runs whose products gain nothing from threads.

Legend: T time steps, B batch, D input size, H hidden size, O output size, G the height
of W (H, 3H or 4H).

Both compiled backends multiply through SciPy's BLAS (the Cython kernels through
scipy.linalg.cython_blas, Numba's np.dot through the same). OpenBLAS runs a GEMM on all
its threads from m * n * k = 2**18 multiply-adds (a GEMV from m * n = 9216) on, and its
threads then spin, waiting for the next product. A pass makes T products with W, each
waiting for the last; at fastrnn's sizes most of them are too small for a second thread
to gain anything, and when other work (a second training job) holds the cores, every
threaded product waits for a thread that is not running, and two jobs on two cores each
run many times slower, not about twice as slow as single-threaded jobs do.

So a pass whose product per time step, B * G * H multiply-adds, is below ``MIN_WORK``
(where two threads start to gain on an idle machine, measured with
``benchmarks/blas_threads.py``) runs with every OpenBLAS of the process on one thread,
set through OpenBLAS's own ``openblas_set_num_threads`` (half a microsecond; threadpoolctl
takes tens). Larger passes keep the threads the user set. The count is global to the
process: it is set when the first of concurrent limited passes starts and restored when
the last one ends, so that meanwhile other Python threads' products run on one thread
too, with the same results. Other BLAS libraries (MKL, BLIS) are left alone.
"""
from __future__ import annotations

import contextlib
import os
import threading

import threadpoolctl

# B * G * H multiply-adds of one time step's product with W from which two threads gain.
MIN_WORK = 2**23
# OpenBLAS runs a GEMM smaller than this (m * n * k) on one thread (interface/gemm.c).
OPENBLAS_MIN = 2**18


def _openblas_counts():
    """(set, get) of each OpenBLAS loaded, as ctypes functions (symbols of SciPy's and
    NumPy's wheels carry a prefix and, for 64-bit integers, a suffix)."""
    found = []
    for library in threadpoolctl.ThreadpoolController().select(
            internal_api="openblas").lib_controllers:
        for prefix in ("", "scipy_"):
            for suffix in ("", "64_"):
                setter = getattr(library.dynlib, f"{prefix}openblas_set_num_threads{suffix}",
                                 None)
                getter = getattr(library.dynlib, f"{prefix}openblas_get_num_threads{suffix}",
                                 None)
                if setter is not None and getter is not None:
                    found.append((setter, getter))
                    break
            else:
                continue
            break
    return found


class OneThread:
    """Context manager: every OpenBLAS of the process on one thread, from the first of
    concurrent entries to the last exit, which restores the counts found at the first.

    ``fork()`` waits for a change in progress (``_lock``): a child forked while OpenBLAS's
    own lock is held would wait for it forever when it restores the counts. A child forked
    inside a limited pass lifts the limit itself, as no exit will come for it there.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._libraries = None          # [(set, get)] of each OpenBLAS, found at first use
        self._saved = None              # their thread counts while the limit is on

    def __enter__(self):
        with self._lock:
            if self._active == 0:
                if self._libraries is None:
                    self._libraries = _openblas_counts()
                self._saved = [get() for _, get in self._libraries]
                for set_, _ in self._libraries:
                    set_(1)
            self._active += 1

    def __exit__(self, *exc):
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._restore()

    def _restore(self):
        for (set_, _), count in zip(self._libraries, self._saved):
            set_(count)
        self._saved = None

    def _before_fork(self):
        self._lock.acquire()

    def _after_fork_in_parent(self):
        self._lock.release()

    def _after_fork_in_child(self):
        self._lock = threading.Lock()
        self._active = 0
        if self._saved is not None:
            self._restore()


one_thread = OneThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=one_thread._before_fork,
                        after_in_parent=one_thread._after_fork_in_parent,
                        after_in_child=one_thread._after_fork_in_child)

_UNLIMITED = contextlib.nullcontext()


def for_pass(params, T: int, B: int):
    """The context a forward or backward pass of ``params`` over (T, B) inputs runs in:
    ``one_thread`` when its product per time step is below MIN_WORK, unless all of its
    products are too small for OpenBLAS's threads anyway (then setting the count would
    cost more than it saves); else a context that changes nothing."""
    H, G = params.hidden_size, params.gate_rows
    if B * G * H >= MIN_WORK:
        return _UNLIMITED
    # The largest products of a pass: dW (G x TB x H), the input projection or dU
    # (TB x D x G), the output projection or dV (TB x H x O).
    if T * B * max(G * H, G * params.input_size, H * params.output_size) < OPENBLAS_MIN:
        return _UNLIMITED
    return one_thread
