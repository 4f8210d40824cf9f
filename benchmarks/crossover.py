"""Where BLAS starts to beat plain loops in the Numba backend's time loop.

Legend: T time steps, B batch, D input size, H hidden size, O output size.

The only sequential work of a training step is one (B, H) x (H, H) product per time
step, forward (W s_{t-1}) and backward (W^T da_{t+1}). The Numba backend sends it
through BLAS when B * H * H >= ``fastrnn._numba.kernels.BLAS_MIN_WORK`` and through
plain compiled loops otherwise. For every (B, H) of a grid, this script times
``fastrnn.loss_and_grad(backend="numba")`` with that threshold forced to 0 (always
BLAS) and to 2**62 (never BLAS), and prints

    dtype, B, H, B*H*H, both median times, loops / BLAS, and the faster choice,

then the crossover: the smallest B*H*H from which BLAS is faster at every larger grid
point. Problems: T=25, D=O=64, dense (T, B, D) standard normal inputs, (T, B) class ids.

Run it with ``python benchmarks/crossover.py``. It is not an asv benchmark: asv imports
every module of benchmarks/ and finds nothing to run here.
"""
import math
import os
import statistics
import time

import numpy as np

import fastrnn
from fastrnn._numba import kernels as numba_kernels

T, D, O = 25, 64, 64
BATCHES = (1, 4, 16, 32, 64)
HIDDEN = (32, 64, 100, 128, 256, 512)
DTYPES = ("float32", "float64")
ALWAYS, NEVER = 0, 2**62          # BLAS_MIN_WORK values: always BLAS, never BLAS

BATCH_SECONDS = 2e-3              # calls are timed in batches of at least this long
MIN_SAMPLES, MAX_SAMPLES = 9, 51  # per setting and point
POINT_SECONDS = 0.5               # sampling stops after this, once MIN_SAMPLES are in


def training_step(B: int, H: int, dtype: str):
    """A function running one Numba training step on a seeded dense problem."""
    rng = np.random.default_rng(0)
    params = fastrnn.init_params(D, H, O, dtype=dtype, seed=0)
    x = rng.standard_normal((T, B, D)).astype(dtype)      # (T, B, D)
    y = rng.integers(0, O, size=(T, B))                    # (T, B)
    return lambda: fastrnn.loss_and_grad(params, x, y, backend="numba")


def _batch_seconds(fn, calls: int) -> float:
    """Seconds per call of ``fn`` over one batch of ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def compare(fn) -> tuple[float, float]:
    """Median seconds per call of ``fn`` with BLAS always and never, in that order.

    Both settings are warmed up, then sampled alternately, so that a change in the
    machine's load affects both alike.
    """
    single = []
    for threshold in (ALWAYS, NEVER):
        numba_kernels.BLAS_MIN_WORK = threshold
        fn()
        single.append(_batch_seconds(fn, 1))
    calls = max(1, math.ceil(BATCH_SECONDS / min(single)))
    samples = {ALWAYS: [], NEVER: []}
    start = time.perf_counter()
    while len(samples[NEVER]) < MIN_SAMPLES or (
            time.perf_counter() - start < POINT_SECONDS
            and len(samples[NEVER]) < MAX_SAMPLES):
        for threshold, times in samples.items():
            numba_kernels.BLAS_MIN_WORK = threshold
            times.append(_batch_seconds(fn, calls))
    return statistics.median(samples[ALWAYS]), statistics.median(samples[NEVER])


def crossover(rows) -> int | None:
    """The smallest B*H*H such that BLAS wins at every point of ``rows`` with at least
    that much work; None when BLAS loses at the largest.

    ``rows``: (work, blas_seconds, loop_seconds) triples; several may share one work.
    """
    found = None
    for work in sorted({w for w, _, _ in rows}, reverse=True):
        if any(blas >= loops for w, blas, loops in rows if w == work):
            break
        found = work
    return found


def main() -> None:
    default = numba_kernels.BLAS_MIN_WORK
    print(f"fastrnn {fastrnn.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"loss_and_grad(backend='numba'), T={T} D={D} O={O} dense inputs; "
          f"medians of alternating samples after warm-up\n")
    print(f"{'dtype':8s} {'B':>3s} {'H':>4s} {'B*H*H':>9s} {'loops ms':>10s} "
          f"{'BLAS ms':>10s} {'loops/BLAS':>10s}  faster")
    results = {dtype: [] for dtype in DTYPES}
    try:
        for dtype in DTYPES:
            for B in BATCHES:
                for H in HIDDEN:
                    blas, loops = compare(training_step(B, H, dtype))
                    work = B * H * H
                    results[dtype].append((work, blas, loops))
                    print(f"{dtype:8s} {B:3d} {H:4d} {work:9d} {1e3 * loops:10.3f} "
                          f"{1e3 * blas:10.3f} {loops / blas:10.2f}  "
                          f"{'BLAS' if blas < loops else 'loops'}", flush=True)
    finally:
        numba_kernels.BLAS_MIN_WORK = default
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")
    print(f"crossover (smallest B*H*H from which BLAS wins at every larger point), "
          f"current BLAS_MIN_WORK = {default}:")
    for label, rows in [*results.items(), ("both", [r for v in results.values() for r in v])]:
        work = crossover(rows)
        print(f"  {label:8s} {'BLAS never wins consistently' if work is None else work}")


if __name__ == "__main__":
    main()
