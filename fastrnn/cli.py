"""Command line: ``python -m fastrnn``.

demo   trains a small character model on a built-in text and prints the loss falling.
bench  measures fastrnn's backends, a NumPy loop and PyTorch, each in its own process.
"""
from __future__ import annotations

import argparse
import codecs
import math
import sys
import time

import numpy as np

from . import __version__, available_backends, init_params, loss_and_grad, sgd_step


def _builtin_text() -> str:
    """The Zen of Python, which every interpreter carries (rot13-encoded in ``this``)."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


def demo(args) -> int:
    text = _builtin_text()
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text], dtype=np.int64)
    V = len(chars)
    counts = np.bincount(ids, minlength=V) / ids.size
    unigram = -(counts * np.log(counts)).sum()
    params = init_params(V, args.hidden, V, seed=args.seed)
    T = args.window
    rng = np.random.default_rng(args.seed)
    print(f"fastrnn {__version__} demo: {len(text)} characters of the Zen of Python, "
          f"vocabulary {V}, H={args.hidden}, T={T}, B={args.batch}, backend "
          f"{args.backend} of {available_backends()}")
    print(f"unigram entropy (predicting by letter frequency alone): {unigram:.3f} "
          f"nats/char")
    start = time.perf_counter()
    smoothed = math.log(V)
    for step in range(1, args.steps + 1):
        starts = rng.integers(0, ids.size - T - 1, size=args.batch)
        window = np.stack([ids[s:s + T + 1] for s in starts], axis=1)
        L, grads, _ = loss_and_grad(params, window[:-1], window[1:], reduction="mean",
                                    backend=args.backend)
        np.clip(grads.data, -5.0, 5.0, out=grads.data)
        sgd_step(params, grads, args.lr)
        smoothed = 0.95 * smoothed + 0.05 * L
        if step % args.every == 0 or step == 1:
            print(f"step {step:5d}  loss {smoothed:.3f} nats/char")
    rate = args.steps * T * args.batch / (time.perf_counter() - start)
    print(f"{rate:,.0f} characters/s; final loss {smoothed:.3f} vs unigram {unigram:.3f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastrnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    p = commands.add_parser("demo", help="train a small character model on a built-in text")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto")
    p = commands.add_parser("bench", help="compare backends and PyTorch, one process each")
    p.add_argument("--sizes", nargs="+", default=["S", "M", "L"], choices=["S", "M", "L"])
    p.add_argument("--no-stream", action="store_true", help="skip the streaming step")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench import run

        run(sizes=args.sizes, stream=not args.no_stream)
        return 0
    if args.command is None:
        args = parser.parse_args(["demo"])
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
