"""Two OpenBLAS pools in one process: a training step right after a NumPy product.

NumPy's and SciPy's wheels each carry an OpenBLAS with its own threads, and fastrnn's
compiled backends call SciPy's. Each sample here is a 512 x 512 float32 NumPy ``matmul``
followed by one Cython (or Numba) training step at size M float32, with NumPy's pool at
its default size or limited to one thread (the README's "Threads" paragraph). Compare
with ``bench_rnn.TrainingStep`` at the same size for the step alone.
"""
import numpy as np
from threadpoolctl import ThreadpoolController

from fastrnn.bench import SIZES, measured_call, training_problem

from .common import check_backend


class TrainingAfterNumpyMatmul:
    params = (["cython", "numba"], ["default", "one"])
    param_names = ("backend", "numpy_threads")

    def setup(self, backend, numpy_threads):
        check_backend(backend)
        if numpy_threads == "one":
            for pool in ThreadpoolController().lib_controllers:
                if "numpy.libs" in pool.filepath:
                    pool.set_num_threads(1)
        self.a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        self.step = measured_call(backend, *training_problem(SIZES["M"]))
        self.time_matmul_then_step(backend, numpy_threads)

    def time_matmul_then_step(self, backend, numpy_threads):
        self.a @ self.a
        self.step()
