"""SciPy's OpenBLAS sgemm on one thread against two, for the products fastrnn makes:
where a second thread starts to gain.

``python benchmarks/blas_threads.py [rounds]``. Shapes: one time step's product with W,
(B, H) x (H, G) for a G of H (tanh) or 4H (LSTM), and the input projection and dW of a
pass. Rounds alternate one thread and two; each round times a loop of products. Per
shape it prints the multiply-adds, the median over rounds (microseconds per product) with
the range, the ratio of the medians and that of the best rounds: on a busy machine only
the best rounds say what two threads gain on idle cores, and the medians what they cost
on busy ones.
"""
import sys
import time

import numpy as np
from scipy.linalg import blas
from threadpoolctl import ThreadpoolController



def scipy_blas():
    """threadpoolctl's controller of SciPy's BLAS (NumPy's wheel carries another)."""
    return next(c for c in ThreadpoolController().select(user_api="blas").lib_controllers
                if "numpy.libs" not in c.filepath)


def timeit(a, b, c, reps):
    t = time.perf_counter()
    for _ in range(reps):
        blas.sgemm(1.0, a, b, 0.0, c, overwrite_c=1)
    return (time.perf_counter() - t) / reps * 1e6


def shapes():
    # (label, m, k, n): (m, k) x (k, n)
    for B, H, G in [(32, 128, 1), (32, 128, 4), (32, 256, 1), (128, 256, 1), (32, 256, 4),
                    (32, 512, 1), (8, 512, 4), (128, 512, 1), (32, 1024, 1), (128, 1024, 1)]:
        yield f"step B={B} H={H} G={G}", B, H, G * H
    for TB, D, H in [(1600, 100, 128), (3200, 64, 256), (6400, 256, 1024)]:
        yield f"proj TB={TB} D={D} H={H}", TB, D, H
        yield f"dW  TB={TB} H={H}", H, TB, H


def main(rounds: int) -> None:
    ctl = scipy_blas()
    rng = np.random.default_rng(0)
    for label, m, k, n in shapes():
        a = np.asfortranarray(rng.standard_normal((m, k)), np.float32)
        b = np.asfortranarray(rng.standard_normal((k, n)), np.float32)
        c = np.zeros((m, n), np.float32, order="F")
        macs = m * k * n
        reps = max(3, int(5e7 / max(macs, 1)))
        res = {1: [], 2: []}
        for r in range(rounds):
            for th in (1, 2):
                ctl.set_num_threads(th)
                timeit(a, b, c, 2)
                res[th].append(timeit(a, b, c, reps))
        m1, m2 = np.median(res[1]), np.median(res[2])
        b1, b2 = min(res[1]), min(res[2])
        print(f"{label:26s} {macs/1e6:8.2f} M  1t {m1:9.1f} us [{b1:.1f}-{max(res[1]):.1f}]"
              f"  2t {m2:9.1f} us [{b2:.1f}-{max(res[2]):.1f}]  1t/2t median {m1/m2:5.2f}"
              f" best {b1/b2:5.2f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
