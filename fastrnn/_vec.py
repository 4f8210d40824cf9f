"""Loops over flat buffers, compiled with Numba, for every layer of the package.

Validation (``_checks``), the functional API and the Numba kernels share these: the
finiteness test of params and outputs, the range of token ids, the SGD update. A leaf
module: it imports only the Numba options, so that no caller needs a backend for them.
"""
import math

from ._config import jit


@jit
def flat(a):
    """A C-contiguous array as a 1-D view: LLVM vectorises loops over those, not loops
    that index 2-D arrays."""
    return a.reshape(a.size)


@jit
def all_finite(a):
    """Whether every element of a (C-contiguous) is finite. The tests are or-ed into one
    flag, not returned from at the first failure, so that the loop vectorises: ten
    times as fast over a finite array, the case every check is for."""
    a = flat(a)
    bad = False
    for i in range(a.size):
        bad |= not math.isfinite(a[i])
    return not bad


@jit
def min_max(x):
    """(min, max) of a C-contiguous integer array in one pass; x non-empty."""
    x = flat(x)
    lo = hi = x[0]
    for i in range(1, x.size):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    return lo, hi


@jit
def axpy(alpha, x, y):
    """y += alpha * x, in place; x, y (P,)."""
    for i in range(y.size):
        y[i] += alpha * x[i]
