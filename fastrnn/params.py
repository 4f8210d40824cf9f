"""Parameters of a vanilla (Elman) RNN: one flat buffer, named views into it.

Legend: D input size, H hidden size, O output size.

    U  (H, D)   input to hidden
    W  (H, H)   hidden to hidden
    b  (H,)     hidden bias
    V  (O, H)   hidden to output
    c  (O,)     output bias

A sizes table (``Params.layout``) fixes the order of the tensors inside ``Params.data``.
Optimisers, clipping and checkpoints work on ``data``; the kernels read the views.
Gradients are a ``Grads``, which is a ``Params`` of the same layout plus dL/dh0.
"""
from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "relu")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def layout(D: int, H: int, O: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The sizes table: (name, shape) of every tensor, in buffer order."""
    return (("U", (H, D)), ("W", (H, H)), ("b", (H,)), ("V", (O, H)), ("c", (O,)))


def check_dtype(dtype, argument: str = "dtype") -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, or raise if it is not float32/float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in DTYPES:
        raise TypeError(f"{argument}: expected float32 or float64, got {dtype!r}")
    return dt


def check_cell(cell) -> str:
    if cell not in ACTIVATIONS:
        raise ValueError(f"cell: expected one of {ACTIVATIONS}, got {cell!r}")
    return cell


def _check_size(value, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument}: expected a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument}: expected a positive int, got {value}")
    return int(value)


class Params:
    """Weights of an RNN held in one contiguous buffer.

    Attributes
    ----------
    cell : str
        The nonlinearity f: "tanh", "sigmoid" or "relu".
    input_size, hidden_size, output_size : int
        D, H and O.
    data : ndarray (P,)
        Every parameter, back to back in ``layout`` order.
    U, W, b, V, c : ndarray
        Writable views into ``data`` (shapes in the module docstring).
    """

    def __init__(self, input_size, hidden_size, output_size, *, cell="tanh",
                 dtype=np.float64, data=None):
        self.cell = check_cell(cell)
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.output_size = _check_size(output_size, "output_size")
        self.layout = layout(self.input_size, self.hidden_size, self.output_size)
        size = sum(math.prod(shape) for _, shape in self.layout)
        if data is None:
            data = np.zeros(size, dtype=check_dtype(dtype))
        else:
            check_dtype(data.dtype, "data.dtype")
            if data.shape != (size,) or not data.flags.c_contiguous:
                raise ValueError(
                    f"data: expected a contiguous array of shape ({size},), got shape {data.shape}")
        self.data = data
        offset = 0
        for name, shape in self.layout:
            n = math.prod(shape)
            setattr(self, name, data[offset:offset + n].reshape(shape))
            offset += n

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.layout)

    def items(self):
        """(name, view) pairs in buffer order."""
        return [(name, getattr(self, name)) for name in self.names]

    def config(self) -> dict:
        """Everything but the numbers: enough to rebuild an empty Params of this layout."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    output_size=self.output_size, cell=self.cell, dtype=self.dtype.name)

    def same_layout(self, other: "Params") -> bool:
        return (isinstance(other, Params) and other.cell == self.cell
                and other.layout == self.layout and other.dtype == self.dtype)

    def zeros_like(self) -> "Params":
        return Params(self.input_size, self.hidden_size, self.output_size,
                      cell=self.cell, dtype=self.dtype)

    def copy(self) -> "Params":
        return Params(self.input_size, self.hidden_size, self.output_size,
                      cell=self.cell, data=self.data.copy())

    def astype(self, dtype) -> "Params":
        return Params(self.input_size, self.hidden_size, self.output_size,
                      cell=self.cell, data=self.data.astype(check_dtype(dtype)))

    def __repr__(self):
        return (f"Params(cell={self.cell!r}, D={self.input_size}, H={self.hidden_size}, "
                f"O={self.output_size}, dtype={self.dtype.name})")


class Grads(Params):
    """Gradients of the loss: a ``Params`` of the same layout, plus ``h0`` = dL/dh0 (B, H).

    ``h0`` lives outside ``data`` because it is not a parameter: optimisers and clipping
    work on ``data`` only.
    """

    def __init__(self, params: Params, batch_size: int, data=None, h0=None):
        super().__init__(params.input_size, params.hidden_size, params.output_size,
                         cell=params.cell, dtype=params.dtype, data=data)
        shape = (batch_size, params.hidden_size)
        if h0 is None:
            h0 = np.zeros(shape, dtype=params.dtype)
        elif h0.shape != shape or h0.dtype != params.dtype:
            raise ValueError(f"h0: expected shape {shape} and dtype {params.dtype}, "
                             f"got {h0.shape} and {h0.dtype}")
        self.h0 = h0


def init_params(input_size, hidden_size, output_size, *, cell="tanh",
                dtype=np.float64, seed=None) -> Params:
    """New RNN parameters.

    Initialisation: U, W and V are drawn uniformly from [-1/sqrt(H), 1/sqrt(H)], the
    scheme of PyTorch's ``nn.RNN`` (and of ``nn.Linear`` with H inputs for V), which keeps
    W's spectral radius below one at the start so that states neither explode nor saturate.
    The biases b and c start at zero. ``seed`` makes the draw reproducible; the numbers are
    drawn in float64 and rounded, so float32 and float64 Params from one seed agree.
    """
    params = Params(input_size, hidden_size, output_size, cell=cell, dtype=dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(params.hidden_size)
    for name in ("U", "W", "V"):
        view = getattr(params, name)
        view[...] = rng.uniform(-bound, bound, size=view.shape)
    return params
