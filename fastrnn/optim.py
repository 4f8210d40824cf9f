"""The derivation's SGD step, optimisers, learning-rate schedules and gradient clipping, on
the flat parameter buffer.

Every update is one compiled loop over ``params.data`` and ``grads.data`` (P entries);
the optimiser's state is flat arrays of the same size, allocated once. The update rules
are PyTorch's (``torch.optim``) with its default constants, so that results can be
checked against it; Adagrad is also min-char-rnn's optimiser.
"""
from __future__ import annotations

import math
import reprlib

import numpy as np

from . import _checks, _vec
from ._config import jit
from .params import Params


# ------------------------------------------------------------------- compiled updates

@jit
def _sgd(p, g, lr, momentum, nesterov, buf, first):
    for i in range(p.size):
        d = g[i]
        if momentum != 0.0:
            buf[i] = d if first else momentum * buf[i] + d
            d = d + momentum * buf[i] if nesterov else buf[i]
        p[i] -= lr * d


@jit
def _adagrad(p, g, lr, eps, sum_sq):
    for i in range(p.size):
        sum_sq[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(sum_sq[i]) + eps)


@jit
def _rmsprop(p, g, lr, alpha, eps, sq):
    for i in range(p.size):
        sq[i] = alpha * sq[i] + (1.0 - alpha) * g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(sq[i]) + eps)


@jit
def _adam(p, g, lr, beta1, beta2, eps, t, m, v):
    correction1 = 1.0 - beta1 ** t
    root_correction2 = math.sqrt(1.0 - beta2 ** t)
    step = lr / correction1
    for i in range(p.size):
        m[i] = beta1 * m[i] + (1.0 - beta1) * g[i]
        v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i]
        p[i] -= step * m[i] / (math.sqrt(v[i]) / root_correction2 + eps)


@jit
def _sum_squares(g):
    """The sum of g[i]^2, accumulated in float64 (float32 squares overflow from 1.8e19)."""
    total = 0.0
    for i in range(g.size):
        x = float(g[i])
        total += x * x
    return total


@jit
def _norm(g):
    """The 2-norm of g; finite for every finite g, rescaled by max |g[i]| when the sum
    of squares overflows. inf when an entry is inf, nan when one is nan."""
    total = _sum_squares(g)
    if not math.isinf(total):
        return math.sqrt(total)
    largest = 0.0
    for i in range(g.size):
        largest = max(largest, abs(float(g[i])))
    if math.isinf(largest):
        return largest
    total = 0.0
    for i in range(g.size):
        x = float(g[i]) / largest
        total += x * x
    return largest * math.sqrt(total)


@jit
def _scale(g, factor):
    for i in range(g.size):
        g[i] *= factor


@jit
def _clip(g, limit):
    for i in range(g.size):
        if g[i] > limit:
            g[i] = limit
        elif g[i] < -limit:
            g[i] = -limit


# ---------------------------------------------------------- the derivation's update

def sgd_step(params: Params, grads: Params, lr) -> Params:
    """The derivation's update, theta <- theta - lr * dL/dtheta, in place on params.data.

    Returns ``params``.
    """
    params = _checks.check_params(params)
    if not params.data.flags.writeable:
        raise ValueError("params.data: expected a writable array, got a read-only one")
    if not isinstance(grads, Params) or not params.same_layout(grads):
        raise TypeError(f"grads: expected gradients of the params' layout ({params!r}), "
                        f"got {grads!r}")
    lr = _checks.check_learning_rate(lr)
    _checks.check_finite(grads.data, "grads")
    with np.errstate(over="ignore", under="ignore"):
        alpha = params.dtype.type(-lr)
    if not np.isfinite(alpha) or alpha == 0:
        raise ValueError(f"lr: expected a positive number that {params.dtype.name} can hold, "
                         f"got {lr!r}")
    if not _update_is_finite(params.data, grads.data, alpha):
        raise FloatingPointError("lr: the update params - lr * grads overflows (lr too large "
                                 "for these gradients); params are left unchanged")
    _vec.axpy(alpha, grads.data, params.data)
    return params


def _update_is_finite(p: np.ndarray, g: np.ndarray, alpha) -> bool:
    """Whether p + alpha * g is finite everywhere, for finite p, g and alpha.

    A bound from the largest magnitudes, computed in the arrays' dtype, decides without
    allocating; only when the bound overflows is the update itself computed."""
    with np.errstate(over="ignore", invalid="ignore"):
        bound = abs(alpha) * max(-g.min(), g.max()) + max(-p.min(), p.max())
        return bool(np.isfinite(bound)) or bool(np.isfinite(p + alpha * g).all())


# ------------------------------------------------------------------------- clipping

def clip_grad_norm(grads: Params, max_norm: float) -> float:
    """Scale grads.data in place so that its 2-norm is at most ``max_norm``.

    PyTorch's ``clip_grad_norm_``: the factor is max_norm / (norm + 1e-6), applied only
    when below one. The norm is accumulated in float64 and rescaled when its square
    overflows, so a huge finite gradient (float32 entries from 1.8e19) is clipped, not
    taken for an infinite one. Returns the norm before clipping (inf or nan when the
    gradient is not finite, in which case nothing is scaled).
    """
    max_norm = _positive(max_norm, "max_norm")
    _check_writable(grads, "grads")
    norm = _norm(grads.data)
    factor = max_norm / (norm + 1e-6)
    if math.isfinite(norm) and factor < 1.0:
        _scale(grads.data, grads.dtype.type(factor))
    return norm


def clip_grad_value(grads: Params, clip: float) -> None:
    """Clamp every gradient entry to [-clip, clip] in place (min-char-rnn's +-5)."""
    clip = _positive(clip, "clip")
    _check_writable(grads, "grads")
    _clip(grads.data, grads.dtype.type(clip))


def _check_writable(params, argument: str) -> None:
    """A Params whose buffer can be updated in place."""
    if not isinstance(params, Params):
        raise TypeError(f"{argument}: expected Params, got {type(params).__name__}")
    if not params.data.flags.writeable:
        raise ValueError(f"{argument}.data: expected a writable array, got a read-only one")


def _real(value, argument: str, expected: str) -> float:
    """A Python float from a real number (not a bool), else a TypeError naming it."""
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected {expected}, got {value!r}")
    return float(value)


def _positive(value, argument: str) -> float:
    value = _real(value, argument, "a positive number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{argument}: expected a positive finite number, got {value!r}")
    return value


def _count(value, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{argument}: expected a positive int, got {value!r}")
    return int(value)


def _fraction(value, argument: str) -> float:
    value = _real(value, argument, "a number in [0, 1)")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{argument}: expected a number in [0, 1), got {value!r}")
    return value


# ------------------------------------------------------------------------ schedules

class Constant:
    """lr(step) = lr."""

    def __init__(self, lr):
        self.lr = _checks.check_learning_rate(lr)

    def config(self) -> dict:
        return dict(kind="Constant", lr=self.lr)

    def __call__(self, step: int) -> float:
        return self.lr


class StepDecay:
    """lr(step) = lr * gamma ** (step // every): multiply by gamma every ``every`` steps
    (inf once a gamma above one overflows)."""

    def __init__(self, lr, every: int, gamma: float = 0.1):
        self.lr = _checks.check_learning_rate(lr)
        self.every, self.gamma = _count(every, "every"), _positive(gamma, "gamma")

    def config(self) -> dict:
        return dict(kind="StepDecay", lr=self.lr, every=self.every, gamma=self.gamma)

    def __call__(self, step: int) -> float:
        try:
            return self.lr * self.gamma ** (step // self.every)
        except OverflowError:
            return math.inf


class Cosine:
    """lr(step) falls from lr to min_lr along half a cosine over ``total`` steps."""

    def __init__(self, lr, total: int, min_lr: float = 0.0):
        self.lr = _checks.check_learning_rate(lr)
        total = _count(total, "total")
        min_lr = _real(min_lr, "min_lr", "a number in [0, lr]")
        if not 0.0 <= min_lr <= self.lr:
            raise ValueError(f"min_lr: expected a number in [0, lr], got {min_lr!r}")
        self.total, self.min_lr = total, min_lr

    def config(self) -> dict:
        return dict(kind="Cosine", lr=self.lr, total=self.total, min_lr=self.min_lr)

    def __call__(self, step: int) -> float:
        progress = min(step, self.total) / self.total
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))


SCHEDULES = {cls.__name__: cls for cls in (Constant, StepDecay, Cosine)}


def _schedule(lr):
    """A schedule from a number, or a schedule object (anything with config())."""
    if hasattr(lr, "config") and callable(lr):
        return lr
    return Constant(lr)


# ----------------------------------------------------------------------- optimisers

class Optimizer:
    """Base class: holds the schedule, the step count and flat state buffers.

    ``step(params, grads)`` updates params.data in place from grads.data. ``state`` maps
    names to flat arrays of P entries, allocated at the first step; with ``steps`` it
    is all ``state_dict()`` saves, so a loaded optimiser continues bit for bit.
    """

    buffers: tuple[str, ...] = ()
    squares: tuple[str, ...] = ()       # buffers of sums or averages of g^2: never < 0

    def __init__(self, lr, **options):
        self.schedule = _schedule(lr)
        self.options = options
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}

    def config(self) -> dict:
        """The hyper-parameters, enough for ``from_config`` to rebuild this optimiser."""
        return dict(lr=self.schedule.config(), **self.options)

    @property
    def lr(self) -> float:
        """The learning rate the next step uses."""
        return self.schedule(self.steps)

    def step(self, params: Params, grads: Params) -> None:
        _check_writable(params, "params")
        if not isinstance(grads, Params) or not params.same_layout(grads):
            raise TypeError(f"grads: expected gradients of the params' layout "
                            f"({params!r}), got {grads!r}")
        if len(self.state) < len(self.buffers):
            self.state = {name: np.zeros_like(params.data) for name in self.buffers}
        elif self.state and (self.state_size, self._state_dtype) != (params.data.size,
                                                                     params.dtype):
            raise ValueError(f"params: this optimiser holds state for {self.state_size} "
                             f"{self._state_dtype} parameters, got {params.data.size} "
                             f"{params.dtype} ones")
        lr = params.dtype.type(self.lr)
        self._update(params.data, grads.data, lr)
        self.steps += 1

    @property
    def state_size(self) -> int:
        return next(iter(self.state.values())).size if self.state else 0

    @property
    def _state_dtype(self) -> np.dtype:
        return next(iter(self.state.values())).dtype

    def state_dict(self) -> dict:
        return dict(name=type(self).__name__, steps=self.steps,
                    **{f"state_{k}": v for k, v in self.state.items()})

    def load_state_dict(self, state: dict) -> None:
        """Continue from what ``state_dict()`` returned (also after np.savez and np.load):
        the step count and this optimiser's buffers, flat float arrays of one size and
        dtype, which only an optimiser that never stepped may lack."""
        if state.get("name") != type(self).__name__:
            raise ValueError(f"state: expected the state of a {type(self).__name__}, got "
                             f"that of {state.get('name')!r}")
        steps = state.get("steps")
        if np.ndim(steps) != 0 or not np.issubdtype(np.asarray(steps).dtype, np.integer) \
                or steps < 0:
            raise ValueError(f"state: expected a step count >= 0 under 'steps', got "
                             f"{steps!r}")
        buffers = {k[len("state_"):]: np.array(v) for k, v in state.items()
                   if k.startswith("state_")}
        if set(buffers) != set(self.buffers) and (buffers or steps):
            raise ValueError(f"state: expected the buffers {self.buffers} after {int(steps)} "
                             f"steps, got {tuple(buffers)}")
        first = next(iter(buffers.values()), None)
        if any(a.ndim != 1 or a.dtype.kind != "f" or (a.shape, a.dtype) != (first.shape,
                                                                           first.dtype)
               for a in buffers.values()):
            raise ValueError("state: expected flat float arrays of one size and dtype, got "
                             + ", ".join(f"{name} {a.dtype} {a.shape}"
                                         for name, a in buffers.items()))
        for name, a in buffers.items():
            self.check_buffer(name, a, f"state_{name}")
        self.steps, self.state = int(steps), buffers

    def check_buffer(self, name: str, a: np.ndarray, argument: str) -> None:
        """Refuse values of buffer ``name`` that no sequence of finite steps makes: inf or
        NaN anywhere, a negative sum or average of squares (its square root is NaN)."""
        _checks.check_finite(a, argument)
        if name in self.squares and a.size and a.min() < 0:
            index = int(np.argmin(a))
            raise ValueError(f"{argument}: expected values >= 0 (a running sum or average "
                             f"of squared gradients), got {a[index]} at index {index}")

    def _update(self, p, g, lr):
        raise NotImplementedError


class SGD(Optimizer):
    """p -= lr * d, with d = g, or momentum buf = momentum * buf + g and d = buf (or
    g + momentum * buf with Nesterov)."""

    def __init__(self, lr, momentum: float = 0.0, nesterov: bool = False):
        momentum = _fraction(momentum, "momentum")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected True or False, got {nesterov!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        super().__init__(lr, momentum=momentum, nesterov=bool(nesterov))
        self.momentum, self.nesterov = momentum, bool(nesterov)
        self.buffers = ("momentum",) if self.momentum else ()

    def _update(self, p, g, lr):
        buf = self.state["momentum"] if self.momentum else p[:0]
        _sgd(p, g, lr, p.dtype.type(self.momentum), self.nesterov, buf, self.steps == 0)


class Adagrad(Optimizer):
    """sum_sq += g^2; p -= lr * g / (sqrt(sum_sq) + eps)."""

    buffers = squares = ("sum_sq",)

    def __init__(self, lr=0.1, eps: float = 1e-10):
        self.eps = _positive(eps, "eps")
        super().__init__(lr, eps=self.eps)

    def _update(self, p, g, lr):
        _adagrad(p, g, lr, p.dtype.type(self.eps), self.state["sum_sq"])


class RMSprop(Optimizer):
    """sq = alpha * sq + (1 - alpha) g^2; p -= lr * g / (sqrt(sq) + eps)."""

    buffers = squares = ("square_avg",)

    def __init__(self, lr=0.01, alpha: float = 0.99, eps: float = 1e-8):
        self.alpha, self.eps = _fraction(alpha, "alpha"), _positive(eps, "eps")
        super().__init__(lr, alpha=self.alpha, eps=self.eps)

    def _update(self, p, g, lr):
        dt = p.dtype.type
        _rmsprop(p, g, lr, dt(self.alpha), dt(self.eps), self.state["square_avg"])


class Adam(Optimizer):
    """Adam with bias correction: p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)."""

    buffers = ("exp_avg", "exp_avg_sq")
    squares = ("exp_avg_sq",)

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        if np.shape(betas) != (2,):
            raise ValueError(f"betas: expected a pair of numbers in [0, 1), got {betas!r}")
        self.beta1, self.beta2 = (_fraction(b, "betas") for b in betas)
        self.eps = _positive(eps, "eps")
        super().__init__(lr, betas=[self.beta1, self.beta2], eps=self.eps)

    def _update(self, p, g, lr):
        dt = p.dtype.type
        _adam(p, g, lr, dt(self.beta1), dt(self.beta2), dt(self.eps), self.steps + 1,
              self.state["exp_avg"], self.state["exp_avg_sq"])


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def from_config(name: str, config: dict) -> Optimizer:
    """The optimiser ``Optimizer.config`` describes (class name and hyper-parameters)."""
    classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    if name not in classes:
        raise ValueError(f"optimizer: expected one of {tuple(classes)}, got {name!r}")
    if not isinstance(config, dict):
        raise ValueError(f"config: expected a dict of options, got {type(config).__name__}")
    if not isinstance(config.get("lr"), dict):
        raise ValueError(f"config: expected the schedule's config, a dict, under 'lr', got "
                         f"{reprlib.repr(config.get('lr'))}")
    options = dict(config)
    schedule = dict(options.pop("lr"))
    kind = schedule.pop("kind", None)
    if not isinstance(kind, str) or kind not in SCHEDULES:
        raise ValueError(f"lr: expected a schedule in {tuple(SCHEDULES)}, got "
                         f"{reprlib.repr(kind)}")
    return classes[name](SCHEDULES[kind](**schedule), **options)
