"""The model API: an RNN that holds its parameters, trains, predicts, samples and saves.

Legend: N steps per stream, T window length, B batch (streams), D input, H hidden,
O output.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import warnings
from pathlib import Path

import numpy as np

from . import _checks, backends, checkpoint, optim
from .data import Vocabulary, check_window
from .functional import forward, loss_and_grad
from .params import Params, check_dtype, init_params
from .stream import Stream

ON_NONFINITE = ("raise", "skip")


class NonFiniteError(FloatingPointError):
    """A training step produced a loss, gradient or update that is not finite.

    ``step`` is the number of that step and ``reason`` what was not finite.
    """

    step: int
    reason: str


class RNN:
    """A recurrent network with its parameters, optimiser and training progress.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H and O.
    cell : {"tanh", "sigmoid", "relu", "lstm", "gru"}
        A vanilla RNN with that nonlinearity, or a gated cell.
    num_layers : int
    bidirectional : bool
        A bidirectional network reads whole sequences: ``fit`` starts every window from
        a zero state (nothing to carry: its reverse direction starts at the window's
        end), and ``step`` and ``sample`` are not available.
    loss : {"cross_entropy", "mse"}
        What ``fit`` and ``loss_and_grad`` minimise.
    dtype : float32 or float64
    seed : int, optional
        Seeds the initial weights (see ``fastrnn.init_params``).
    backend : str
        "auto" or one of ``fastrnn.available_backends()``.
    vocabulary : Vocabulary, optional
        For character models: then D = O = len(vocabulary) and ``sample`` works.
    """

    def __init__(self, input_size, hidden_size, output_size, *, cell="tanh", num_layers=1,
                 bidirectional=False, loss="cross_entropy", dtype=np.float64, seed=None,
                 backend="auto", vocabulary: Vocabulary | None = None):
        self._setup(init_params(input_size, hidden_size, output_size, cell=cell,
                                num_layers=num_layers, bidirectional=bidirectional,
                                dtype=check_dtype(dtype), seed=seed),
                    loss, backend, vocabulary)

    def _setup(self, params: Params, loss, backend, vocabulary) -> None:
        """A new model around ``params``: untrained, no optimiser chosen yet."""
        self.params = params
        self.loss = _checks.check_choice(loss, _checks.LOSSES, "loss")
        backends.resolve(backend)
        self.backend = backend
        if vocabulary is not None and not isinstance(vocabulary, Vocabulary):
            raise TypeError(f"vocabulary: expected a Vocabulary or None, got "
                            f"{type(vocabulary).__name__}")
        if vocabulary is not None and \
                not (len(vocabulary) == params.input_size == params.output_size):
            raise ValueError(f"vocabulary: expected input_size = output_size = the "
                             f"vocabulary's {len(vocabulary)} characters, got input_size "
                             f"{params.input_size} and output_size {params.output_size}")
        self.vocabulary = vocabulary
        self.optimizer: optim.Optimizer | None = None
        self.progress = dict(steps=0, epoch=0, position=0, skipped=0)
        self.carry = None               # the state carried between windows by ``fit``
        self._undo: list[np.ndarray] = []   # params and optimiser state before an update
        self._stream: Stream | None = None

    @classmethod
    def char_model(cls, vocabulary: Vocabulary, hidden_size: int, **kwargs) -> "RNN":
        """A character language model over ``vocabulary``: D = O = len(vocabulary)."""
        return cls(len(vocabulary), hidden_size, len(vocabulary), vocabulary=vocabulary,
                   loss="cross_entropy", **kwargs)

    def __repr__(self):
        p = self.params
        depth = f", num_layers={p.num_layers}" if p.num_layers > 1 else ""
        depth += ", bidirectional=True" if p.bidirectional else ""
        return (f"RNN(D={p.input_size}, H={p.hidden_size}, O={p.output_size}, "
                f"cell={p.cell!r}{depth}, loss={self.loss!r}, dtype={p.dtype.name}, "
                f"steps={self.progress['steps']})")

    # --------------------------------------------------------------- computation

    def forward(self, x, h0=None):
        """(o, h_T): outputs (T, B, O) and the final state; see ``fastrnn.forward``."""
        return forward(self.params, x, h0, backend=self.backend)

    def loss_and_grad(self, x, y, h0=None, *, reduction="mean"):
        """(loss, grads, h_T) for this model's loss; see ``fastrnn.loss_and_grad``."""
        return loss_and_grad(self.params, x, y, h0, loss=self.loss, reduction=reduction,
                             backend=self.backend)

    def predict(self, x, h0=None) -> np.ndarray:
        """Softmax probabilities (T, B, O) of a cross-entropy model, outputs o otherwise."""
        o, _ = self.forward(x, h0)
        if self.loss == "mse":
            return o
        o -= o.max(axis=-1, keepdims=True)
        np.exp(o, out=o)
        o /= o.sum(axis=-1, keepdims=True)
        return o

    def step(self, x_t) -> np.ndarray:
        """One step of streaming inference, the state kept between calls.

        x_t: a token id, (B,) ids or a (B, D) block; returns o_t (B, O), a buffer the
        next call overwrites. ``reset_state`` starts again from zeros.
        """
        if not isinstance(x_t, (int, np.ndarray)):      # a list: a ragged one is refused
            x_t = _checks._as_array(x_t, "x_t")
        B = 1 if np.ndim(x_t) == 0 else len(x_t)
        if B == 0:
            raise ValueError(f"x_t: expected a token id, (B,) token ids or a (B, D) block, "
                             f"B >= 1, got {_checks.describe(np.asarray(x_t))}")
        if self._stream is None or self._stream.batch_size != B:
            self._stream = Stream(self.params, batch_size=B, backend=self.backend)
        return self._stream(x_t)

    def reset_state(self) -> None:
        if self._stream is not None:
            self._stream.reset()

    def sample(self, prefix: str, n: int, temperature: float = 1.0, seed=None) -> str:
        """Generate ``n`` characters after ``prefix`` from a character model.

        The prefix is run through the network, then each next character is drawn from
        softmax(o_t / temperature) and fed back in. ``temperature`` is any positive
        finite number: one near zero picks the most likely character every time.
        """
        if self.vocabulary is None:
            raise ValueError("sample: this model has no vocabulary (use RNN.char_model)")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix: expected str, got {type(prefix).__name__}")
        unknown = "".join(sorted(set(prefix) - set(self.vocabulary.chars)))
        if unknown:
            raise ValueError(f"prefix: expected characters of the model's vocabulary "
                             f"({len(self.vocabulary)} characters), got {unknown!r}")
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: expected a non-negative int, got {n!r}")
        temperature = optim._positive(temperature, "temperature")
        try:
            rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"seed: expected None, a non-negative int or a NumPy seed, got "
                            f"{seed!r}") from exc
        ids = self.vocabulary.encode(prefix) if prefix else np.zeros(1, dtype=np.int64)
        stream = Stream(self.params, batch_size=1, backend=self.backend)
        for token in ids:
            o = stream(int(token))
        out = []
        for _ in range(n):
            # (o - max o) / temperature is <= 0 at every entry and 0 at the largest, so it
            # cannot overflow to +inf: a tiny temperature gives -inf, that is p = 0, and
            # sampling tends to the argmax as it should.
            logits = o[0].astype(np.float64)
            logits -= logits.max()
            with np.errstate(over="ignore", under="ignore"):
                logits /= temperature
            p = np.exp(logits)
            token = int(rng.choice(p.size, p=p / p.sum()))
            out.append(token)
            o = stream(token)
        return prefix + self.vocabulary.decode(out)

    # ------------------------------------------------------------------ training

    def configure(self, optimizer="adam", lr=None, **options) -> optim.Optimizer:
        """Choose the optimiser: a name from ``fastrnn.optim.OPTIMIZERS`` with its
        options and ``lr`` (2e-3 when None; a number or a schedule), or an Optimizer
        instance, which carries its own. The (initial) learning rate must be one that
        the params' dtype can hold (1e308 is inf in float32)."""
        if isinstance(optimizer, optim.Optimizer):
            given = (["lr"] if lr is not None else []) + list(options)
            if given:
                raise TypeError(f"configure: an Optimizer instance carries its own lr and "
                                f"options, got {', '.join(given)} too")
            chosen = optimizer
        elif isinstance(optimizer, str) and optimizer in optim.OPTIMIZERS:
            chosen = optim.OPTIMIZERS[optimizer](2e-3 if lr is None else lr, **options)
        else:
            raise ValueError(f"optimizer: expected one of {tuple(optim.OPTIMIZERS)} or an "
                             f"Optimizer, got {optimizer!r}")
        rate = chosen.schedule.lr               # the chosen rate, not where a schedule is
        with np.errstate(over="ignore", under="ignore"):
            held = self.params.dtype.type(rate)
        if not np.isfinite(held) or held == 0:
            raise ValueError(f"lr: expected a positive number that {self.params.dtype.name} "
                             f"can hold, got {rate!r}")
        self.optimizer = chosen
        return self.optimizer

    def fit(self, x, y, *, window: int, epochs: int = 1, steps: int | None = None,
            clip_norm: float | None = None, clip_value: float | None = None,
            on_nonfinite: str = "raise", callback=None, progress: bool = False) -> dict:
        """Train by truncated backpropagation through time.

        x (N, B) token ids or (N, B, D), y (N, B) class ids or (N, B, O): B parallel
        streams of one long sequence, time-major (``fastrnn.data.streams`` makes them),
        checked whole before the first step: bad data anywhere raises before anything
        is updated. Each epoch walks the streams in windows of ``window`` steps; the
        final state of a window is the initial state of the next, as plain arrays, so no
        gradient flows back across windows (that is the truncation; there is nothing to
        detach). The state starts from zeros at each epoch.

        Training stops after ``epochs`` epochs in all or after ``steps`` more steps
        (positive ints; ``steps=None``, the default, sets no limit on steps), whichever
        comes first; the progress (epoch, position, carried state, optimiser
        state) stays in the model, so ``fit`` or a saved checkpoint continues exactly.
        Continued on other data, training goes on at the saved position, from a zero
        state if the batch size differs; when that position is at or past the end of
        the new x, the epoch in progress starts again from its beginning (position 0,
        a zero state, the epoch count unchanged).

        Gradients are clipped by global norm (``clip_norm``, PyTorch's semantics) and/or
        by value (``clip_value``): positive numbers, or None for no clipping. A step
        whose loss or gradient is not finite, or whose update would make a parameter inf
        or NaN, is never applied (such an update is undone, the optimiser's state with
        it): it raises NonFiniteError with ``on_nonfinite="raise"`` (the default), or is
        skipped and counted with "skip".

        ``callback(info)`` is called after every step with a dict of step, epoch, loss,
        grad_norm and tokens (T * B). ``progress=True`` shows a progress bar (tqdm, on
        stderr) of the steps this call makes, with the last step's loss. Parameters that
        are already inf or NaN are refused (ValueError) before anything is updated.
        Returns the progress dict. A Ctrl-C that comes
        while a step updates the model raises KeyboardInterrupt once the step is counted,
        so that the model (and a checkpoint saved then) continues exactly (in the main
        thread, under Python's own SIGINT handler).
        """
        window = check_window(window)
        epochs = _positive_int(epochs, "epochs")
        if steps is not None:
            steps = _positive_int(steps, "steps", " or None")
        _checks.check_choice(on_nonfinite, ON_NONFINITE, "on_nonfinite")
        if clip_norm is not None:
            clip_norm = optim._positive(clip_norm, "clip_norm")
        if clip_value is not None:
            clip_value = optim._positive(clip_value, "clip_value")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable or None, got "
                            f"{type(callback).__name__}")
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress: expected True or False, got {progress!r}")
        x, y = self._check_streams(x, y)
        N, B = x.shape[:2]
        try:
            _checks.check_finite(self.params.data, "params")
        except ValueError as exc:
            raise ValueError(f"{exc}: the parameters were already inf or NaN before "
                             f"training; fit changed nothing") from None
        if self.optimizer is None:
            self.configure()
        shape = self.params.state_shape(B)
        if self.carry is None or _state_parts(self.carry)[0].shape != shape:
            self.carry = _zero_state(self.params, shape)
        done = 0
        if self.progress["position"] >= N:
            self.progress["position"] = 0
        bar = contextlib.nullcontext()
        if progress:
            bar = _progress_bar(_steps_to_go(self.progress, N, window, epochs, steps))
        with _CtrlCGuard() as guard, bar:
            while self.progress["epoch"] < epochs and (steps is None or done < steps):
                start = self.progress["position"]
                if start == 0 or self.params.bidirectional:
                    for part in _state_parts(self.carry):
                        part.fill(0.0)
                stop = min(start + window, N)
                loss, grad_norm = self._train_step(x[start:stop], y[start:stop], clip_norm,
                                                   clip_value, on_nonfinite, guard)
                done += 1
                self.progress["steps"] += 1
                self.progress["position"] = stop if stop < N else 0
                if stop == N:
                    self.progress["epoch"] += 1
                guard.release()                 # the step is complete: Ctrl-C may act
                if progress:
                    bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    bar.update()
                if callback is not None:
                    callback(dict(step=self.progress["steps"], epoch=self.progress["epoch"],
                                  loss=loss, grad_norm=grad_norm, tokens=(stop - start) * B))
        return dict(self.progress)

    def _train_step(self, x, y, clip_norm, clip_value, on_nonfinite, guard):
        """One step; from the end of the gradient's computation on, which changes the
        model, ``guard`` holds Ctrl-C back until ``fit`` has counted the step."""
        try:
            loss, grads, h_T = loss_and_grad(self.params, x, y, self.carry, loss=self.loss,
                                             reduction="mean", backend=self.backend)
        except FloatingPointError as exc:
            guard.hold()
            return self._nonfinite(on_nonfinite, str(exc))     # it names its argument
        guard.hold()
        grad_norm = optim.clip_grad_norm(grads, clip_norm) if clip_norm else \
            optim._norm(grads.data)
        if not math.isfinite(grad_norm):
            return self._nonfinite(on_nonfinite, f"the gradient norm is {grad_norm}")
        if clip_value:
            optim.clip_grad_value(grads, clip_value)
        if not self._update(grads):
            return self._nonfinite(on_nonfinite, "the update would have made params inf or "
                                                 "NaN")
        for carry, final in zip(_state_parts(self.carry), _state_parts(h_T)):
            np.copyto(carry, final)
        return loss, grad_norm

    def _update(self, grads) -> bool:
        """The optimiser's step, undone when it leaves a parameter inf or NaN: params and
        optimiser state (buffers and step count) are then as before it. Returns whether
        the update stands. The copies for the undo go to buffers kept between steps, so a
        step allocates no array after the first."""
        opt = self.optimizer
        names, steps = tuple(opt.state), opt.steps
        live = (self.params.data, *opt.state.values())
        if [(a.shape, a.dtype) for a in self._undo] != [(a.shape, a.dtype) for a in live]:
            self._undo = [np.empty_like(a) for a in live]
        for saved, a in zip(self._undo, live):
            np.copyto(saved, a)
        opt.step(self.params, grads)
        if _checks.all_finite(self.params.data):
            return True
        opt.state = {name: opt.state[name] for name in names}
        opt.steps = steps
        for saved, a in zip(self._undo, (self.params.data, *opt.state.values())):
            np.copyto(a, saved)
        return False

    def _nonfinite(self, on_nonfinite, what):
        if on_nonfinite == "raise":
            step = self.progress["steps"] + 1
            error = NonFiniteError(f"training step {step}: {what}; the step was not applied "
                                   f"(lower the learning rate, clip gradients, or pass "
                                   f"on_nonfinite='skip')")
            error.step, error.reason = step, what
            raise error
        self.progress["skipped"] += 1
        return math.nan, math.nan

    def _check_streams(self, x, y):
        """x and y checked whole, so that bad data in a late window changes nothing."""
        x = _checks._as_array(x, "x")
        y = _checks._as_array(y, "y")
        if x.ndim < 2 or y.ndim < 2 or x.shape[:2] != y.shape[:2]:
            raise ValueError(f"x, y: expected streams of one length and batch, (N, B, ...), "
                             f"got shapes {x.shape} and {y.shape}")
        x = _checks.check_x(self.params, x)
        return x, _checks.check_y(self.params, y, self.loss, *x.shape[:2])

    # -------------------------------------------------------------- checkpoints

    def config(self) -> dict:
        return dict(self.params.config(), loss=self.loss, backend=self.backend)

    def save(self, path) -> Path:
        """Write a checkpoint: one .npz holding the parameters, the configuration, the
        vocabulary, the optimiser's state and the training progress.

        The file is written to a temporary file beside ``path``, flushed to disk and
        renamed over ``path``: a crash mid-save leaves any previous checkpoint intact,
        and the temporary files that saves killed mid-write left behind are removed by
        a later save (see ``fastrnn.checkpoint.atomic_write``). A path in a folder that
        does not exist, or naming a folder, is refused before anything is written.
        """
        return checkpoint.write(path, config=self.config(), params=self.params,
                                vocabulary=self.vocabulary, progress=self.progress,
                                carry=self.carry, optimizer=self.optimizer)

    @classmethod
    def load(cls, path, *, backend=None) -> "RNN":
        """Read a checkpoint written by ``save``.

        Everything in it is checked before it is used: the configuration's types and
        ranges, each array's shape and dtype (from its header, before its data is read)
        against the configuration, the carried state and the optimiser's buffers (finite,
        sums of squares >= 0), the progress counters (ints >= 0). A file that fails a
        check, cannot be read or whose arrays cannot be allocated here raises ValueError
        naming the file and the field; members the format does not have are not read.

        ``backend`` replaces the backend saved in the checkpoint. A saved backend that is
        not available here (say an extension not built on this machine) gives way to
        "auto", with a RuntimeWarning.
        """
        if backend is not None:
            backends.resolve(backend)       # a bad argument is the caller's, not the file's
        saved = checkpoint.read(path)
        model = cls.__new__(cls)
        model._setup(saved.params, saved.loss,
                     backend or _saved_backend(saved.backend, Path(path)), saved.vocabulary)
        model.progress, model.carry = saved.progress, saved.carry
        model.optimizer = saved.optimizer
        return model


def _positive_int(value, argument: str, alternative: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{argument}: expected a positive int{alternative}, got {value!r}")
    return int(value)


def _steps_to_go(progress: dict, N: int, window: int, epochs: int, steps) -> int:
    """How many steps ``fit`` makes from ``progress`` on streams of N steps."""
    if progress["epoch"] >= epochs:
        return 0
    per_epoch = -(-N // window)
    total = -(-(N - progress["position"]) // window) + \
        (epochs - progress["epoch"] - 1) * per_epoch
    return total if steps is None else min(total, steps)


def _progress_bar(total: int):
    from tqdm import tqdm           # imported only when asked for: it costs import time

    return tqdm(total=total, desc="fit", unit="step", dynamic_ncols=True)


def _saved_backend(name, path: Path) -> str:
    """The backend a checkpoint names, or "auto" when that one is not available here."""
    if name == "auto" or name in backends.available_backends():
        return name
    warnings.warn(f"checkpoint: {path} was saved with backend {name!r}, which is not "
                  f"available here; using 'auto' (available: "
                  f"{backends.available_backends()})", RuntimeWarning, stacklevel=3)
    return "auto"


def _state_parts(state) -> tuple:
    """The arrays of a state: (h,) or the LSTM's (h, c)."""
    return state if isinstance(state, tuple) else (state,)


def _zero_state(params: Params, shape):
    parts = [np.zeros(shape, dtype=params.dtype) for _ in range(1 + params.has_cell_state)]
    return tuple(parts) if params.has_cell_state else parts[0]


class _CtrlCGuard:
    """Within ``fit``: Ctrl-C (SIGINT) held back while a step commits its results.

    A step updates params, optimiser state, carried state and progress one after the
    other; interrupted in between, a checkpoint saved then would not resume exactly.
    Between ``hold()`` and ``release()`` (microseconds) a Ctrl-C is noted and raised as
    KeyboardInterrupt by ``release()``; anywhere else it interrupts at once, as usual.
    The handler is Python's default one, swapped for the duration of ``fit``, only in
    the main thread and only when no other handler is installed; elsewhere nothing is
    held back.
    """

    def __init__(self):
        self.holding = self.pending = self.installed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            try:
                signal.signal(signal.SIGINT, self._interrupt)
                self.installed = True
            except ValueError:                  # not the main interpreter
                pass
        return self

    def __exit__(self, *exc_info):
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return False

    def _interrupt(self, signum, frame):
        if not self.holding:
            raise KeyboardInterrupt
        self.pending = True

    def hold(self):
        self.holding = True

    def release(self):
        self.holding = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

