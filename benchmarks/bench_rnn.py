"""Training-step benchmarks: fastrnn's backends against PyTorch, and start-up costs.

Legend: T time steps, B batch, D input size, H hidden size, O output size; the sizes
S, M, L are ``fastrnn.bench.SIZES``. A training step is forward, cross-entropy loss
(reduction "sum") and BPTT on (T, B) token ids or (T, B, D) dense inputs.

Everything that is not the measured call (building the problem, Numba compilation or
loading from its disk cache, workspace allocation, PyTorch's first-call set-up) happens
in ``setup``.
"""
import os
import statistics
import subprocess
import sys
import time

from fastrnn.bench import measured_call, training_flops, training_problem

from .common import BACKENDS, DTYPES, SIZE_NAMES, check_backend, size, skip_without_torch

# Timed runs behind each track_gflops figure (their median is used).
GFLOPS_RUNS = 5


def _gflops(fn, flops: float) -> float:
    """GFLOP/s of ``fn()`` doing ``flops`` operations, from the median of timed runs,
    to one decimal (the runs vary by more; asv would show every digit)."""
    seconds = []
    for _ in range(GFLOPS_RUNS):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return round(flops / statistics.median(seconds) / 1e9, 1)


class TrainingStep:
    """``fastrnn.loss_and_grad`` and ``fastrnn.forward`` per backend, size and dtype.

    The reference backend is skipped at L (too slow to sample there); a backend that is
    not in ``fastrnn.available_backends()`` is skipped everywhere.
    """

    params = (list(BACKENDS), list(SIZE_NAMES), list(DTYPES))
    param_names = ("backend", "size", "dtype")
    timeout = 300

    def setup(self, backend, name, dtype):
        check_backend(backend)
        if backend == "reference" and name == "L":
            raise NotImplementedError("the reference backend is too slow at L")
        problem = training_problem(size(name, dtype))
        self.step = measured_call(backend, *problem)
        self.forward = measured_call(backend, *problem, train=False)
        self.flops = training_flops(**size(name, dtype))
        self.step()
        self.forward()                  # asv reruns setup: time_forward starts warm too

    def time_loss_and_grad(self, backend, name, dtype):
        self.step()

    def time_forward(self, backend, name, dtype):
        self.forward()

    def peakmem_loss_and_grad(self, backend, name, dtype):
        self.step()

    def track_gflops(self, backend, name, dtype):
        return _gflops(self.step, self.flops)

    track_gflops.unit = "GFLOP/s"


class TorchTrainingStep:
    """PyTorch's ``nn.RNN`` + ``nn.Linear`` + ``cross_entropy``, forward and backward.

    The same sizes, weights (``fastrnn.interop.to_torch``) and inputs as TrainingStep
    (``fastrnn.bench.measured_call``; token ids are one-hot encoded once, in setup).
    Skipped when torch is not installed.
    """

    params = (list(SIZE_NAMES), list(DTYPES))
    param_names = ("size", "dtype")
    timeout = 300

    def setup(self, name, dtype):
        skip_without_torch()
        self.step = measured_call("torch", *training_problem(size(name, dtype)))
        self.flops = training_flops(**size(name, dtype))
        self.step()

    def time_loss_and_grad(self, name, dtype):
        self.step()

    def peakmem_loss_and_grad(self, name, dtype):
        self.step()

    def track_gflops(self, name, dtype):
        return _gflops(self.step, self.flops)

    track_gflops.unit = "GFLOP/s"


# Run in a fresh interpreter; each prints the seconds it measured on its last line.
_IMPORT = """
import time
start = time.perf_counter()
import fastrnn
print(time.perf_counter() - start)
"""
_FIRST_CALL = """
import time
import numpy as np
import fastrnn
params = fastrnn.init_params(5, 4, 3, seed=0)            # D=5 H=4 O=3 float64
x = np.array([[0], [4]])                                 # (T=2, B=1) token ids
y = np.array([[1], [2]])                                 # (T=2, B=1) class ids
start = time.perf_counter()
fastrnn.loss_and_grad(params, x, y, backend="numba")
print(time.perf_counter() - start)
"""


def _seconds_in_subprocess(code: str, **env) -> float:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=dict(os.environ, **env))
    return float(proc.stdout.split()[-1])


class CompileTime:
    """What a new process pays before its first training step.

    ``track_first_call_seconds``: the first ``loss_and_grad`` with the Numba backend,
    on token ids at a tiny size, with the on-disk cache off (FASTRNN_NUMBA_CACHE=0), so
    every kernel it needs is compiled. ``track_import_seconds``: ``import fastrnn``.
    Both are measured in a fresh interpreter.
    """

    timeout = 180

    def setup(self):
        check_backend("numba")

    def track_first_call_seconds(self):
        return _seconds_in_subprocess(_FIRST_CALL, FASTRNN_NUMBA_CACHE="0")

    track_first_call_seconds.unit = "seconds"

    def track_import_seconds(self):
        return _seconds_in_subprocess(_IMPORT)

    track_import_seconds.unit = "seconds"
