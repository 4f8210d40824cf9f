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

Every network runs through the stack kernels of ``stack``, the derivation's network as
the stack of one vanilla cell.

The per-cell arrays reach the stack kernels through a ``stack.Cells`` table made once per
workspace (``cells``), and the loss kernels' typed memoryviews of the outputs are made
once per workspace too: made afresh, each would be a small Python object per call.
"""
import os
import threading
import weakref

import threadpoolctl

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

_views: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _outputs(ws):
    """Typed memoryviews of ws.o and ws.do, made once per workspace."""
    found = _views.get(ws)
    if found is None:
        found = _views[ws] = (rnn.view3(ws.o), rnn.view3(ws.do))
    return found


def loss(kind, reduction, y, ws):
    scale = 1.0 / y.size if reduction == "mean" else 1.0
    kernel = rnn.cross_entropy if kind == "cross_entropy" else rnn.squared_error
    o, do = _outputs(ws)
    return kernel(o, y, scale, do)


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


def forward(params, x, h0, c0, ws):
    _run_pass(stack.stack_forward, cells(params, ws, ws.grads), x.shape[0], x.shape[1], x,
              h0, h0 if c0 is None else c0, params.V, params.c, ws.o, ws.h_T, ws.c_T)


def backward(params, x, ws, grads):
    dh0 = grads.h0.reshape(ws.h_T.shape)
    dc0 = ws.grad_c0 if grads.c0 is None else grads.c0.reshape(dh0.shape)
    _run_pass(stack.stack_backward, cells(params, ws, grads), x.shape[0], x.shape[1], x,
              params.V, ws.do, grads.V, grads.c, dh0, dc0)


def step(params, x_t, h0, c0, o_out, h_out, c_out, ws):
    return stack.stack_step(cells(params, ws, ws.grads), x_t, h0, h0 if c0 is None else c0,
                            params.V, params.c, o_out, h_out,
                            ws.c_T if c_out is None else c_out)
