"""Command line: ``fastrnn COMMAND`` (or ``python -m fastrnn COMMAND``).

train   trains a character language model (default corpus: the Python standard
        library's sources, read from this interpreter; nothing to download)
sample  generates text from a checkpoint
bench   compares fastrnn's backends, a NumPy loop and PyTorch, one process each
info    version, backends, threads and the Numba cache
"""
from __future__ import annotations

# Only the standard library at the top: the console script imports this module before
# main() runs, and NumPy, Numba and the package's modules are imported inside main(),
# where a Ctrl-C is caught, so that an interrupted start is one line, not a traceback.
import argparse
import math
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from . import optim
    from .data import Vocabulary
    from .model import RNN

# Each point of --plot's held-out curve is the loss on this many windows of the held-out
# text cut into --batch streams: the work of about as many training steps, once every
# --every steps. (The whole held-out text, in 4 long streams, is evaluated at the end.)
CURVE_WINDOWS = 2


def _unigram_entropy(ids: np.ndarray, size: int) -> float:
    """Entropy in nats of the character frequencies: the loss of a model without context."""
    import numpy as np

    p = np.bincount(ids, minlength=size) / ids.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _next_char_streams(ids: np.ndarray, streams: int) -> tuple:
    """(x, y): ``ids`` cut into streams (N, B), y the character after x."""
    from . import data

    return tuple(data.streams(ids[k:len(ids) - 1 + k], streams) for k in (0, 1))


def _evaluate(model: RNN, x, y, window: int) -> float:
    """Mean cross-entropy (nats per character) over streams, the state carried along
    (passing the final state back in is safe; see ``fastrnn.loss_and_grad``)."""
    total, count, h = 0.0, 0, None
    for start in range(0, x.shape[0], window):
        stop = min(start + window, x.shape[0])
        loss, _, h = model.loss_and_grad(x[start:stop], y[start:stop], h, reduction="sum")
        total += loss
        count += (stop - start) * x.shape[1]
    return total / count


class _Progress:
    """A tqdm bar on a terminal, otherwise a line at every multiple of ``every`` steps
    and at the last step.

    The first step is timed on its own: on a first run it compiles the kernels, which
    would make the characters per second of a short run a fraction of the real figure.
    """

    def __init__(self, total: int, every: int):
        self.every = every
        self.created = time.perf_counter()
        self.start, self.first = None, math.nan
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)
            except ImportError:
                pass
        self.total, self.timed, self.tokens, self.smoothed = total, 0, 0, math.nan

    def update(self, info: dict, done: int) -> None:
        if self.start is None:                  # the first step: timed on its own
            self.start = time.perf_counter()
            self.first = self.start - self.created
        else:
            self.timed += 1
            self.tokens += info["tokens"]
        if math.isfinite(info["loss"]):           # nan until a step is not skipped
            self.smoothed = info["loss"] if math.isnan(self.smoothed) else \
                0.98 * self.smoothed + 0.02 * info["loss"]
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.smoothed:.3f}", chars_per_s=f"{rate:,.0f}")
            self.bar.update(1)
        elif self.due(info["step"], done):
            eta = (self.total - done) * (time.perf_counter() - self.start) / max(done - 1, 1)
            print(f"step {info['step']:6d}  loss {self.smoothed:.3f} nats/char  "
                  f"{rate:,.0f} chars/s  ETA {eta:4.0f} s", flush=True)

    def due(self, step: int, done: int) -> bool:
        """Whether ``step`` (the ``done``-th of this run) is a point to report."""
        return step % self.every == 0 or done == self.total

    def close(self) -> str:
        """The timing line: the first step's time and the characters per second of the
        others ("" before the first step)."""
        if self.bar is not None:
            self.bar.close()
        if self.start is None:
            return ""
        line = f"the first step took {self.first:.1f} s (on a first run, it compiles the kernels)"
        if self.timed == 0:
            return line
        rate = self.tokens / (time.perf_counter() - self.start)
        return f"{line}; {rate:,.0f} characters/s over the other {self.timed:,} steps"


# The defaults of the train options that a checkpoint fixes. Their arguments default to
# None, so that options given with --resume can be told from defaults. The backend is the
# checkpoint's too unless --backend is given, which may choose another one.
TRAIN_DEFAULTS = dict(hidden=128, cell="tanh", layers=1, dtype="float32", optimizer="adam",
                      lr=3e-3, cosine=False, backend="auto")


def _optimizer_name(optimizer: optim.Optimizer) -> str:
    from . import optim

    return {cls: name for name, cls in optim.OPTIMIZERS.items()}[type(optimizer)]


def _check_resume_options(args, model: RNN) -> None:
    """Refuse options given with --resume that contradict the checkpoint, whose model and
    optimiser are resumed as they are."""
    from . import optim

    p, opt = model.params, model.optimizer
    saved = dict(hidden=p.hidden_size, cell=p.cell, layers=p.num_layers, dtype=p.dtype.name)
    if opt is not None:
        saved.update(optimizer=_optimizer_name(opt), lr=opt.schedule.lr,
                     cosine=isinstance(opt.schedule, optim.Cosine))
    for name, value in saved.items():
        given = getattr(args, name)
        if given is not None and given != value:
            option = f"--{name}"
            trained = "without --cosine" if name == "cosine" else \
                f"with {option} {value}, got {given}"
            raise ValueError(f"{option}: {args.checkpoint} was trained {trained}; a resumed "
                             f"model keeps the checkpoint's configuration (leave {option} "
                             f"out, or train a new --checkpoint)")


def _check_checkpoint_target(args) -> None:
    """Refuse a --checkpoint that training could not write, or would overwrite unasked,
    before anything is trained."""
    from .checkpoint import check_target

    path = check_target(args.checkpoint, "--checkpoint")
    if path.exists() and not (args.resume or args.force):
        raise ValueError(f"--checkpoint: {path} exists; pass --resume to continue training "
                         f"it, or --force to replace it with a new model")
    # The save at the end writes a temporary file beside the checkpoint: try one now.
    trial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        trial.open("xb").close()
        trial.unlink()
    except OSError as exc:
        raise ValueError(f"--checkpoint: cannot write {path}: {exc.strerror} in "
                         f"{path.parent}") from None


def _check_plot(args) -> None:
    """Refuse --plot without matplotlib before anything is trained."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (plotted after training)
        except ImportError:
            raise ValueError("--plot: needs matplotlib (pip install 'fastrnn[plot]')") from None


def _resumed_model(args) -> RNN | None:
    """The character model of --checkpoint with --resume, checked against the options
    given; None for a new model."""
    from .model import RNN

    if not (args.resume and args.checkpoint.exists()):
        if args.resume:
            print(f"--resume: no checkpoint at {args.checkpoint} yet; training a new model")
        return None
    model = RNN.load(args.checkpoint, backend=args.backend)
    if model.vocabulary is None:
        raise ValueError(f"--checkpoint: {args.checkpoint} is not a character model (it "
                         f"has no vocabulary); train a new --checkpoint")
    if model.params.num_directions == 2:
        raise ValueError(f"--checkpoint: {args.checkpoint} is bidirectional, and a "
                         f"character model samples one step at a time; train a new "
                         f"--checkpoint")
    _check_resume_options(args, model)
    print(f"resuming {args.checkpoint} at step {model.progress['steps']}")
    return model


class _Corpus(NamedTuple):
    """The text, its first 95% cut into streams to train on and its last 5% held out.

    Legend: N steps of a stream, B streams. Each pair is (x, y), y the character after x.
    """
    text: str
    source: str                 # what the text is, for messages
    vocabulary: Vocabulary
    unigram: float              # the training text's unigram entropy, nats per character
    train: tuple                # (x, y), each (N, --batch) ids
    held_out: tuple             # (x, y), each (N, 4): evaluated at the end
    curve: tuple                # (x, y), each (CURVE_WINDOWS * --window, B): --plot's curve


def _read_corpus(args, vocabulary: Vocabulary | None) -> _Corpus:
    """--text or --chars of the default corpus, encoded with ``vocabulary`` (None: the
    text's own) and split; refuses a text too short for --batch or the held-out streams."""
    from . import data

    text = data.read_text(args.text) if args.text else data.stdlib_corpus(args.chars)
    vocabulary = vocabulary or data.Vocabulary.from_text(text)
    ids = vocabulary.encode(text)
    split, held_out_streams = int(len(ids) * 0.95), 4
    source = args.text or "the Python standard library's sources"
    if split < 2 * args.batch + 1:
        raise ValueError(f"--batch: {args.batch} streams of 2 steps or more need "
                         f"{2 * args.batch + 1} characters to train on, got {split:,} (95% "
                         f"of the {len(ids):,} characters of {source})")
    if len(ids) - split < 2 * held_out_streams + 1:
        raise ValueError(f"{'--text' if args.text else '--chars'}: {source} has "
                         f"{len(ids):,} characters, too few: its last 5% ({len(ids) - split} "
                         f"characters) are held out for evaluation in {held_out_streams} "
                         f"streams of 2 steps or more, which need {2 * held_out_streams + 1}")
    curve = _next_char_streams(ids[split:], min(args.batch, (len(ids) - split - 1) // 2))
    return _Corpus(text, source, vocabulary, _unigram_entropy(ids[:split], len(vocabulary)),
                   _next_char_streams(ids[:split], args.batch),
                   _next_char_streams(ids[split:], held_out_streams),
                   tuple(v[:CURVE_WINDOWS * args.window] for v in curve))


def _new_model(args, vocabulary: Vocabulary) -> RNN:
    from .model import RNN

    return RNN.char_model(vocabulary, args.hidden, cell=args.cell, num_layers=args.layers,
                          dtype=args.dtype, seed=args.seed, backend=args.backend)


def _configure(args, model: RNN) -> None:
    """Give a model without an optimiser (a new one, or one saved without) the options'."""
    from . import optim

    if model.optimizer is None:
        lr = optim.Cosine(args.lr, args.steps, args.lr / 10) if args.cosine else args.lr
        model.configure(args.optimizer, lr)


def _print_setup(args, model: RNN, corpus: _Corpus) -> None:
    """Print what is trained on what, and the loss of a model without context."""
    from . import __version__, available_backends, optim

    p, schedule = model.params, model.optimizer.schedule
    decay = f", cosine decay to {schedule.min_lr:g} over {schedule.total} steps" \
        if isinstance(schedule, optim.Cosine) else ""
    print(f"fastrnn {__version__}: {len(corpus.text):,} characters of {corpus.source}, "
          f"vocabulary {len(corpus.vocabulary)}, {p.cell} x {p.num_layers} layer(s), "
          f"H={p.hidden_size}, window T={args.window}, batch B={args.batch}, "
          f"{p.dtype.name}, {_optimizer_name(model.optimizer)} lr={schedule.lr:g}{decay}, "
          f"backend {model.backend} of {available_backends()}")
    print(f"unigram entropy (letter frequencies alone): {corpus.unigram:.3f} nats/char")


class _History(NamedTuple):
    losses: list                # the training loss of each step of this run
    curve: dict                 # step: held-out loss, for --plot
    timing: str                 # _Progress.close()'s line


def _fit(args, model: RNN, corpus: _Corpus) -> _History:
    """Train up to --steps in all, with progress, and save --checkpoint, also when
    interrupted or stopped by a non-finite step (re-raised)."""
    from .model import NonFiniteError

    remaining = args.steps - model.progress["steps"]
    if remaining <= 0:
        print(f"{args.checkpoint} is at step {model.progress['steps']} already (--steps "
              f"{args.steps}): nothing to train")
    progress = _Progress(max(remaining, 0), args.every)
    losses, curve = [], {}

    def callback(info):
        losses.append(info["loss"])
        progress.update(info, len(losses))
        if args.plot and progress.due(info["step"], len(losses)):
            try:
                curve[info["step"]] = _evaluate(model, *corpus.curve, args.window)
            except FloatingPointError:          # reported by the evaluation at the end,
                curve[info["step"]] = math.nan  # once the checkpoint is saved

    try:
        if remaining > 0:
            x, y = corpus.train
            model.fit(x, y, window=args.window, epochs=10**9, steps=remaining,
                      clip_norm=args.clip, on_nonfinite=args.on_nonfinite, callback=callback)
    except (KeyboardInterrupt, NonFiniteError):
        progress.close()
        model.save(args.checkpoint)              # a non-finite step was not applied
        raise
    history = _History(losses, curve, progress.close())
    model.save(args.checkpoint)
    return history


def _report(args, model: RNN, corpus: _Corpus, history: _History) -> None:
    """Print the timing and the held-out loss; write --plot's figures and print --sample."""
    if history.timing:
        print(history.timing)
    vx, vy = corpus.held_out
    held_out = _evaluate(model, vx, vy, args.window)
    print(f"held-out loss {held_out:.3f} nats/char (unigram {corpus.unigram:.3f}); "
          f"checkpoint {args.checkpoint}")
    if args.plot:
        from .diagnostics import plot_training
        for written in plot_training(model, history.losses, vx[:args.window],
                                     vy[:args.window], args.checkpoint.with_suffix(""),
                                     held_out=history.curve, baseline=corpus.unigram):
            print(f"wrote {written}")
    if args.sample:
        print("\n--- sample (temperature 0.8) ---")
        print(model.sample(corpus.text[:1], args.sample, temperature=0.8, seed=args.seed))


def train(args) -> int:
    """``fastrnn train``: resume or build a character model, train it on the corpus and
    report; the exit code."""
    from ._threads import blas_threads_for
    from .model import NonFiniteError

    _check_checkpoint_target(args)
    _check_plot(args)
    model = _resumed_model(args)
    for name, default in TRAIN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    corpus = _read_corpus(args, None if model is None else model.vocabulary)
    if model is None:
        model = _new_model(args, corpus.vocabulary)
    _configure(args, model)
    _print_setup(args, model, corpus)
    with blas_threads_for(model, args.batch):
        try:
            history = _fit(args, model, corpus)
        except KeyboardInterrupt:
            print(f"\ninterrupted at step {model.progress['steps']}: checkpoint saved to "
                  f"{args.checkpoint}; --resume continues from there")
            return 130
        except NonFiniteError as exc:
            print(f"stopped: training step {exc.step}: {exc.reason}; the step was not "
                  f"applied (lower --lr, set --clip, or pass --on-nonfinite skip); "
                  f"checkpoint of step {model.progress['steps']} saved to "
                  f"{args.checkpoint}", file=sys.stderr)
            return 1
        _report(args, model, corpus, history)
    return 0


def sample(args) -> int:
    from .model import RNN

    model = RNN.load(args.checkpoint)
    print(model.sample(args.prefix, args.n, temperature=args.temperature, seed=args.seed))
    return 0


def bench(args) -> int:
    from . import bench
    if args.concurrent:
        bench.concurrent(args.concurrent)
    else:
        bench.run(sizes=args.sizes, stream=not args.no_stream, gated=args.gated)
    return 0


def info(args) -> int:
    import numba
    import numpy as np
    import threadpoolctl

    from . import __version__, _config, available_backends, backends
    print(f"fastrnn {__version__}")
    print(f"backends: {available_backends()} (auto: {backends.resolve()})")
    print(f"numpy {np.__version__}, numba {numba.__version__}, "
          f"numba threads {numba.config.NUMBA_NUM_THREADS}")
    for pool in threadpoolctl.threadpool_info():
        print(f"{pool['user_api']}: {pool['internal_api']} {pool.get('version')}, "
              f"{pool['num_threads']} threads ({Path(pool['filepath']).name})")
    print(f"kernel cache: {_config.kernel_cache_dir() or 'off'}")
    return 0


def _parsed(parse, text: str, expected: str, valid):
    """parse(text) when that is a valid value, else argparse's error with ``expected``
    (argparse's own would name the parsing function)."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _parsed(int, text, "a positive int", lambda value: value >= 1)


def _non_negative_int(text: str) -> int:
    return _parsed(int, text, "a non-negative int", lambda value: value >= 0)


def _positive_float(text: str) -> float:
    return _parsed(float, text, "a positive number",
                   lambda value: value > 0 and math.isfinite(value))


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``prog`` None takes the program's name from sys.argv[0]
    (``fastrnn`` for the console script)."""
    from . import optim
    from .params import CELLS

    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a character language model")
    p.add_argument("--text", type=Path,
                   help="a UTF-8 text file to train on (default: the Python standard "
                        "library's sources)")
    p.add_argument("--chars", type=_positive_int, default=1_000_000,
                   help="characters of the default corpus to read (default %(default)s)")
    resumed = "; with --resume, the checkpoint's"
    p.add_argument("--hidden", type=_positive_int,
                   help=f"hidden size H (default {TRAIN_DEFAULTS['hidden']}{resumed})")
    p.add_argument("--cell", choices=CELLS,
                   help=f"recurrent cell (default {TRAIN_DEFAULTS['cell']}{resumed})")
    p.add_argument("--layers", type=_positive_int,
                   help=f"stacked layers (default {TRAIN_DEFAULTS['layers']}{resumed})")
    p.add_argument("--window", type=_positive_int, default=50,
                   help="truncated BPTT window, in characters (default %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=32,
                   help="parallel streams the text is cut into (default %(default)s)")
    p.add_argument("--steps", type=_positive_int, default=2000,
                   help="training steps in all (default %(default)s; with --resume, the "
                        "checkpoint's steps count towards them)")
    p.add_argument("--optimizer", choices=tuple(optim.OPTIMIZERS),
                   help=f"optimiser (default {TRAIN_DEFAULTS['optimizer']}{resumed})")
    p.add_argument("--lr", type=_positive_float,
                   help=f"learning rate (default {TRAIN_DEFAULTS['lr']}{resumed})")
    p.add_argument("--cosine", action="store_true", default=None,
                   help="cosine learning-rate decay to lr/10 over --steps (default: off; "
                        "with --resume, the checkpoint's)")
    p.add_argument("--clip", type=_positive_float, default=5.0,
                   help="clip the gradient's global norm to this (default %(default)s)")
    p.add_argument("--on-nonfinite", choices=("raise", "skip"), default="raise",
                   help="a step whose loss or gradient is not finite is never applied: "
                        "raise stops training and saves the model of the step before, "
                        "skip skips the step and counts it (default %(default)s)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help=f"floating-point type of the parameters and the computation "
                        f"(default {TRAIN_DEFAULTS['dtype']}{resumed})")
    p.add_argument("--checkpoint", type=Path, default=Path("fastrnn-char.npz"),
                   help="the model file to write (default %(default)s); an existing one "
                        "needs --resume or --force")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue training --checkpoint (a new model if it does not "
                               "exist yet)")
    existing.add_argument("--force", action="store_true",
                          help="replace an existing --checkpoint with a new model")
    p.add_argument("--plot", action="store_true",
                   help="write the loss curves (training, held-out, unigram baseline) and "
                        "the gradient norms through time as PNGs beside --checkpoint")
    p.add_argument("--sample", type=_non_negative_int, default=400,
                   help="characters to sample after training (default %(default)s)")
    p.add_argument("--every", type=_positive_int, default=200,
                   help="steps between progress lines and points of --plot's held-out "
                        "curve (default %(default)s)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of a new model's weights and of the sample (default "
                        "%(default)s)")
    p.add_argument("--backend", help=f"'auto' or a backend that `info` lists (default "
                                     f"{TRAIN_DEFAULTS['backend']}{resumed})")
    p.set_defaults(run=train)

    p = commands.add_parser("sample", help="generate text from a checkpoint")
    p.add_argument("--checkpoint", type=Path, default=Path("fastrnn-char.npz"),
                   help="a character model that train wrote (default %(default)s)")
    p.add_argument("--prefix", default="def ",
                   help="the text to start from, printed before the sample (default "
                        "%(default)r)")
    p.add_argument("-n", type=_non_negative_int, default=500,
                   help="characters to generate after the prefix (default %(default)s)")
    p.add_argument("--temperature", type=_positive_float, default=0.8,
                   help="divides the logits: below 1 more likely characters, above 1 more "
                        "varied ones (default %(default)s)")
    p.add_argument("--seed", type=_non_negative_int,
                   help="seed of the sampling (default: a new sample each run)")
    p.set_defaults(run=sample)

    p = commands.add_parser("bench", help="compare backends and PyTorch, one process each")
    p.add_argument("--sizes", nargs="*", default=["S", "M", "L"], choices=["S", "M", "L"],
                   help="vanilla sizes (none: skip them; default S M L)")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming step")
    p.add_argument("--gated", action="store_true",
                   help="also LSTM and GRU against PyTorch's nn.LSTM and nn.GRU")
    p.add_argument("--concurrent", type=_positive_int, metavar="STEPS",
                   help="instead: STEPS training steps alone, then two such trainings at "
                        "once, and the slowdown")
    p.set_defaults(run=bench)

    p = commands.add_parser("info", help="version, backends, threads, Numba cache")
    p.set_defaults(run=info)
    return parser


def main(argv=None, *, prog: str | None = None) -> int:
    """Run the command line (``argv``: sys.argv[1:] when None) and return its exit code:
    0; 2 for bad input; 1 for a failure while running, or stdout closed by its reader;
    130 for Ctrl-C."""
    try:
        try:
            return _main(argv, prog)
        finally:
            sys.stdout.flush()          # a closed pipe raises here, not at the exit
    except BrokenPipeError:
        # The reader left (`fastrnn info | head`): stop quietly. Python flushes stdout
        # once more at the exit, so it is pointed at devnull first, as the signal
        # module's documentation recommends (its note on SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:           # in a command, or while importing NumPy or Numba
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv, prog) -> int:
    args = _parser(prog).parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except (FloatingPointError, OSError) as exc:    # an overflowing loss, a failed save
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
