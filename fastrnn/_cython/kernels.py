"""The Cython backend behind the kernel contract (documented in fastrnn.backends).

Importing this module raises ImportError when the extension was not built, which is how
the registry learns that the backend is unavailable.

The kernels are built twice (see setup.py): ``rnn`` for any CPU of the platform and, on
x86-64, ``rnn_avx2``, used when the CPU has AVX2 and FMA (``ISA`` says which one runs).
Both compute the same bits; the AVX2 build runs the elementwise loops twice as wide.

Passes of large float32 LSTM and GRU stacks run on several threads in the AVX2 build
(``stack.pass_threads`` decides, ``_run_pass`` runs them): FASTRNN_NUM_THREADS of them,
by default as many as the CPUs this process may use. BLAS is limited to one thread for
such a pass, whose own threads split its products (``_SingleThreadedBlas``).

The time loop multiplies a (B, H) block by W at every step, through BLAS when
B * H * H >= ``BLAS_MIN_WORK`` (for a single row, ``GEMV_FACTOR`` times that) and
through plain loops below. BLAS accumulates onto a_t and kappa_t without a separate
pass, so it pays off much earlier here than in the Numba backend: from B * H * H =
2 * 32 * 32 for B >= 2, and from H = 128 for one row, which goes to GEMV (measured on
the development machine, AVX2 build, both dtypes, T = 25, D = O = 64; the loops of the
baseline build are slower, so there BLAS would pay off earlier still).

Typed memoryviews of the arrays that live as long as their owner (the parameters, the
workspace, the gradients) are made once per owner and reused: made afresh, each would
be a small Python object per array per call, about 2.5 kB for a backward pass.
"""
import os
import threading
import weakref
from operator import attrgetter, is_

import threadpoolctl

from .._contract import CELL_CODES
from . import rnn, stack

ISA = "baseline"
if rnn.cpu_has_avx2():
    try:
        from . import rnn_avx2 as rnn
        from . import stack_avx2 as stack
        ISA = "avx2"
    except ImportError:     # not built: not x86-64, or the compiler refused -mavx2
        pass


def _usable_cpus(cpu_max="/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may run on, fewer if a cgroup's CPU quota allows fewer."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open(cpu_max) as f:                        # "max 100000" or "quota period"
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def _default_threads() -> int:
    """FASTRNN_NUM_THREADS when set, else the CPUs this process may use."""
    value = os.environ.get("FASTRNN_NUM_THREADS", "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"FASTRNN_NUM_THREADS: expected a whole number >= 1, got "
                             f"{value!r}")
        return threads
    return _usable_cpus()


stack.set_threads(_default_threads())

BLAS_MIN_WORK = 2 * 32 * 32
GEMV_FACTOR = 8

PARAMS = attrgetter("U", "W", "b", "V", "c")
WORKSPACE = attrgetter("a", "s", "o", "do", "kappa", "da", "WT")
GRADS = attrgetter("U", "W", "b", "V", "c", "h0")
OUTPUTS = attrgetter("o", "do")

_views: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _blas(B: int, H: int) -> bool:
    return B * H * H >= BLAS_MIN_WORK * (GEMV_FACTOR if B == 1 else 1)


def _view(a):
    return (rnn.view1, rnn.view2, rnn.view3)[a.ndim - 1](a)


def _const_view(a):
    return (rnn.const_view1, rnn.const_view2)[a.ndim - 1](a)


def views(owner, arrays_of, make=_view):
    """Typed memoryviews of the arrays ``arrays_of(owner)``, made on first use by
    ``make`` (``_const_view`` for arrays the kernels only read, which may be read-only).

    They are made again when an attribute has been rebound to another array. (Written
    without generator expressions, whose frames would be allocated at every call.)
    """
    arrays = arrays_of(owner)
    per_owner = _views.get(owner)
    if per_owner is None:
        per_owner = _views[owner] = {}
    cached = per_owner.get(arrays_of)
    if cached is None or not all(map(is_, arrays, cached[0])):
        cached = per_owner[arrays_of] = (arrays, tuple(map(make, arrays)))
    return cached[1]


def forward(params, x, h0, ws):
    kernel = rnn.forward_ids if x.ndim == 2 else rnn.forward_dense
    U, W, b, V, c = views(params, PARAMS, _const_view)
    a, s, o, _, _, _, WT = views(ws, WORKSPACE)
    kernel(CELL_CODES[params.cell], U, W, b, V, c, x, h0, a, s, o, WT,
           _blas(ws.B, params.hidden_size))


def loss(kind, reduction, y, ws):
    scale = 1.0 / y.size if reduction == "mean" else 1.0
    kernel = rnn.cross_entropy if kind == "cross_entropy" else rnn.squared_error
    o, do = views(ws, OUTPUTS)
    return kernel(o, y, scale, do)


def backward(params, x, ws, grads):
    kernel = rnn.backward_ids if x.ndim == 2 else rnn.backward_dense
    _, W, _, V, _ = views(params, PARAMS, _const_view)
    a, s, _, do, kappa, da, _ = views(ws, WORKSPACE)
    dU, dW, db, dV, dc, dh0 = views(grads, GRADS)
    kernel(CELL_CODES[params.cell], W, V, x, a, s, do, kappa, da, dU, dW, db, dV, dc, dh0,
           _blas(ws.B, params.hidden_size))


def step(params, x_t, h, a, o_out, h_out):
    kernel = rnn.step_ids if x_t.ndim == 1 else rnn.step_dense
    U, W, b, V, c = views(params, PARAMS, _const_view)
    return kernel(CELL_CODES[params.cell], U, W, b, V, c, x_t, h, a, o_out, h_out)


# ------------------------------------------------------------------------- stacks
# The stack kernels take a ``stack.Cells``: the addresses of the per-cell arrays of one
# (params, grads, workspace) triple, made once per workspace and made again when the
# params or grads it was made for change.

_cells: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _layer_arrays(owner, prefix=""):
    layers = owner.layers
    return {prefix + "U": [layer.U for layer in layers],
            prefix + "W": [layer.W for layer in layers],
            prefix + "b": [layer.b for layer in layers],
            prefix + "b_hh": [layer.b if layer.b_hh is None else layer.b_hh
                              for layer in layers]}


def cells(params, ws, grads):
    """The ``stack.Cells`` of params, workspace and grads, made on first use."""
    cached = _cells.get(ws)
    if cached is None or cached[0] is not params.data or cached[1] is not grads.data:
        arrays = {**_layer_arrays(params), **_layer_arrays(grads, "d"),
                  "Y": list(ws.Y), "dY": list(ws.dY)}
        for name in ("gates", "aux", "h", "kappa", "da", "dah", "WT"):
            arrays[name] = [getattr(cell, name) for cell in ws.cells]
        cached = _cells[ws] = (params.data, grads.data,
                               stack.Cells(params.cell, params.num_directions, arrays))
    return cached[2]


class _SingleThreadedBlas:
    """While a parallel pass runs (see ``stack.pass_threads``), BLAS runs on one thread.

    The pass splits its products over its own threads; BLAS's threads, which spin for a
    while after each call, would compete with them for the cores. The limit is global
    to the process, as BLAS's thread count is: it is set when the first of any
    concurrent parallel passes starts and lifted when the last one ends, which may be
    in another Python thread. Meanwhile other threads' BLAS calls run single-threaded
    too, with the same results.

    The counts are set through each library's controller, not threadpoolctl's
    ``limit``: for an OpenBLAS with its own threads, threadpoolctl 3.8 lets only the
    first Python thread that set a count change it again, and ignores the others
    without a word. So before each change this clears that "controlling thread", and
    clears it again afterwards, leaving none (``_set``).

    ``fork()`` waits for a change in progress (``_lock``): a child forked while
    OpenBLAS's own lock is held would wait for it forever when it lifts the limit.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._libraries = None          # threadpoolctl's controllers of the BLAS libraries
        self._saved = None              # their thread counts while the limit is on

    def _set(self, counts):
        clear = getattr(getattr(threadpoolctl, "OpenBLASController", None),
                        "clear_controlling_thread", None)        # threadpoolctl >= 3.8
        for library, count in zip(self._libraries, counts):
            if count is None:           # a library that reports no count: left alone
                continue
            if clear is not None:
                clear(force=True)
            library.set_num_threads(count)
        if clear is not None:
            clear(force=True)

    def __enter__(self):
        with self._lock:
            if self._active == 0:
                if self._libraries is None:
                    self._libraries = threadpoolctl.ThreadpoolController().select(
                        user_api="blas").lib_controllers
                if self._saved is None:  # else an interrupted __enter__ saved them
                    self._saved = [library.get_num_threads() for library in self._libraries]
                self._set([None if count is None else 1 for count in self._saved])
            self._active += 1

    def __exit__(self, *exc):
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._set(self._saved)
                self._saved = None

    def _before_fork(self):
        self._lock.acquire()

    def _after_fork_in_parent(self):
        self._lock.release()

    def _after_fork_in_child(self):
        """A child forked during a pass inherits the limit, but not the pass that
        would lift it: it lifts the limit itself."""
        self._lock = threading.Lock()
        self._active = 0
        if self._saved is not None:
            self._set(self._saved)
            self._saved = None


_single_threaded_blas = _SingleThreadedBlas()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_single_threaded_blas._before_fork,
                        after_in_parent=_single_threaded_blas._after_fork_in_parent,
                        after_in_child=_single_threaded_blas._after_fork_in_child)


def _run_pass(kernel, cells, T, B, *args):
    """kernel(cells, *args, threads=...), on several threads where that pays off."""
    threads = stack.pass_threads(cells, T, B)
    if threads == 1:
        return kernel(cells, *args)
    with _single_threaded_blas:
        return kernel(cells, *args, threads=threads)


def stack_forward(params, x, h0, c0, ws):
    kernel = stack.stack_forward_ids if x.ndim == 2 else stack.stack_forward_dense
    _run_pass(kernel, cells(params, ws, ws.grads), x.shape[0], x.shape[1], x, h0,
              h0 if c0 is None else c0, params.V, params.c, ws.o, ws.h_T, ws.c_T)


def stack_backward(params, x, ws, grads):
    kernel = stack.stack_backward_ids if x.ndim == 2 else stack.stack_backward_dense
    dh0 = grads.h0.reshape(ws.h_T.shape)
    dc0 = ws.grad_c0 if grads.c0 is None else grads.c0.reshape(dh0.shape)
    _run_pass(kernel, cells(params, ws, grads), x.shape[0], x.shape[1], x, params.V,
              ws.do, grads.V, grads.c, dh0, dc0)


def stack_step(params, x_t, h0, c0, o_out, h_out, c_out, ws):
    kernel = stack.stack_step_ids if x_t.ndim == 1 else stack.stack_step_dense
    return kernel(cells(params, ws, ws.grads), x_t, h0, h0 if c0 is None else c0, params.V,
                  params.c, o_out, h_out, ws.c_T if c_out is None else c_out)
