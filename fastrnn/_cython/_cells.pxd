# The Cells table of the stack kernels (stack.pyx): the addresses of every per-cell array
# of one (params, grads, workspace) triple, in a C array that the kernels read without
# the GIL.

from libc.stdint cimport intptr_t

from cython cimport floating

# The rows of the table, in the order of _cells.FIELDS; Y and dY are per layer.
cdef enum Field:
    F_U, F_W, F_B, F_BHH, F_GATES, F_AUX, F_H, F_KAPPA, F_DA, F_DAH, F_WT, F_DU, F_DW, \
        F_DB, F_DBHH, F_Y, F_DY, NFIELDS


cdef class Cells:
    cdef readonly object arrays, dtype
    cdef readonly int cell, n, dirs
    cdef intptr_t* table                 # NFIELDS rows of n addresses


cdef inline floating* at(Cells cells, Field f, int i, floating probe) noexcept nogil:
    """The array f of cell i (of layer i for Y and dY), as the type of ``probe``."""
    return <floating*>cells.table[<int>f * cells.n + i]
