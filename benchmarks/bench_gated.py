"""Gated cells: LSTM and GRU training steps and LSTM inference, against PyTorch.

Legend: T time steps, B batch, D input size, H hidden size, O output size. The cases are
``fastrnn.bench.GATED_CASES``, all float32 with dense (T, B, D) inputs:

- "lstm", "gru": one layer at size M (T=100 B=32 D=64 H=256 O=64), a training step
  (forward, cross-entropy with reduction "sum", full backward);
- "lstm-2x-bi": the same with two bidirectional LSTM layers (no target, tracked);
- "lstm-infer": an LSTM forward pass at T=150 B=1 D=H=O=256.

The issue's targets are ratios of PyTorch's time to fastrnn's (>= 1.2 for "lstm",
>= 1.5 for "gru" and "lstm-infer"); ``python -m fastrnn bench`` (with ``gated=True``)
reports them from one run. Here the two sides are separate benchmarks: fastrnn per
backend, and TimeTorchGated.

Building the problem, Numba compilation (or loading it from the disk cache), workspace
allocation and PyTorch's first-call set-up happen in ``setup``.
"""
from fastrnn.bench import GATED_CASES, gated_problem, measured_call

from .common import BACKENDS, GATED_CASE_NAMES, check_backend, skip_without_torch

TRAINING_CASES = [name for name in GATED_CASE_NAMES if GATED_CASES[name]["train"]]
INFERENCE_CASES = [name for name in GATED_CASE_NAMES if not GATED_CASES[name]["train"]]
# Too slow on the reference backend to sample: skipped there.
REFERENCE_SKIPS = ("lstm-2x-bi",)


class GatedTrainingStep:
    """``fastrnn.loss_and_grad`` per backend and training case.

    The reference backend is skipped at "lstm-2x-bi"; a backend that is not available
    is skipped everywhere.
    """

    params = (list(BACKENDS), TRAINING_CASES)
    param_names = ("backend", "case")
    timeout = 300

    def setup(self, backend, name):
        check_backend(backend)
        if backend == "reference" and name in REFERENCE_SKIPS:
            raise NotImplementedError(f"the reference backend is too slow at {name}")
        self.step = measured_call(backend, *gated_problem(GATED_CASES[name]))
        self.step()

    def time_loss_and_grad(self, backend, name):
        self.step()

    def peakmem_loss_and_grad(self, backend, name):
        self.step()


class GatedInference:
    """``fastrnn.forward`` (outputs o_t and the final state) per backend."""

    params = (list(BACKENDS), INFERENCE_CASES)
    param_names = ("backend", "case")
    timeout = 300

    def setup(self, backend, name):
        check_backend(backend)
        self.forward = measured_call(backend, *gated_problem(GATED_CASES[name]),
                                     train=False)
        self.forward()

    def time_forward(self, backend, name):
        self.forward()

    def peakmem_forward(self, backend, name):
        self.forward()


class TimeTorchGated:
    """PyTorch's ``nn.LSTM`` / ``nn.GRU`` + ``nn.Linear`` on every gated case.

    ``fastrnn.bench.measured_call("torch", ...)``: the same weights
    (``fastrnn.interop.to_torch``) and inputs as the fastrnn side; a training case zeroes
    the gradients and runs forward, ``cross_entropy`` (reduction "sum") and
    ``backward``, an inference case runs forward under ``torch.inference_mode()``.
    Skipped when torch is not installed.
    """

    params = (list(GATED_CASE_NAMES),)
    param_names = ("case",)
    timeout = 300

    def setup(self, name):
        skip_without_torch()
        case = GATED_CASES[name]
        self.step = measured_call("torch", *gated_problem(case), train=case["train"])
        self.step()

    def time_step(self, name):
        self.step()

    def peakmem_step(self, name):
        self.step()


class GatedCythonThreads:
    """The Cython backend's gated passes on one thread and on all of them.

    ``threads="one"`` sets ``stack.set_threads(1)``: every product through BLAS (its own
    threads), the time loop on the calling thread. ``"all"`` keeps the default (the CPUs
    this process may use): the time loops of the float32 LSTM and GRU run on that many
    threads, each owning a block of hidden units (``fastrnn/_cython/_parallel.h``).
    The difference between the two is what the parallel passes bring.
    """

    params = (list(GATED_CASE_NAMES), ["one", "all"])
    param_names = ("case", "threads")
    timeout = 300

    def setup(self, name, threads):
        check_backend("cython")
        from fastrnn._cython import kernels

        self.stack = kernels.stack
        self.default = self.stack.get_threads()
        if threads == "one":
            self.stack.set_threads(1)
        case = GATED_CASES[name]
        self.run_pass = measured_call("cython", *gated_problem(case), train=case["train"])
        self.run_pass()

    def teardown(self, name, threads):
        self.stack.set_threads(self.default)

    def time_pass(self, name, threads):
        self.run_pass()
