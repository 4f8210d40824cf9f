"""The Cython backend's parallel passes: float32 LSTM and GRU stacks whose time loops
(and products) run on several threads, each owning a block of hidden units.

comp = the pass with the thread count forced, ref = the float64 reference. The parallel
loops sum their products in another order than BLAS does (by fused multiply-adds, in
order of k), so they are held to the float32 convention of test_gated_kernels.py
against the reference, and to a few ulp of each tensor's scale against the same pass on
one thread. The sizes are small, so that the forced thread counts see uneven blocks of
units (H = 48 on 2 threads: 16 and 32 units), batches that are no multiple of the
6- and 4-row kernels, and one row.
"""
import os
import pickle
import select
import signal
import threading

import numpy as np
import pytest
import threadpoolctl

import fastrnn

from conftest import RTOL

pytestmark = pytest.mark.skipif("cython" not in fastrnn.available_backends(),
                                reason="the Cython extension is not built")


@pytest.fixture
def ck():
    from fastrnn._cython import kernels
    return kernels


@pytest.fixture
def parallel(ck):
    if not ck.stack.parallel_loops():
        pytest.skip("this build has no parallel loops (not the x86-64 AVX2 build)")
    return ck


def force_threads(monkeypatch, ck, n):
    """Every stack pass runs on n threads, whatever its size."""
    monkeypatch.setattr(ck.stack, "pass_threads", lambda cells, T, B: n)


def problem(cell, num_layers, bidirectional, tokens, T, B, H, D=12, O=7, seed=0):
    rng = np.random.default_rng(seed)
    params = fastrnn.init_params(D, H, O, cell=cell, num_layers=num_layers,
                                 bidirectional=bidirectional, dtype=np.float32, seed=seed)
    params.data[...] += rng.uniform(-0.1, 0.1, params.data.shape).astype(np.float32)
    x = rng.integers(0, D, (T, B)) if tokens else \
        rng.standard_normal((T, B, D)).astype(np.float32)
    y = rng.integers(0, O, (T, B))
    n = num_layers * (2 if bidirectional else 1)
    h0 = rng.standard_normal((n, B, H)).astype(np.float32) * 0.5
    state = (h0, rng.standard_normal((n, B, H)).astype(np.float32)) if cell == "lstm" else h0
    return params, x, y, state


def results(params, x, y, state, backend):
    """Outputs, final state, loss and every gradient of a training step, in float64."""
    o, _ = fastrnn.forward(params, x, state, backend=backend)
    L, grads, final = fastrnn.loss_and_grad(params, x, y, state, backend=backend)
    out = {"o": o, "loss": np.array(L), "grads": grads.data, "dh0": grads.h0}
    for i, part in enumerate(final if isinstance(final, tuple) else (final,)):
        out[f"final{i}"] = part
    return {name: np.array(value, dtype=np.float64) for name, value in out.items()}


def as_float64(params, x, state):
    cast = (lambda a: a.astype(np.float64))
    return (params.astype(np.float64), x if x.dtype.kind == "i" else cast(x),
            tuple(map(cast, state)) if isinstance(state, tuple) else cast(state))


CASES = [  # (num_layers, bidirectional, tokens, T, B, H, threads)
    (1, False, False, 9, 5, 48, 2),
    (1, False, True, 7, 1, 32, 2),
    (1, False, False, 6, 8, 64, 3),
    (2, False, True, 5, 3, 32, 2),
    (2, True, False, 6, 4, 32, 2),
]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers, bidirectional, tokens, T, B, H, threads", CASES)
def test_parallel_pass_matches_reference_and_one_thread(parallel, monkeypatch, cell,
                                                        num_layers, bidirectional, tokens,
                                                        T, B, H, threads):
    params, x, y, state = problem(cell, num_layers, bidirectional, tokens, T, B, H)
    ref_params, ref_x, ref_state = as_float64(params, x, state)
    ref = results(ref_params, ref_x, y, ref_state, "reference")
    force_threads(monkeypatch, parallel, 1)
    one = results(params, x, y, state, "cython")
    force_threads(monkeypatch, parallel, threads)
    comp = results(params, x, y, state, "cython")
    assert comp.keys() == ref.keys()
    for name in ref:
        scale = max(np.abs(ref[name]).max(), 1e-30)
        np.testing.assert_allclose(comp[name], ref[name], rtol=0,
                                   atol=RTOL[np.float32] * scale, err_msg=name)
        np.testing.assert_allclose(comp[name], one[name], rtol=0, atol=1e-5 * scale,
                                   err_msg=name)


def test_parallel_pass_is_deterministic(parallel, monkeypatch):
    """The same pass on the same number of threads gives the same bits: every thread
    owns fixed units and rows, and every sum runs in a fixed order."""
    params, x, y, state = problem("lstm", 1, False, False, T=6, B=5, H=64)
    runs = {}
    for threads in (2, 3, 2, 3):
        force_threads(monkeypatch, parallel, threads)
        got = results(params, x, y, state, "cython")
        for name, value in runs.setdefault(threads, got).items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.parametrize("dtype, cell, H, T, B, expect_parallel", [
    (np.float32, "lstm", 256, 100, 32, True),
    (np.float32, "gru", 256, 150, 1, True),
    (np.float64, "lstm", 256, 100, 32, False),     # the packed products are float32
    (np.float32, "tanh", 256, 100, 32, False),
    (np.float32, "lstm", 250, 100, 32, False),     # H no multiple of 16
    (np.float32, "lstm", 16, 20, 2, False),        # too small to pay for the threads
])
def test_which_passes_run_in_parallel(parallel, dtype, cell, H, T, B, expect_parallel):
    params = fastrnn.init_params(4, H, 3, cell=cell, num_layers=2, dtype=dtype, seed=0)
    ws = fastrnn.get_workspace(params, T, B)
    threads = parallel.stack.pass_threads(parallel.cells(params, ws, ws.grads), T, B)
    if expect_parallel:
        assert threads == min(parallel.stack.get_threads(), H // 16)
    else:
        assert threads == 1


def blas_threads():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"]


@pytest.mark.parametrize("threads", [1, 2])
def test_blas_runs_single_threaded_during_a_parallel_pass_only(parallel, monkeypatch,
                                                               threads):
    before, seen = blas_threads(), []

    def kernel(cells, *args, threads=1):
        seen.append((threads, blas_threads()))
        raise RuntimeError("stop")

    force_threads(monkeypatch, parallel, threads)
    with pytest.raises(RuntimeError, match="stop"):
        parallel._run_pass(kernel, None, 100, 32)
    assert seen == [(threads, before if threads == 1 else [1] * len(before))]
    assert blas_threads() == before               # restored, after an exception too


def test_concurrent_parallel_passes_restore_blas_threads_once(parallel, monkeypatch):
    """Threads running parallel passes at once: BLAS stays at one thread until the last
    one ends, then gets its own count back; each thread gets its own results."""
    before = blas_threads()
    force_threads(monkeypatch, parallel, 2)
    params, x, y, state = problem("gru", 1, False, False, T=8, B=4, H=32)
    expected = results(params, x, y, state, "cython")
    barrier, failures = threading.Barrier(3), []

    def work():
        try:
            barrier.wait()
            for _ in range(5):
                got = results(params, x, y, state, "cython")
                for name in expected:
                    np.testing.assert_array_equal(got[name], expected[name])
        except Exception as exc:                  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert blas_threads() == before


def test_a_pass_on_another_python_thread_runs_blas_single_threaded(parallel, monkeypatch):
    """Passes on the main thread, then on another one: both limit BLAS (threadpoolctl
    3.8 would ignore the second thread's limit, OpenBLAS's count being set only by the
    first thread that set it)."""
    before, seen = blas_threads(), []

    def kernel(cells, *args, threads=1):
        seen.append(blas_threads())

    def run():
        parallel._run_pass(kernel, None, 100, 32)

    force_threads(monkeypatch, parallel, 2)
    run()
    other = threading.Thread(target=run)
    other.start()
    other.join()
    assert seen == [[1] * len(before)] * 2
    assert blas_threads() == before


@pytest.mark.parametrize("last", ["first", "second"])
def test_the_last_pass_to_end_lifts_the_limit_whichever_thread_began_it(parallel, last):
    """Two threads' passes overlap, the first to begin sets the limit; when both have
    ended, BLAS has its counts back, both threads still alive."""
    before, limit = blas_threads(), parallel._single_threaded_blas
    entered, leave, left = ([threading.Event(), threading.Event()] for _ in range(3))
    finish = threading.Event()

    def worker(i):
        with limit:
            entered[i].set()
            leave[i].wait(10)
        left[i].set()
        finish.wait(10)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for i, t in enumerate(threads):
        t.start()
        entered[i].wait(10)
    inside = blas_threads()
    for i in ((1, 0) if last == "first" else (0, 1)):
        leave[i].set()
        left[i].wait(10)
    after = blas_threads()
    finish.set()
    for t in threads:
        t.join(10)
    assert inside == [1] * len(before)
    assert after == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_fork_waits_for_a_change_of_the_blas_limit_in_progress(parallel):
    """A child forked while OpenBLAS changes its thread count would inherit OpenBLAS's
    lock held, and wait for it forever when it lifts the limit: fork() waits."""
    limit, released = parallel._single_threaded_blas, []
    holding = threading.Event()

    def change():
        with limit._lock:                 # as __enter__ and __exit__ hold it
            holding.set()
            threading.Event().wait(0.3)
            released.append(True)

    t = threading.Thread(target=change)
    t.start()
    holding.wait(10)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked_after_release = bool(released)
    os.waitpid(pid, 0)
    t.join()
    assert forked_after_release


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_runs_parallel_passes(parallel, monkeypatch):
    """The pool's threads are not in a child process after fork(); the child starts
    its own instead of waiting for them forever."""
    force_threads(monkeypatch, parallel, 2)
    params, x, y, state = problem("lstm", 1, False, False, T=8, B=4, H=32)
    expected = results(params, x, y, state, "cython")     # the pool has its threads
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                          # the child
        try:
            os.write(write, pickle.dumps(results(params, x, y, state, "cython")))
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    try:
        while select.select([read], [], [], 60)[0]:
            chunk = os.read(read, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child's parallel pass did not finish within 60 s")
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    got = pickle.loads(b"".join(chunks))
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert results(params, x, y, state, "cython").keys() == expected.keys()  # parent too


def test_a_child_forked_during_a_parallel_pass_gets_its_blas_threads_back(parallel):
    """The pass that would lift the BLAS limit runs on in the parent only."""
    before = blas_threads()
    read, write = os.pipe()
    with parallel._single_threaded_blas:
        pid = os.fork()
        if pid == 0:
            try:
                os.write(write, pickle.dumps((blas_threads(),
                                              parallel._single_threaded_blas._active)))
            finally:
                os._exit(0)
        assert blas_threads() == [1] * len(before)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        child = pickle.loads(f.read())
    os.waitpid(pid, 0)
    assert child == (before, 0)
    assert blas_threads() == before


def test_the_kernels_refuse_a_thread_count_the_stack_cannot_use(parallel, monkeypatch):
    """H = 40 is no multiple of 16 (units 32..39 would be left out), a tanh stack has
    no parallel loop, and 0 threads are none."""
    for cell, H, threads in (("lstm", 40, 2), ("tanh", 32, 2), ("gru", 32, 0)):
        params = fastrnn.init_params(4, H, 3, cell=cell, num_layers=2, dtype=np.float32)
        x = np.zeros((5, 2, 4), np.float32)
        force_threads(monkeypatch, parallel, threads)
        limit = 1 if threads else 2
        with pytest.raises(ValueError, match=f"threads: expected 1 to {limit} for this "
                                             f"stack, got {threads}"):
            fastrnn.forward(params, x, backend="cython")


def test_a_pass_runs_on_at_most_64_threads(parallel):
    params = fastrnn.init_params(4, 1056, 3, cell="lstm", dtype=np.float32)
    ws = fastrnn.get_workspace(params, 1, 1)
    default = parallel.stack.get_threads()
    try:
        parallel.stack.set_threads(100)
        assert parallel.stack.pass_threads(parallel.cells(params, ws, ws.grads), 1, 1) == 64
    finally:
        parallel.stack.set_threads(default)


@pytest.mark.parametrize("cpu_max, cap", [("max 100000\n", None), ("150000 100000\n", 2),
                                          ("50000 100000\n", 1), ("garbage\n", None)])
def test_the_default_thread_count_respects_a_cgroup_quota(ck, tmp_path, cpu_max, cap):
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    cpus = len(os.sched_getaffinity(0))
    assert ck._usable_cpus(str(path)) == (cpus if cap is None else min(cpus, cap))
    assert ck._usable_cpus(str(tmp_path / "missing")) == cpus


def test_set_threads_refuses_a_count_below_one(ck):
    with pytest.raises(ValueError, match="n: expected a number of threads >= 1, got 0"):
        ck.stack.set_threads(0)


@pytest.mark.parametrize("value", ["0", "two", "-3"])
def test_a_bad_thread_count_in_the_environment_is_named(ck, monkeypatch, value):
    monkeypatch.setenv("FASTRNN_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"FASTRNN_NUM_THREADS: expected a whole number "
                                         f">= 1, got '{value}'"):
        ck._default_threads()


@pytest.mark.parametrize("value", ["100", "3000000000"])
def test_a_thread_count_above_the_cap_is_the_cap(ck, monkeypatch, value):
    """More threads than FRNN_MAX_THREADS (64), even more than a C int holds, is 64."""
    default = ck.stack.get_threads()
    monkeypatch.setenv("FASTRNN_NUM_THREADS", value)
    try:
        ck.stack.set_threads(ck._default_threads())
        assert ck.stack.get_threads() == 64
    finally:
        ck.stack.set_threads(default)


def test_the_thread_count_comes_from_the_environment(ck, monkeypatch):
    monkeypatch.setenv("FASTRNN_NUM_THREADS", "3")
    assert ck._default_threads() == 3
    monkeypatch.delenv("FASTRNN_NUM_THREADS")
    assert ck._default_threads() >= 1
