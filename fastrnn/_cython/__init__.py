"""The Cython backend: an optional compiled extension behind the kernel contract.

``rnn`` (compiled from rnn.pyx, and on x86-64 a second time with AVX2 as ``rnn_avx2``)
holds the kernels of the vanilla one-layer network, ``stack`` (``stack_avx2``) those of
gated, deep and bidirectional ones, ``_blas`` the row-major BLAS calls they make,
``_loops.pxd`` the flat loops they share, ``_vecmath.pxd`` the inline tanh and exp and
``_parallel.h`` the threads, barrier and packed product of the parallel passes;
``kernels`` adapts them to the contract shared by all backends (see
``fastrnn.backends``). setup.py builds the extension when Cython and a C compiler are at
hand; without it, importing ``fastrnn._cython.kernels`` raises ImportError and the
registry lists the backend as unavailable.
"""
