"""Parameters of a recurrent network: one flat buffer, named views into it.

Legend: D input size, H hidden size, O output size, G gate rows (H for the vanilla
cells tanh, sigmoid and relu; 4H for the LSTM; 3H for the GRU), L layers, and
dirs = 2 when bidirectional, else 1.

A one-layer network in one direction has the derivation's five tensors:

    U  (G, D)   input to hidden            (gate blocks stacked along the first axis,
    W  (G, H)   hidden to hidden            in PyTorch's order: LSTM i, f, g, o;
    b  (G,)     hidden bias                 GRU r, z, n)
    b_hh (G,)   GRU only: the hidden-side bias, which the reset gate scales
    V  (O, H)   hidden to output
    c  (O,)     output bias

Deeper and bidirectional networks add one (U, W, b[, b_hh]) group per layer k and
direction, named with PyTorch's suffixes: ``U_l1`` for layer 1, ``U_reverse`` and
``U_l1_reverse`` for the direction that reads the sequence backwards. Layer k > 0 reads
the states of layer k - 1, both directions side by side, so its U is (G, dirs * H); the
output layer reads the top layer's, so V is (O, dirs * H).

A sizes table (``Params.layout``) fixes the order of the tensors inside ``Params.data``:
the groups layer by layer, forward before reverse, then V and c. Optimisers, clipping and
checkpoints work on ``data``; the kernels read the views. Gradients are a ``Grads``, which
is a ``Params`` of the same layout plus dL/dh0 (and dL/dc0 for the LSTM).
"""
from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "relu")
GATED = ("lstm", "gru")
CELLS = ACTIVATIONS + GATED
GATES = {"tanh": 1, "sigmoid": 1, "relu": 1, "lstm": 4, "gru": 3}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def suffix(layer: int, direction: int) -> str:
    """PyTorch's name suffix for one layer and direction: "", "_l1", "_reverse", ..."""
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if direction else "")


def layout(D: int, H: int, O: int, cell: str = "tanh", num_layers: int = 1,
           bidirectional: bool = False) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The sizes table: (name, shape) of every tensor, in buffer order."""
    G = GATES[cell] * H
    dirs = 2 if bidirectional else 1
    table = []
    for k in range(num_layers):
        D_k = D if k == 0 else dirs * H
        for d in range(dirs):
            s = suffix(k, d)
            table += [("U" + s, (G, D_k)), ("W" + s, (G, H)), ("b" + s, (G,))]
            if cell == "gru":
                table.append(("b_hh" + s, (G,)))
    return tuple(table) + (("V", (O, dirs * H)), ("c", (O,)))


def parameter_count(D: int, H: int, O: int, cell: str = "tanh", num_layers: int = 1,
                    bidirectional: bool = False) -> int:
    """The length of the buffer that ``layout`` describes, from the sizes alone: no loop
    over layers, so that a size too large to allocate is refused at once."""
    G = GATES[cell] * H
    dirs = 2 if bidirectional else 1
    recurrent = G * H + G * (2 if cell == "gru" else 1)     # W, b (and b_hh)
    first = dirs * (G * D + recurrent)
    deeper = (num_layers - 1) * dirs * (G * dirs * H + recurrent)
    return first + deeper + O * dirs * H + O


# A cgroup's memory limit: version 2, version 1 (which writes a huge number for none).
CGROUP_MEMORY = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


@functools.cache
def memory_limit() -> int:
    """The most bytes one buffer may take: the machine's physical memory, or a cgroup's
    memory limit when that is lower, or, where neither is known, the largest array NumPy
    can index. Every call reads or writes the whole of the buffers sized against it
    (parameters, gradients, workspaces), so one larger than memory could only be swapped
    out or get the process killed."""
    limit = np.iinfo(np.intp).max
    try:
        limit = min(limit, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):       # no sysconf (Windows)
        pass
    for path in CGROUP_MEMORY:
        try:
            with open(path) as f:                           # "max" or a byte count
                limit = min(limit, int(f.read()))
        except (OSError, ValueError):
            pass
    return limit


_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _bytes(n: int) -> str:
    """n bytes, exactly and in binary units: "8000072000040 bytes (7.28 TiB)"."""
    k = (n.bit_length() - 1) // 10 if n else 0
    if not 1 <= k <= len(_BINARY_UNITS):
        return f"{n} bytes"
    return f"{n} bytes ({n / 1024**k:.3g} {_BINARY_UNITS[k - 1]})"


def allocate(size: int, dtype: np.dtype, describe) -> np.ndarray:
    """np.zeros(size, dtype), or an error whose message starts with ``describe()``: the
    argument to blame and what the buffer is for ("T, B: a workspace for ..."), built only
    on failure. ValueError when the buffer is larger than ``memory_limit()`` (it can never
    be allocated here), MemoryError when the allocation fails (memory in use)."""
    nbytes = size * dtype.itemsize
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{describe()} needs {_bytes(nbytes)} of {dtype.name}, more than the "
                         f"machine's memory (or its cgroup's limit): {_bytes(limit)}")
    try:
        return np.zeros(size, dtype=dtype)
    except MemoryError as exc:
        raise MemoryError(f"{describe()} needs {_bytes(nbytes)} of {dtype.name}, which could "
                          f"not be allocated (too little free memory)") from exc


class Layer(NamedTuple):
    """The weights of one layer in one direction (views into ``Params.data``).

    ``b_hh`` is the GRU's hidden-side bias, None for the other cells.
    """
    U: np.ndarray
    W: np.ndarray
    b: np.ndarray
    b_hh: np.ndarray | None


def check_dtype(dtype, argument: str = "dtype") -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, or raise if it is not float32/float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in DTYPES:       # (np.dtype("float64") == None is True)
        raise TypeError(f"{argument}: expected float32 or float64, got {dtype!r}")
    return dt


def check_cell(cell) -> str:
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")
    return cell


def _check_size(value, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument}: expected a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument}: expected a positive int, got {value}")
    return int(value)


def _check_flag(value, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: expected True or False, got {value!r}")
    return bool(value)


class Params:
    """Weights of a recurrent network held in one contiguous buffer.

    Attributes
    ----------
    cell : str
        "tanh", "sigmoid" or "relu" (a vanilla RNN with that f), "lstm" or "gru".
    input_size, hidden_size, output_size : int
        D, H and O.
    num_layers : int
    bidirectional : bool
    data : ndarray (P,)
        Every parameter, back to back in ``layout`` order.
    U, W, b, V, c (and b_hh for the GRU) : ndarray
        Writable views into ``data`` (shapes in the module docstring); the other layers
        and directions under their suffixed names, and all of them in ``layers``.
    layers : tuple of Layer
        One (U, W, b, b_hh) per layer and direction, in PyTorch's state order: index
        k * dirs + d for layer k and direction d (0 forward, 1 reverse).

    ``data``, when given, becomes the buffer (not a copy), and ``dtype`` defaults to its
    dtype; otherwise the buffer is zeros of ``dtype``, float64 by default. A copy, a
    deepcopy or an unpickled Params has its views in its own buffer.
    """

    def __init__(self, input_size, hidden_size, output_size, *, cell="tanh", num_layers=1,
                 bidirectional=False, dtype=None, data=None):
        self.cell = check_cell(cell)
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.output_size = _check_size(output_size, "output_size")
        self.num_layers = _check_size(num_layers, "num_layers")
        self.bidirectional = _check_flag(bidirectional, "bidirectional")
        sizes = (self.input_size, self.hidden_size, self.output_size, self.cell,
                 self.num_layers, self.bidirectional)
        size = parameter_count(*sizes)
        if data is None:
            data = allocate(size, check_dtype(dtype), lambda: (
                f"{self._largest_size()}: a network of {self._sizes_text()} has {size} "
                f"parameters and"))
        else:
            if not isinstance(data, np.ndarray):
                raise TypeError(f"data: expected a NumPy array of shape ({size},), got "
                                f"{type(data).__name__}")
            check_dtype(data.dtype, "data.dtype")
            if dtype is not None and check_dtype(dtype) != data.dtype:
                raise TypeError(f"data: expected dtype {check_dtype(dtype).name} (the dtype "
                                f"argument), got {data.dtype.name}")
            if data.shape != (size,):
                raise ValueError(
                    f"data: expected a contiguous array of shape ({size},), got shape {data.shape}")
            if not data.flags.c_contiguous:
                raise ValueError(f"data: expected a contiguous array of shape ({size},), got a "
                                 f"non-contiguous one (strides {data.strides})")
        self.data = data
        self.layout = layout(*sizes)
        self._bind_views()

    def _sizes_text(self) -> str:
        text = (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, cell={self.cell!r}, "
                f"num_layers={self.num_layers}")
        return text + (", bidirectional=True" if self.bidirectional else "")

    def _largest_size(self) -> str:
        """The size argument that makes the buffer largest: the one whose reduction to 1
        shrinks the parameter count the most."""
        sizes = [self.input_size, self.hidden_size, self.output_size, self.num_layers]

        def count_without(i):
            D, H, O, L = sizes[:i] + [1] + sizes[i + 1:]
            return parameter_count(D, H, O, self.cell, L, self.bidirectional)

        names = ("input_size", "hidden_size", "output_size", "num_layers")
        return names[min(range(len(names)), key=count_without)]

    def _bind_views(self) -> None:
        """Set the named views into ``data`` and ``layers``."""
        offset = 0
        for name, shape in self.layout:
            n = math.prod(shape)
            setattr(self, name, self.data[offset:offset + n].reshape(shape))
            offset += n
        self.layers = tuple(
            Layer(*(getattr(self, name + suffix(k, d), None) for name in ("U", "W", "b", "b_hh")))
            for k in range(self.num_layers) for d in range(self.num_directions))

    def __getstate__(self) -> dict:
        """Pickling and deepcopy keep ``data`` and rebuild the views from it: views copied
        one by one would no longer share the buffer."""
        views = set(self.names) | {"layers"}
        return {key: value for key, value in self.__dict__.items() if key not in views}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_views()

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gate_rows(self) -> int:
        """G: the height of U, W and b (H, 3H or 4H)."""
        return GATES[self.cell] * self.hidden_size

    @property
    def has_cell_state(self) -> bool:
        """Whether the state is a pair (h, c): true for the LSTM."""
        return self.cell == "lstm"

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        """The shape of h (and of the LSTM's c): (B, H) for one layer in one direction,
        else (num_layers * dirs, B, H), PyTorch's layout."""
        n = self.num_layers * self.num_directions
        if n == 1:
            return (batch_size, self.hidden_size)
        return (n, batch_size, self.hidden_size)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.layout)

    def items(self):
        """(name, view) pairs in buffer order."""
        return [(name, getattr(self, name)) for name in self.names]

    def config(self) -> dict:
        """Everything but the numbers: enough to rebuild an empty Params of this layout."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    output_size=self.output_size, cell=self.cell, num_layers=self.num_layers,
                    bidirectional=self.bidirectional, dtype=self.dtype.name)

    def _shape_config(self) -> dict:
        config = self.config()
        del config["dtype"]
        return config

    def same_layout(self, other: "Params") -> bool:
        return (isinstance(other, Params) and other.cell == self.cell
                and other.layout == self.layout and other.dtype == self.dtype)

    def zeros_like(self) -> "Params":
        return Params(**self.config())

    def copy(self) -> "Params":
        return Params(**self._shape_config(), data=self.data.copy())

    def astype(self, dtype) -> "Params":
        return Params(**self._shape_config(), data=self.data.astype(check_dtype(dtype)))

    def __repr__(self):
        depth = ""
        if self.num_layers > 1:
            depth += f", num_layers={self.num_layers}"
        if self.bidirectional:
            depth += ", bidirectional=True"
        return (f"Params(cell={self.cell!r}, D={self.input_size}, H={self.hidden_size}, "
                f"O={self.output_size}{depth}, dtype={self.dtype.name})")


def _state_buffer(params: Params, batch_size: int, given, argument: str):
    shape = params.state_shape(batch_size)
    if given is None:
        return allocate(math.prod(shape), params.dtype, lambda: (
            f"batch_size: {argument}, a state gradient of shape {shape},")).reshape(shape)
    if not isinstance(given, np.ndarray):
        raise TypeError(f"{argument}: expected an array of shape {shape} and dtype "
                        f"{params.dtype}, got {type(given).__name__}")
    if given.shape != shape or given.dtype != params.dtype:
        raise ValueError(f"{argument}: expected shape {shape} and dtype {params.dtype}, "
                         f"got {given.shape} and {given.dtype}")
    if not given.flags.c_contiguous or not given.flags.writeable:
        what = "non-contiguous" if not given.flags.c_contiguous else "read-only"
        raise ValueError(f"{argument}: expected a writable C-contiguous array, got a {what} "
                         f"one")
    return given


class Grads(Params):
    """Gradients of the loss: a ``Params`` of the same layout, plus ``h0`` = dL/dh0 and,
    for the LSTM, ``c0`` = dL/dc0 (both of ``params.state_shape(B)``; c0 is None for the
    other cells).

    ``h0`` and ``c0`` live outside ``data`` because they are not parameters: optimisers
    and clipping work on ``data`` only. The kernels write into all three, so given
    buffers must be writable (and h0, c0 C-contiguous).
    """

    def __init__(self, params: Params, batch_size: int, data=None, h0=None, c0=None):
        if not isinstance(params, Params):
            raise TypeError(f"params: expected fastrnn.Params, got {type(params).__name__}")
        batch_size = _check_size(batch_size, "batch_size")
        super().__init__(**params._shape_config(), dtype=params.dtype, data=data)
        if not self.data.flags.writeable:
            raise ValueError("data: expected a writable array (the gradients are written "
                             "into it), got a read-only one")
        self.h0 = _state_buffer(params, batch_size, h0, "h0")
        self.c0 = _state_buffer(params, batch_size, c0, "c0") if params.has_cell_state \
            else None


def init_params(input_size, hidden_size, output_size, *, cell="tanh", num_layers=1,
                bidirectional=False, dtype=np.float64, seed=None) -> Params:
    """New parameters.

    Initialisation: every U and W, and V, are drawn uniformly from [-1/sqrt(H), 1/sqrt(H)]
    (V from [-1/sqrt(dirs * H), 1/sqrt(dirs * H)], its fan-in), the scheme of PyTorch's
    ``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and ``nn.Linear``, which keeps the recurrent
    weights' spectral radius below one at the start so that states neither explode nor
    saturate. The biases start at zero, except the LSTM's forget-gate bias, which starts
    at one so that the cell state is carried rather than forgotten early in training
    (Jozefowicz et al., 2015). ``seed`` makes the draw reproducible; the numbers are drawn
    in float64 and rounded, so float32 and float64 Params from one seed agree.
    """
    params = Params(input_size, hidden_size, output_size, cell=cell, num_layers=num_layers,
                    bidirectional=bidirectional, dtype=dtype)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"seed: expected None, a non-negative int or a NumPy seed, got "
                        f"{seed!r}") from exc
    H = params.hidden_size
    bound = 1.0 / math.sqrt(H)
    for layer in params.layers:
        for view in (layer.U, layer.W):
            view[...] = rng.uniform(-bound, bound, size=view.shape)
        if params.cell == "lstm":
            layer.b[H:2 * H] = 1.0
    bound = 1.0 / math.sqrt(params.V.shape[1])
    params.V[...] = rng.uniform(-bound, bound, size=params.V.shape)
    return params
