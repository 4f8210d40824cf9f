"""The Cython backend: an optional compiled extension behind the kernel contract.

``rnn`` (compiled from rnn.pyx, and on x86-64 a second time with AVX2 as ``rnn_avx2``)
holds the kernels of the vanilla one-layer network, ``stack`` (``stack_avx2``) the passes
of gated, deep and bidirectional ones, ``_cells`` the table of a stack's arrays that they
take, ``_blas`` the row-major BLAS calls they make; inline, in .pxd files: ``_loops`` the
flat loops, ``_vecmath`` tanh and exp, ``_gated`` the LSTM and GRU row kernels,
``_recurrence`` one cell's time loop, ``_parallel`` the declarations of ``_parallel.h``
(threads, barrier, packed product) and the products split over a pass's threads.
``kernels`` adapts them to the contract shared by all backends (see
``fastrnn.backends``). setup.py builds the extension when Cython and a C compiler are at
hand; without it, importing ``fastrnn._cython.kernels`` raises ImportError and the
registry lists the backend as unavailable.
"""
