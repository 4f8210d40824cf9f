"""pytest-benchmark: fastrnn's backends against the NumPy reference and PyTorch.

Run from the repository root (``pip install -e ".[bench,test]"`` first)::

    python -m pytest benchmarks/speed --benchmark-only

(``--benchmark-disable`` calls every case once, untimed: a quick check that it runs.)

Legend: T time steps, B batch, D input size, H hidden size, O output size. The cases
are those of ``python -m fastrnn bench`` (``fastrnn.bench``): "rnn-M", a training step
(forward, cross-entropy with reduction "sum", BPTT) of the derivation's tanh RNN at
T=100 B=32 D=64 H=256 O=64 float32; "lstm" and "gru", the same for one LSTM or GRU
layer; "lstm-infer", an LSTM forward pass at T=150 B=1 D=H=O=256. PyTorch runs
``nn.RNN``/``nn.LSTM``/``nn.GRU`` + ``nn.Linear`` with the same weights (a gated case
under ``torch.inference_mode()`` when it is inference). Systems that are missing here
(PyTorch, the Cython extension) are skipped.

After the run, ``conftest.py`` prints each case's medians and the ratios to the
reference and to PyTorch, measured in this one run.

Every system runs in this one process, where the thread pools of SciPy's OpenBLAS
(fastrnn's compiled backends), NumPy's (the reference) and PyTorch's meet: a pool's
threads spin for a while after its last product and slow the next system down. So the
tests run system after system, never alternating, and each warms up for WARM_UP seconds
before it is timed. ``python -m fastrnn bench`` runs each system in a process of its own
and remains the comparison to quote; asv, too, times each benchmark in its own process.
"""
import time

import pytest

import fastrnn
from fastrnn import bench

CASES = ("rnn-M", "lstm", "gru", "lstm-infer")
# One system after the other; PyTorch last, so that its thread pool starts after
# fastrnn's measurements.
SYSTEMS = ("cython", "numba", "reference", "torch")
WARM_UP = 0.5          # seconds: longer than OpenBLAS's threads spin after a product


def _step(case: str, system: str):
    """The no-argument call that ``case`` times for ``system``; skips when unavailable."""
    if system == "torch":
        pytest.importorskip("torch")
    elif system not in fastrnn.available_backends():
        pytest.skip(f"backend {system!r} is not available")
    if case == "rnn-M":
        return bench.measured_call(system, *bench.training_problem(bench.SIZES["M"]))
    gated = bench.GATED_CASES[case]
    return bench.measured_call(system, *bench.gated_problem(gated), train=gated["train"])


@pytest.mark.parametrize("system, case",
                         [(system, case) for system in SYSTEMS for case in CASES])
def test_speed(benchmark, medians, system, case):
    step = _step(case, system)
    start = time.perf_counter()
    while not benchmark.disabled and time.perf_counter() - start < WARM_UP:
        step()
    benchmark.group = case
    rounds = 3 if system == "reference" else 20
    benchmark.pedantic(step, rounds=rounds, iterations=1)    # disabled: one call
    if not benchmark.disabled:
        medians[case, system] = benchmark.stats.stats.median
