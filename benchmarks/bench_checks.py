"""The checks a public call makes before any kernel runs.

``forward`` tests every parameter for finiteness at each call, and ``fit`` tests them
after each update. Here is that test alone, on the parameters of the LSTM inference case
of ``fastrnn.bench.GATED_CASES`` (D=H=O=256); ``bench_gated.GatedInference`` times the
whole pass it is part of.
"""
from fastrnn import _checks
from fastrnn.bench import GATED_CASES, gated_problem


class CheckParams:
    """``_checks.check_params(params)``: the finiteness test of ``forward``."""

    params = (["float32", "float64"],)
    param_names = ("dtype",)

    def setup(self, dtype):
        self.weights, _, _ = gated_problem(dict(GATED_CASES["lstm-infer"], dtype=dtype))
        _checks.check_params(self.weights)

    def time_check_params(self, dtype):
        _checks.check_params(self.weights)
