"""fastrnn from several Python threads: the kernels release the GIL, so threads sharing
one Params object must not share buffers either."""
import threading

import numpy as np
import pytest

import fastrnn

BACKENDS = fastrnn.available_backends()


def run_in_threads(work, n=2):
    """work(i) in n threads started together; returns their results in order."""
    results, errors = [None] * n, []
    start = threading.Barrier(n)

    def target(i):
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:      # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_sharing_params_get_their_own_results(backend):
    """forward and loss_and_grad at the same (T, B) in two threads, 30 times each: every
    result is the one a lone call gives (they shared one cached workspace before)."""
    params = fastrnn.init_params(8, 64, 8, cell="lstm", num_layers=2, seed=0)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((20, 4, 8)) for _ in range(2)]
    y = rng.integers(0, 8, size=(20, 4))
    expected = [(fastrnn.forward(params, x, backend=backend)[0],
                 fastrnn.loss_and_grad(params, x, y, backend=backend)[0]) for x in xs]

    def work(i):
        wrong = 0
        for _ in range(30):
            o = fastrnn.forward(params, xs[i], backend=backend)[0]
            loss = fastrnn.loss_and_grad(params, xs[i], y, backend=backend)[0]
            wrong += not (np.array_equal(o, expected[i][0]) and loss == expected[i][1])
        return wrong

    assert run_in_threads(work) == [0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_streams_of_one_params_in_two_threads_are_independent(backend):
    """Two Streams over one LSTM stack, one per thread: each gives the outputs it gives
    alone."""
    params = fastrnn.init_params(8, 64, 8, cell="lstm", num_layers=2, seed=0)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((200, 2, 8)) for _ in range(2)]

    def stream_all(x):
        stream = fastrnn.Stream(params, batch_size=2, backend=backend)
        return np.stack([stream(x_t).copy() for x_t in x])

    expected = [stream_all(x) for x in xs]
    outputs = run_in_threads(lambda i: stream_all(xs[i]))
    for got, want in zip(outputs, expected):
        np.testing.assert_array_equal(got, want)


def openblas_threads():
    import threadpoolctl

    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["internal_api"] == "openblas"]


@pytest.fixture
def openblas_at_two_threads():
    """Every OpenBLAS of the process at two threads during the test, restored after."""
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS)
    import threadpoolctl

    if not openblas_threads():
        pytest.skip("no OpenBLAS loaded")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield


def test_one_thread_limits_openblas_until_the_last_of_nested_entries(openblas_at_two_threads):
    from fastrnn._blas_threads import one_thread

    before = openblas_threads()
    with one_thread:
        with one_thread:
            assert set(openblas_threads()) == {1}
        assert set(openblas_threads()) == {1}
    assert openblas_threads() == before


def test_one_thread_restores_the_counts_of_its_first_entry(openblas_at_two_threads):
    """Concurrent passes in two Python threads: the limit holds until both have ended."""
    from fastrnn._blas_threads import one_thread

    before = openblas_threads()
    inside, leave = threading.Event(), threading.Event()

    def first():
        with one_thread:
            inside.set()
            leave.wait()

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with one_thread:
        pass
    assert set(openblas_threads()) == {1}, "the second pass lifted the first one's limit"
    leave.set()
    thread.join()
    assert openblas_threads() == before


@pytest.mark.parametrize("cell, H, B, limited", [
    ("tanh", 128, 32, True),        # fastrnn train's default model
    ("tanh", 256, 32, True),        # the benchmark's size M
    ("lstm", 128, 32, True),
    ("lstm", 256, 32, False),       # per-step products large enough for two threads
    ("tanh", 512, 32, False),
    ("tanh", 100, 1, False),        # size S: no product reaches OpenBLAS's threads
])
def test_passes_below_the_crossover_run_blas_on_one_thread(cell, H, B, limited):
    from fastrnn import _blas_threads

    params = fastrnn.init_params(64, H, 64, cell=cell)
    T = 25 if B == 1 else 50
    assert (_blas_threads.for_pass(params, T, B) is _blas_threads.one_thread) is limited


def test_sequence_passes_run_in_their_blas_context(monkeypatch):
    """forward, and loss_and_grad's forward and backward passes, each run inside
    ``for_pass``'s context (which limits BLAS's threads for small products)."""
    from fastrnn import _blas_threads

    passes = []
    real = _blas_threads.for_pass

    def recording(params, T, B):
        passes.append((T, B))
        return real(params, T, B)

    monkeypatch.setattr(_blas_threads, "for_pass", recording)
    params = fastrnn.init_params(3, 4, 5, seed=0)
    x = np.zeros((6, 2), dtype=np.int64)
    fastrnn.forward(params, x)
    assert passes == [(6, 2)]
    fastrnn.loss_and_grad(params, x, x)
    assert passes == [(6, 2)] * 3
