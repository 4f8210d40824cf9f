"""The Cells table of the stack kernels, shared by ``stack`` and ``stack_avx2``.

A ``Cells`` object holds the addresses of the per-cell arrays (weights, gradients and
workspace buffers) of one (params, grads, workspace) triple, checked once when it is
made and kept alive by it; the kernels then take it and a few memoryviews.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc

from ._loops cimport GRU, LSTM, RELU, SIGMOID, TANH

# The codes of _loops.pxd, which the kernels branch on, by cell name.
CELL_CODES = {"tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "lstm": LSTM, "gru": GRU}

# Per-cell fields of a Cells object, in the order of its table's rows (Field in
# _cells.pxd); Y and dY are per layer.
FIELDS = ("U", "W", "b", "b_hh", "gates", "aux", "h", "kappa", "da", "dah", "WT",
          "dU", "dW", "db", "db_hh", "Y", "dY")


cdef class Cells:
    """The addresses of every per-cell array of a stack, for the kernels of ``stack``.

    ``arrays`` maps each name of ``FIELDS`` to a list of C-contiguous arrays of one
    float dtype: one per cell (Y and dY: one per layer). They are kept alive here.
    """

    def __cinit__(self, str cell, int dirs, dict arrays):
        cdef int f, i
        self.cell = CELL_CODES[cell]
        self.dirs = dirs
        self.arrays = arrays
        self.n = len(arrays["W"])
        self.dtype = arrays["W"][0].dtype
        self.table = <intptr_t*>PyMem_Malloc(NFIELDS * self.n * sizeof(intptr_t))
        if self.table == NULL:
            raise MemoryError()
        for f, name in enumerate(FIELDS):
            for i, a in enumerate(arrays[name]):
                if a.dtype != self.dtype or not a.flags.c_contiguous:
                    raise ValueError(f"{name}[{i}]: expected a C-contiguous "
                                     f"{self.dtype} array, got {a.dtype}")
                self.table[f * self.n + i] = a.ctypes.data

    def __dealloc__(self):
        PyMem_Free(self.table)
