"""The kernel contract's constants, for every backend and the layer above them.

A leaf module: it imports nothing, so that the generic layer (validation, the functional
API) and each backend can share these numbers without importing one another. The Cython
extension declares the same cell codes in ``_cython/_loops.pxd``, and a test checks that
the two agree.
"""

# The cell code each compiled kernel branches on.
TANH, SIGMOID, RELU, LSTM, GRU = 0, 1, 2, 3, 4
CELL_CODES = {"tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "lstm": LSTM, "gru": GRU}

# What a streaming step returns: it ran; x_t was not finite (nothing written); o_t is not
# finite.
STEP_OK, STEP_BAD_INPUT, STEP_BAD_OUTPUT = 0, 1, 2
