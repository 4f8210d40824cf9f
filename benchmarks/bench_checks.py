"""The checks a public call makes before any kernel runs.

``forward`` tests every parameter for finiteness at each call, and ``fit`` tests them
after each update. For the LSTM inference case of ``fastrnn.bench.GATED_CASES``
(D=H=O=256, 2.36 MB of float32 parameters) that test is a few percent of the pass.
"""
import numpy as np

import fastrnn
from fastrnn import _checks


class CheckParams:
    """``_checks.check_params(params)``: the finiteness test of ``forward``."""

    params = (["float32", "float64"],)
    param_names = ("dtype",)

    def setup(self, dtype):
        self.params = fastrnn.init_params(256, 256, 256, cell="lstm", dtype=np.dtype(dtype),
                                          seed=0)
        _checks.check_params(self.params)

    def time_check_params(self, dtype):
        _checks.check_params(self.params)
