"""The Numba backend: the passes of every network (``stack``, over the cells of ``rnn``
and ``gated``) and the loss kernels (``rnn``) behind the kernel contract (``kernels``). Importing it compiles nothing; kernels compile on first use and
are cached on disk (see ``fastrnn._config``)."""
