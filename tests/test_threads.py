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
