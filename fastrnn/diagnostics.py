"""Diagnostics: how the gradient travels back through time.

BPTT's recursion kappa_t = V^T dL/do_t + W^T (f'(a_{t+1}) * kappa_{t+1}) multiplies by
W^T diag(f') once per step back. Over many steps the product shrinks (vanishing
gradients) or grows (exploding gradients); ||kappa_t|| shows which.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _checks, backends, checkpoint
from .functional import _initial_state
from .model import RNN
from .params import Params
from .workspace import Workspace


def gradient_norms(model, x, y, h0=None, *, last_step_only=False) -> np.ndarray:
    """||kappa_t|| = ||dL/ds_t|| for t = 1 .. T, (T,), over the whole batch.

    For a stack, s_t is the top layer's state (both directions, for a bidirectional one).
    ``model`` is an ``RNN`` (its loss is used, summed over the window) or a ``Params``
    of a cross-entropy model. With ``last_step_only``, L is the loss of the last step
    alone, so that ||dL_T/ds_t|| shows how much of it reaches each earlier step: the
    vanishing (or exploding) picture in its plainest form. The computation runs in a
    workspace of its own, so the gradients and state that ``loss_and_grad`` returned
    last stay as they were.
    """
    if not isinstance(model, (RNN, Params)):
        raise TypeError(f"model: expected fastrnn.RNN or fastrnn.Params, got "
                        f"{type(model).__name__}")
    params = model if isinstance(model, Params) else model.params
    loss = "cross_entropy" if isinstance(model, Params) else model.loss
    backend = "auto" if isinstance(model, Params) else model.backend
    params = _checks.check_params(params)
    kernels = backends.get(backend)
    x = _checks.check_x(params, x)
    T, B = x.shape[:2]
    y = _checks.check_y(params, y, loss, T, B)
    h0 = _checks.check_state(params, h0, B)
    ws = Workspace(params, T, B)
    kernels.forward(params, x, *_initial_state(h0, ws), ws)
    kernels.loss(loss, "sum", y, ws)
    if last_step_only:
        ws.do[:-1] = 0.0
    kernels.backward(params, x, ws, ws.grads)
    dirs = params.num_directions
    squares = np.zeros(T)
    for d, cell in enumerate(ws.cells[-dirs:]):          # the top layer's cells
        kappa = cell.kappa[::-1] if d else cell.kappa     # into time order
        squares += (kappa.astype(np.float64) ** 2).sum(axis=(1, 2))
    return np.sqrt(squares)


def _figure():
    """A Figure of its own, outside pyplot: the caller's backend and figures stay as
    they are."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'fastrnn[plot]'") from exc
    fig = Figure(figsize=(6, 3.5))
    return fig, fig.subplots()


def _save(fig, path, argument: str) -> Path:
    """Write ``fig`` in the format of ``path``'s suffix (PNG without one), atomically
    (``checkpoint.atomic_write``): a failed write leaves any previous file."""
    path = checkpoint.check_target(path, argument)
    fig.tight_layout()
    image_format = path.suffix[1:].lower() or "png"
    return checkpoint.atomic_write(path, lambda f: fig.savefig(f, format=image_format,
                                                               dpi=120), argument=argument)


def plot_gradient_norms(norms: dict, path) -> Path:
    """Write curves of ||dL/ds_t|| against t, on a log scale, as a PNG.

    ``norms`` maps a label to a (T,) array, as ``gradient_norms`` returns.
    """
    fig, ax = _figure()
    for label, values in norms.items():
        ax.semilogy(np.arange(1, len(values) + 1), values, marker=".", label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("gradient norm")
    ax.set_title("gradient reaching each time step (BPTT)")
    ax.legend()
    return _save(fig, path, "path")


def plot_training(model, losses, x, y, stem, *, held_out=None, baseline=None) -> list[Path]:
    """Write ``stem-loss.png`` (the loss per step) and ``stem-gradnorms.png`` (the
    gradient norms through time on x, y, as ``gradient_norms`` computes them).

    ``losses`` are the training losses of the model's last ``len(losses)`` steps (nan for
    a skipped step), plotted at their step numbers. ``held_out`` maps step numbers to a
    held-out loss, drawn as a second curve; ``baseline`` is drawn as a horizontal line
    (for a character model, the entropy of the letter frequencies: the loss of a model
    without context). Cross-entropy is in nats, per character for a model with a
    vocabulary.
    """
    stem = Path(stem)
    p = model.params
    fig, ax = _figure()
    last = model.progress["steps"]
    ax.plot(np.arange(last - len(losses) + 1, last + 1), losses, lw=0.6, label="training")
    if held_out:
        steps = sorted(held_out)
        ax.plot(steps, [held_out[step] for step in steps], marker="o", label="held-out")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", lw=1, label="unigram baseline")
    if model.loss == "cross_entropy":
        unit = "nats/char" if model.vocabulary is not None else "nats per step"
        ax.set_ylabel(f"cross-entropy ({unit})")
    else:
        ax.set_ylabel(f"{model.loss} (mean per step)")
    ax.set_xlabel("step")
    ax.set_title(f"loss: {p.cell} x {p.num_layers} layer(s), H={p.hidden_size}")
    ax.legend()
    loss_path = _save(fig, stem.with_name(stem.name + "-loss.png"), "stem")
    norms = {"||dL/ds_t||, loss of every step": gradient_norms(model, x, y),
             "||dL_T/ds_t||, loss of the last step": gradient_norms(model, x, y,
                                                                   last_step_only=True)}
    norms_path = plot_gradient_norms(norms, stem.with_name(stem.name + "-gradnorms.png"))
    return [loss_path, norms_path]
