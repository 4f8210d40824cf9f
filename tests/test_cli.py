"""The command line, run in-process through fastrnn.cli.main."""
import builtins
import json
import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

import fastrnn.model
from fastrnn import cli, data, diagnostics
from fastrnn.model import RNN

CORPUS = "def add(a, b):\n    return a + b\n\n" * 60


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    return path


def train_args(corpus, checkpoint, *extra):
    return ["train", "--text", str(corpus), "--steps", "30", "--hidden", "16",
            "--window", "10", "--batch", "4", "--checkpoint", str(checkpoint),
            "--sample", "20", "--every", "10", *extra]


def test_train_resume_and_sample(corpus, tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt)) == 0
    out = capsys.readouterr().out
    assert "unigram entropy" in out and "held-out loss" in out and "step     30" in out
    assert RNN.load(ckpt).progress["steps"] == 30
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "40")) == 0
    assert "resuming" in capsys.readouterr().out
    assert RNN.load(ckpt).progress["steps"] == 40
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "40")) == 0
    assert "held-out loss" in capsys.readouterr().out
    assert RNN.load(ckpt).progress["steps"] == 40
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--prefix", "def", "-n", "30",
                     "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("def")


def test_resume_reports_the_checkpoint_configuration(corpus, tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--cell", "gru", "--dtype", "float64",
                               "--optimizer", "sgd", "--lr", "0.05")) == 0
    capsys.readouterr()
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "35")) == 0
    out = capsys.readouterr().out
    assert "gru x 1 layer(s), H=16, window T=10, batch B=4, float64, sgd lr=0.05," in out


def test_a_resumed_run_reports_at_multiples_of_every(corpus, tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--steps", "35")) == 0
    capsys.readouterr()
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "62")) == 0
    steps = re.findall(r"^step +(\d+) ", capsys.readouterr().out, re.MULTILINE)
    assert steps == ["40", "50", "60", "62"]


def test_resume_keeps_the_checkpoints_backend(corpus, tmp_path, capsys):
    """Without --backend, a resumed run continues on the backend it was trained on, bit
    for bit; --backend chooses another one."""
    straight, resumed = tmp_path / "s.npz", tmp_path / "r.npz"
    assert cli.main(train_args(corpus, straight, "--backend", "reference")) == 0
    assert cli.main(train_args(corpus, resumed, "--backend", "reference", "--steps", "15")) == 0
    capsys.readouterr()
    assert cli.main(train_args(corpus, resumed, "--resume")) == 0
    assert "backend reference of" in capsys.readouterr().out
    model = RNN.load(resumed)
    assert model.backend == "reference"
    np.testing.assert_array_equal(model.params.data, RNN.load(straight).params.data)
    assert cli.main(train_args(corpus, resumed, "--resume", "--steps", "35", "--backend",
                               "numba")) == 0
    assert RNN.load(resumed).backend == "numba"


@pytest.mark.parametrize("option, value, message", [
    ("--hidden", "32", "--hidden: {ckpt} was trained with --hidden 16, got 32"),
    ("--cell", "lstm", "--cell: {ckpt} was trained with --cell tanh, got lstm"),
    ("--layers", "2", "--layers: {ckpt} was trained with --layers 1, got 2"),
    ("--dtype", "float64", "--dtype: {ckpt} was trained with --dtype float32, got float64"),
    ("--optimizer", "sgd", "--optimizer: {ckpt} was trained with --optimizer adam, got sgd"),
    ("--lr", "0.1", "--lr: {ckpt} was trained with --lr 0.003, got 0.1"),
    ("--cosine", None, "--cosine: {ckpt} was trained without --cosine"),
])
def test_resume_refuses_options_that_contradict_the_checkpoint(corpus, tmp_path, capsys,
                                                                option, value, message):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt)) == 0
    before = ckpt.read_bytes()
    capsys.readouterr()
    given = [option] if value is None else [option, value]
    assert cli.main(train_args(corpus, ckpt, "--resume", *given)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(ckpt=ckpt)}; a resumed model keeps "), err
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("sizes, loss", [((1, 16, 1), "mse"),
                                         ((16, 16, 16), "cross_entropy")])
def test_resume_refuses_a_model_without_vocabulary(corpus, tmp_path, capsys, sizes, loss):
    """Not a character model (the second fits the corpus's 16 characters): refused before
    training, the checkpoint left as it was."""
    ckpt = RNN(*sizes, loss=loss, seed=0).save(tmp_path / "c.npz")
    before = ckpt.read_bytes()
    assert cli.main(train_args(corpus, ckpt, "--resume")) == 2
    out, err = capsys.readouterr()
    assert err == (f"error: --checkpoint: {ckpt} is not a character model (it has no "
                   f"vocabulary); train a new --checkpoint\n")
    assert "fastrnn" not in out
    assert ckpt.read_bytes() == before


def test_resume_refuses_a_bidirectional_model(corpus, tmp_path, capsys):
    """A bidirectional character model cannot sample (its reverse direction needs the
    whole text): refused before training, not after it."""
    vocab = data.Vocabulary.from_text(CORPUS)
    ckpt = RNN.char_model(vocab, 16, bidirectional=True, seed=0).save(tmp_path / "b.npz")
    before = ckpt.read_bytes()
    assert cli.main(train_args(corpus, ckpt, "--resume")) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: --checkpoint: {ckpt} is bidirectional"), err
    assert ckpt.read_bytes() == before


def test_resume_without_a_checkpoint_says_it_starts_a_new_model(corpus, tmp_path, capsys):
    ckpt = tmp_path / "new.npz"
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "2")) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"--resume: no checkpoint at {ckpt} yet; training a new model\n")


def test_a_non_finite_stop_saves_the_last_good_model_and_names_the_options(
        corpus, tmp_path, capsys, monkeypatch):
    """The failing step was not applied: the model of the steps before is saved, as on
    Ctrl-C, and the hint names the command line's options, not fit's arguments."""
    real, calls = fastrnn.model.loss_and_grad, []

    def third_overflows(*args, reduction, **kwargs):
        calls.append(reduction)
        if len(calls) == 3:
            raise FloatingPointError("loss: the loss is inf")  # names loss, as the real one
        return real(*args, reduction=reduction, **kwargs)

    monkeypatch.setattr(fastrnn.model, "loss_and_grad", third_overflows)
    ckpt = tmp_path / "s.npz"
    assert cli.main(train_args(corpus, ckpt, "--steps", "5")) == 1
    err = capsys.readouterr().err
    assert "training step 3: loss: the loss is inf; the step was not applied" in err
    assert "--on-nonfinite skip" in err and "on_nonfinite=" not in err
    assert f"checkpoint of step 2 saved to {ckpt}" in err
    assert RNN.load(ckpt).progress["steps"] == 2


@pytest.mark.parametrize("option, value, expected", [
    ("--steps", "x", "expected a positive int, got 'x'"),
    ("--lr", "fast", "expected a positive number, got 'fast'"),
    ("--sample", "1.5", "expected a non-negative int, got '1.5'")])
def test_an_unparsable_number_is_named_without_internals(corpus, tmp_path, capsys, option,
                                                         value, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(train_args(corpus, tmp_path / "c.npz", option, value))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {expected}" in err and "_int" not in err, err


def test_a_failed_save_is_an_error_line(corpus, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RNN, "save", full)
    assert cli.main(train_args(corpus, tmp_path / "c.npz", "--steps", "2")) == 1
    assert capsys.readouterr().err == "error: [Errno 28] No space left on device\n"


def test_the_banner_shows_the_cosine_schedule(corpus, tmp_path, capsys):
    """A resumed run keeps the schedule of the first (its length included)."""
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--cosine", "--steps", "4")) == 0
    assert "lr=0.003, cosine decay to 0.0003 over 4 steps" in capsys.readouterr().out
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "6")) == 0
    assert "cosine decay to 0.0003 over 4 steps" in capsys.readouterr().out


def test_no_rate_is_reported_when_no_step_was_timed(corpus, tmp_path, capsys):
    """The first step compiles and is not timed: one step, or a resumed run with nothing
    left to train, has no characters/s to report (they were "nan characters/s")."""
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--steps", "1", "--sample", "0")) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "\nheld-out loss " in out
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "1", "--sample", "0")) == 0
    out = capsys.readouterr().out
    assert f"{ckpt} is at step 1 already (--steps 1): nothing to train\n" in out
    assert "nan" not in out and "\nheld-out loss " in out
    assert RNN.load(ckpt).progress["steps"] == 1


def test_resume_on_fewer_steps_per_stream_than_done(corpus, tmp_path, capsys):
    """A larger batch leaves streams shorter than the saved position: the epoch starts
    again from the beginning of the new streams."""
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--batch", "2", "--window", "100",
                               "--steps", "5")) == 0
    assert RNN.load(ckpt).progress["position"] == 500
    assert cli.main(train_args(corpus, ckpt, "--resume", "--batch", "32", "--window", "100",
                               "--steps", "6")) == 0
    assert "held-out loss" in capsys.readouterr().out
    assert RNN.load(ckpt).progress["steps"] == 6


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_train_gated_and_deep(corpus, tmp_path, capsys, cell):
    ckpt = tmp_path / f"{cell}.npz"
    assert cli.main(train_args(corpus, ckpt, "--cell", cell, "--layers", "2")) == 0
    out = capsys.readouterr().out
    assert f"{cell} x 2 layer(s)" in out and "held-out loss" in out
    model = RNN.load(ckpt)
    assert (model.params.cell, model.params.num_layers) == (cell, 2)
    assert isinstance(model.carry, tuple) == (cell == "lstm")
    assert cli.main(train_args(corpus, ckpt, "--resume", "--steps", "35")) == 0
    assert cli.main(["sample", "--checkpoint", str(ckpt), "-n", "10", "--seed", "1"]) == 0


def test_plot_writes_pngs(corpus, tmp_path):
    pytest.importorskip("matplotlib")
    ckpt = tmp_path / "p.npz"
    assert cli.main(train_args(corpus, ckpt, "--plot")) == 0
    for name in ("p-loss.png", "p-gradnorms.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_is_refused_before_training(corpus, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)         # as if not installed
    ckpt = tmp_path / "p.npz"
    assert cli.main(train_args(corpus, ckpt, "--plot")) == 2
    out, err = capsys.readouterr()
    assert err == "error: --plot: needs matplotlib (pip install 'fastrnn[plot]')\n"
    assert "fastrnn" not in out and not ckpt.exists()


def test_interrupt_saves_a_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "i.npz"
    original = RNN._train_step

    def interrupt_at_step_5(self, *args):
        if self.progress["steps"] == 4:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(RNN, "_train_step", interrupt_at_step_5)
    assert cli.main(train_args(corpus, ckpt)) == 130
    assert "interrupted at step 4" in capsys.readouterr().out
    assert RNN.load(ckpt).progress["steps"] == 4


def test_another_error_while_training_saves_nothing(corpus, tmp_path, monkeypatch, capsys):
    """Only Ctrl-C and a non-finite step save the model trained so far."""
    ckpt = tmp_path / "e.npz"
    original = RNN._train_step

    def fail_at_step_3(self, *args):
        if self.progress["steps"] == 2:
            raise OSError("disk on fire")
        return original(self, *args)

    monkeypatch.setattr(RNN, "_train_step", fail_at_step_3)
    assert cli.main(train_args(corpus, ckpt)) == 1
    assert capsys.readouterr().err == "error: disk on fire\n"
    assert not ckpt.exists()


@pytest.mark.parametrize("content, match", [
    (b"", "text: "),
    (bytes(range(256)) * 4, "looks binary"),
])
def test_bad_corpus_is_an_error_and_writes_nothing(tmp_path, capsys, content, match):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    ckpt = tmp_path / "never.npz"
    assert cli.main(train_args(path, ckpt)) == 2
    assert match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]


@pytest.mark.parametrize("text, batch, message", [
    ("abcdefghij" * 3, "16", "--batch: 16 streams of 2 steps or more need 33 characters to "
                             "train on, got 28 (95% of the 30 characters of {path})"),
    ("abcdefghij" * 10, "2", "--text: {path} has 100 characters, too few: its last 5% (5 "
                             "characters) are held out for evaluation in 4 streams of 2 "
                             "steps or more, which need 9"),
])
def test_a_text_too_short_names_the_option(tmp_path, capsys, text, batch, message):
    """Not a data.streams error about a batch_size the user never gave."""
    path = tmp_path / "short.txt"
    path.write_text(text)
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(path, ckpt, "--batch", batch)) == 2
    assert capsys.readouterr().err == f"error: {message.format(path=path)}\n"
    assert not ckpt.exists()


def test_a_checkpoint_that_cannot_be_written_is_refused_before_training(corpus, tmp_path,
                                                                         capsys):
    missing = tmp_path / "no" / "c.npz"
    assert cli.main(train_args(corpus, missing)) == 2
    out, err = capsys.readouterr()
    assert f"error: --checkpoint: cannot write {missing}: no such folder" in err
    assert "fastrnn" not in out                      # no banner: nothing was trained
    assert cli.main(train_args(corpus, tmp_path)) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_bad_checkpoints(corpus, tmp_path, capsys):
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "missing.npz")]) == 2
    assert "checkpoint: no such file" in capsys.readouterr().err
    (tmp_path / "corrupt.npz").write_bytes(b"garbage")
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "corrupt.npz")]) == 2
    assert "not a valid fastrnn checkpoint" in capsys.readouterr().err
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt)) == 0
    other = tmp_path / "other.txt"
    other.write_text("entirely different letters: XYZ!?" * 20)
    before = ckpt.read_bytes()
    assert cli.main(train_args(other, ckpt, "--resume")) == 2
    assert "is not in the vocabulary" in capsys.readouterr().err
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("option, value", [("--lr", "0"), ("--lr", "-1"), ("--window", "0"),
                                           ("--steps", "-5"), ("--batch", "x"),
                                           ("--sample", "-1"), ("--seed", "-1")])
def test_bad_options_name_the_option(corpus, tmp_path, capsys, option, value):
    args = train_args(corpus, tmp_path / "c.npz") + [option, value]
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()


@pytest.mark.parametrize("option, value", [("--sample", "-1"), ("--seed", "-1")])
def test_bad_options_are_refused_before_a_resumed_run(corpus, tmp_path, capsys, option,
                                                      value):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt)) == 0
    before = ckpt.read_bytes()
    with pytest.raises(SystemExit) as exc:
        cli.main(train_args(corpus, ckpt, "--resume", "--steps", "40", option, value))
    assert exc.value.code == 2
    assert f"argument {option}: expected a non-negative int, got '{value}'" in \
        capsys.readouterr().err
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("option, value", [("-n", "-5"), ("--seed", "-1"), ("-n", "x")])
def test_bad_sample_options_name_the_option(corpus, tmp_path, capsys, option, value):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt)) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["sample", "--checkpoint", str(ckpt), option, value])
    assert exc.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err


def test_train_help_says_steps_counts_the_resumed_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS training steps in all (default 2000; with --resume, the " \
           "checkpoint's steps count towards them)" in help_text


def test_info(capsys):
    from fastrnn import _config

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends:" in out
    assert f"kernel cache: {_config.kernel_cache_dir() or 'off'}\n" in out


def test_bench_concurrent_runs_the_concurrency_benchmark_alone(monkeypatch):
    from fastrnn import bench

    calls = []
    monkeypatch.setattr(bench, "concurrent", lambda steps: calls.append(("concurrent", steps)))
    monkeypatch.setattr(bench, "run", lambda **kwargs: calls.append(("run", kwargs)))
    assert cli.main(["bench", "--concurrent", "50"]) == 0
    assert cli.main(["bench", "--sizes", "S", "--no-stream"]) == 0
    assert calls == [("concurrent", 50),
                     ("run", {"sizes": ["S"], "stream": False, "gated": False})]


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_skipped_steps_are_reported_as_nan(corpus, tmp_path, capsys, monkeypatch):
    """Every step skipped (its loss overflows; the held-out evaluation, which sums, is
    left alone): the report shows a nan loss."""
    real = fastrnn.model.loss_and_grad

    def overflowing(*args, reduction, **kwargs):
        if reduction == "mean":
            raise FloatingPointError("the loss is inf")
        return real(*args, reduction=reduction, **kwargs)

    monkeypatch.setattr(fastrnn.model, "loss_and_grad", overflowing)
    ckpt = tmp_path / "s.npz"
    assert cli.main(train_args(corpus, ckpt, "--on-nonfinite", "skip", "--steps", "3",
                               "--every", "1")) == 0
    out = capsys.readouterr().out
    assert "step      1  loss nan nats/char" in out and "held-out loss" in out
    assert RNN.load(ckpt).progress == dict(steps=3, epoch=0, position=30, skipped=3)


def test_a_held_out_loss_that_overflows_is_an_error(corpus, tmp_path, capsys):
    """The first step makes the weights huge but finite, the others are skipped: the
    held-out loss overflows, which is reported as an error, the checkpoint kept."""
    ckpt = tmp_path / "s.npz"
    assert cli.main(train_args(corpus, ckpt, "--dtype", "float64", "--optimizer", "sgd",
                               "--lr", "1e308", "--on-nonfinite", "skip", "--steps", "3")) == 1
    assert capsys.readouterr().err.startswith("error: loss: the loss is inf with finite params")
    assert RNN.load(ckpt).progress["skipped"] == 2


def test_an_existing_checkpoint_is_replaced_only_with_force(corpus, tmp_path, capsys):
    """A new run on an existing --checkpoint (a 200-step run replaced a 2,000-step model)
    is refused before training, naming the file and both ways on."""
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--steps", "3")) == 0
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert cli.main(train_args(corpus, ckpt, "--steps", "2")) == 2
    out, err = capsys.readouterr()
    assert err == (f"error: --checkpoint: {ckpt} exists; pass --resume to continue training "
                   f"it, or --force to replace it with a new model\n")
    assert out == "" and ckpt.read_bytes() == before
    assert cli.main(train_args(corpus, ckpt, "--steps", "2", "--force")) == 0
    assert RNN.load(ckpt).progress["steps"] == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(train_args(corpus, ckpt, "--force", "--resume"))
    assert exc.value.code == 2
    assert "argument --resume: not allowed with argument --force" in capsys.readouterr().err


def test_an_unwritable_checkpoint_folder_is_refused_before_training(corpus, tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        ckpt = folder / "c.npz"
        assert cli.main(train_args(corpus, ckpt)) == 2
        out, err = capsys.readouterr()
        assert err == f"error: --checkpoint: cannot write {ckpt}: Permission denied in " \
                      f"{folder}\n"
        assert out == "" and os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


def test_the_usage_line_names_the_program_as_it_was_run(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fastrnn", "train", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().out.startswith("usage: fastrnn train ")
    monkeypatch.setattr(sys, "argv", [os.path.join(os.path.dirname(cli.__file__),
                                                   "__main__.py"), "--help"])
    with pytest.raises(SystemExit):
        runpy.run_module("fastrnn", run_name="__main__")
    assert capsys.readouterr().out.startswith("usage: python -m fastrnn ")


def test_every_option_has_help_that_shows_its_default():
    commands = next(action for action in cli._parser()._actions
                    if isinstance(action, cli.argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if isinstance(action, cli.argparse._HelpAction):
                continue
            option = f"{name} {action.option_strings[0]}"
            assert action.help, option
            if action.default not in (None, False):
                assert "(default %(default)" in action.help or "default " + " ".join(
                    action.default) in action.help, option


def test_a_reader_that_leaves_early_stops_the_output_quietly():
    """`fastrnn info | head`: no traceback, no "error: [Errno 32] Broken pipe"."""
    read, write = os.pipe()
    os.close(read)                                  # every write gets EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "fastrnn", "info"], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (1, "")


def test_a_ctrl_c_while_importing_is_one_line(monkeypatch, capsys):
    """The package (NumPy, Numba) is imported inside main, under its Ctrl-C handler."""
    real_import = builtins.__import__

    def interrupted(name, globals=None, *args, **kwargs):
        if globals is not None and globals.get("__name__") == "fastrnn.cli":
            raise KeyboardInterrupt
        return real_import(name, globals, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert cli.main(["info"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_the_rate_leaves_out_the_first_step_and_says_so(corpus, tmp_path, capsys):
    """The first step compiles on a first run: its time is reported on its own."""
    assert cli.main(train_args(corpus, tmp_path / "c.npz", "--steps", "3")) == 0
    out = capsys.readouterr().out
    assert re.search(r"^the first step took \d+\.\d s \(on a first run, it compiles the "
                     r"kernels\); [\d,]+ characters/s over the other 2 steps$", out, re.MULTILINE)


def test_plot_gets_the_held_out_curve_and_the_unigram_baseline(corpus, tmp_path, capsys,
                                                                monkeypatch):
    """Held-out losses at the progress points (every --every steps and the last one), of
    a resumed run too, at their step numbers."""
    pytest.importorskip("matplotlib")
    calls = []
    monkeypatch.setattr(diagnostics, "plot_training",
                        lambda *args, **kwargs: calls.append(kwargs) or [])
    ckpt = tmp_path / "p.npz"
    assert cli.main(train_args(corpus, ckpt, "--steps", "15")) == 0
    assert cli.main(train_args(corpus, ckpt, "--plot", "--resume", "--steps", "35")) == 0
    unigram = re.search(r"unigram entropy .*: (\S+) nats/char", capsys.readouterr().out)[1]
    (kwargs,) = calls
    assert sorted(kwargs["held_out"]) == [20, 30, 35]
    assert all(np.isfinite(loss) for loss in kwargs["held_out"].values())
    assert f"{kwargs['baseline']:.3f}" == unigram


def test_a_held_out_point_that_overflows_leaves_the_checkpoint_saved(corpus, tmp_path,
                                                                      capsys):
    """The weights overflow the held-out loss (see the test above): a point of --plot's
    curve does not stop training before the checkpoint is saved."""
    pytest.importorskip("matplotlib")
    ckpt = tmp_path / "s.npz"
    assert cli.main(train_args(corpus, ckpt, "--dtype", "float64", "--optimizer", "sgd",
                               "--lr", "1e308", "--on-nonfinite", "skip", "--steps", "3",
                               "--plot")) == 1
    assert capsys.readouterr().err.startswith("error: loss: the loss is ")
    assert RNN.load(ckpt).progress["steps"] == 3


def _checkpoint_with_meta(tmp_path, edit):
    """A checkpoint of a trained character model whose JSON meta ``edit`` changed."""
    vocab = data.Vocabulary.from_text(CORPUS)
    path = RNN.char_model(vocab, 16, seed=0).save(tmp_path / "c.npz")
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = edit(json.loads(arrays["meta"].tobytes()))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return path


def _huge(meta):
    meta["config"]["hidden_size"] = 10**6
    return meta


@pytest.mark.parametrize("edit", [lambda meta: [meta], _huge], ids=["list", "huge"])
def test_a_crafted_checkpoint_is_an_error_line(corpus, tmp_path, capsys, edit):
    """Meta that is valid JSON but not an object, or a hidden size of 10^6: an error
    line naming the file, for sample and for train --resume (no AttributeError or
    MemoryError traceback)."""
    ckpt = _checkpoint_with_meta(tmp_path, edit)
    before = ckpt.read_bytes()
    for argv in (["sample", "--checkpoint", str(ckpt)], train_args(corpus, ckpt, "--resume")):
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"error: checkpoint: {ckpt} ") and err.count("\n") == 1, err
        assert out == ""
    assert ckpt.read_bytes() == before


def test_a_model_too_large_to_build_is_an_error_line(corpus, tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    assert cli.main(train_args(corpus, ckpt, "--hidden", "1000000")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not ckpt.exists()


def openblas_threads():
    import threadpoolctl

    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info()
            if pool["internal_api"] == "openblas"}


def test_train_runs_small_models_with_one_blas_thread(corpus, tmp_path, monkeypatch):
    """Two trainings sharing the cores must not wait on each other's spinning BLAS
    threads: a model whose per-step products gain little from threads trains on one."""
    import threadpoolctl

    from fastrnn import _threads

    seen = []
    real_fit = cli._fit

    def fit(*args):
        seen.append(openblas_threads())
        return real_fit(*args)

    monkeypatch.setattr(cli, "_fit", fit)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if not openblas_threads() - {1}:
            pytest.skip("no OpenBLAS with more than one thread here")
        assert cli.main(train_args(corpus, tmp_path / "c.npz")) == 0
        assert seen == [{1}]
        assert openblas_threads() == {2}, "the limit outlived the command"
        monkeypatch.setattr(_threads, "ONE_BLAS_THREAD_BELOW", 1)
        assert cli.main(train_args(corpus, tmp_path / "d.npz")) == 0
        assert seen[1] == {2}
