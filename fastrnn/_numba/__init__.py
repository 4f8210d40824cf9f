"""The Numba backend: fused forward, loss and BPTT kernels (``rnn``) behind the kernel
contract (``kernels``). Importing it compiles nothing; kernels compile on first use and
are cached on disk (see ``fastrnn._config``)."""
