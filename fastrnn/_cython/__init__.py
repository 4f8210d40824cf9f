"""The Cython backend: an optional compiled extension behind the kernel contract.

``stack`` (compiled from stack.pyx, and on x86-64 a second time with AVX2 as
``stack_avx2``) holds the passes of every network, ``rnn`` (``rnn_avx2``) the loss
kernels, ``_cells`` the table of a stack's arrays that they
take, ``_blas`` the row-major BLAS calls they make; inline, in .pxd files: ``_loops`` the
flat loops, ``_vecmath`` tanh and exp, ``_gated`` the LSTM and GRU row kernels,
``_recurrence`` one cell's time loop, ``_parallel`` the declarations of ``_parallel.h``
(threads, barrier, packed product) and the products split over a pass's threads.
``kernels`` adapts them to the contract shared by all backends (see
``fastrnn.backends``). setup.py builds the extension when Cython and a C compiler are at
hand; without it, importing ``fastrnn._cython.kernels`` raises ImportError and the
registry lists the backend as unavailable.
"""
