"""Streaming inference: the cost of one step called from Python.

Legend: B batch, D input size, H hidden size, O output size. All benchmarks here use
``fastrnn.bench.STEP_SIZE`` (B=1 D=8 H=64 O=8 float32) and a dense (B, D) input.

asv_runner (0.3.x) re-runs ``setup`` before every sample of a benchmark that has one and
then times a single call, which is short, so the samples are many (``repeat``), and a
figure includes the timer's overhead.
"""
import contextlib

import fastrnn
from fastrnn.bench import step_problem

from .common import BACKENDS, check_backend, skip_without_torch

# (min samples, max samples, seconds of sampling)
MICRO_REPEAT = (50, 500, 5.0)


class Stream:
    """``fastrnn.Stream(params, batch_size=1)(x_t)`` and ``fastrnn.step(..., out=(o, h))``.

    The Stream checks params, buffers and backend once, at construction; ``step``
    checks them at every call and writes o_t (B, O) and s_t (B, H) into ``out``.
    """

    params = list(BACKENDS)
    param_names = ("backend",)
    repeat = MICRO_REPEAT

    def setup(self, backend):
        check_backend(backend)
        self.weights, self.x, self.h, o = step_problem()
        self.out = (o, self.h)
        self.stream = fastrnn.Stream(self.weights, batch_size=1, backend=backend)
        self.stream(self.x)
        fastrnn.step(self.weights, self.x, self.h, out=self.out, backend=backend)

    def time_stream_call(self, backend):
        self.stream(self.x)

    def time_step_call(self, backend):
        fastrnn.step(self.weights, self.x, self.h, out=self.out, backend=backend)


class GatedStream:
    """``fastrnn.Stream(params, batch_size=1)(x_t)`` for one layer of LSTM or GRU."""

    params = (list(BACKENDS), ["lstm", "gru"])
    param_names = ("backend", "cell")
    repeat = MICRO_REPEAT

    def setup(self, backend, cell):
        check_backend(backend)
        params, self.x, _, _ = step_problem(cell=cell)
        self.stream = fastrnn.Stream(params, batch_size=1, backend=backend)
        self.stream(self.x)

    def time_stream_call(self, backend, cell):
        self.stream(self.x)


def _enter_inference_mode(bench):
    """Import torch and enter ``torch.inference_mode()`` until ``bench.context`` closes;
    NotImplementedError (asv's "skipped") when torch is not installed."""
    skip_without_torch()
    import torch

    bench.context = contextlib.ExitStack()
    bench.context.enter_context(torch.inference_mode())
    return torch


class TorchRNNCell:
    """PyTorch's ``nn.RNNCell`` (tanh) at the same size, under ``torch.inference_mode()``.

    Inference mode is entered in setup and left in teardown, so that the timed call is
    the cell alone, as Stream's is. Skipped when torch is not installed.
    """

    repeat = MICRO_REPEAT

    def setup(self):
        torch = _enter_inference_mode(self)
        _, x, h, _ = step_problem()
        self.x, self.h = torch.from_numpy(x), torch.from_numpy(h)
        self.cell = torch.nn.RNNCell(x.shape[1], h.shape[1], dtype=self.x.dtype)
        self.time_cell_call()

    def teardown(self):
        self.context.close()

    def time_cell_call(self):
        self.h = self.cell(self.x, self.h)


class TorchGatedCell:
    """PyTorch's ``nn.LSTMCell`` or ``nn.GRUCell`` at the same size, as ``TorchRNNCell``."""

    params = (["lstm", "gru"],)
    param_names = ("cell",)
    repeat = MICRO_REPEAT

    def setup(self, cell):
        torch = _enter_inference_mode(self)
        _, x, h, _ = step_problem()
        self.x, h = torch.from_numpy(x), torch.from_numpy(h)
        module = torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell
        self.cell = module(x.shape[1], h.shape[1], dtype=self.x.dtype)
        self.state = (h, h.clone()) if cell == "lstm" else h
        self.time_cell_call(cell)

    def teardown(self, cell):
        self.context.close()

    def time_cell_call(self, cell):
        self.state = self.cell(self.x, self.state)
