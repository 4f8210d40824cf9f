"""BLAS threads for training jobs that own their process.

Legend: B batch, H hidden size, G the height of W (H, 3H or 4H).
"""
import contextlib

import threadpoolctl

# Below this many multiply-adds in one time step's product with W (B x G x H, G the
# height of W), a second BLAS thread gains little (benchmarks/blas_threads.py).
ONE_BLAS_THREAD_BELOW = 2**23


def blas_threads_for(model, batch: int):
    """A context manager: the BLAS threads that a training job owning its process
    (``fastrnn train``, the benchmark's trainings) runs with, given its model and batch.

    For a model whose per-step products gain little from a second thread, BLAS runs on
    one: OpenBLAS's threads spin while they wait, and two such trainings on two cores ran
    many times slower each with them, about as fast as one alone without them
    (``fastrnn bench --concurrent``).
    """
    p = model.params
    if batch * p.gate_rows * p.hidden_size >= ONE_BLAS_THREAD_BELOW:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")
