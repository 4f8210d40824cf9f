"""Data for training: a character vocabulary, contiguous streams and truncated-BPTT windows.

Legend: N steps per stream, T window length, B streams (batch), D input size, K horizon.

A long sequence is cut into B contiguous streams laid side by side, time-major (N, B):
stream b is the b-th B-th of the sequence. Consecutive windows of T steps then continue
each stream exactly where the previous window stopped, which is what lets the final
state of one window be carried into the next (truncated BPTT).
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np


class Vocabulary:
    """The characters of a text, sorted, and the maps between them and token ids."""

    def __init__(self, chars):
        chars = "".join(chars)
        if not chars:
            raise ValueError("chars: expected at least one character, got an empty string")
        if len(set(chars)) != len(chars):
            raise ValueError("chars: expected distinct characters")
        self.chars = chars
        self._index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls(sorted(set(check_text(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and other.chars == self.chars

    def encode(self, text: str) -> np.ndarray:
        """Token ids (len(text),) int64; every character must be in the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        try:
            return np.fromiter((self._index[ch] for ch in text), dtype=np.int64,
                               count=len(text))
        except KeyError as exc:
            raise ValueError(f"text: character {exc.args[0]!r} is not in the vocabulary "
                             f"of {len(self)} characters") from None

    def decode(self, ids) -> str:
        """The text of token ids, integers in [0, len(self)) of any shape."""
        ids = np.asarray(ids).ravel()
        if ids.size == 0:
            return ""
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer token ids, got {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= len(self))]
        if bad.size:
            raise ValueError(f"ids: expected token ids in [0, {len(self)}), got {bad[0]}")
        return "".join(self.chars[i] for i in ids)

    def __repr__(self):
        return f"Vocabulary({len(self)} characters)"


def check_text(text, argument: str = "text") -> str:
    """A non-empty string that looks like text (no NUL, few control characters)."""
    if not isinstance(text, str):
        raise TypeError(f"{argument}: expected str, got {type(text).__name__}")
    if len(text) < 2:
        raise ValueError(f"{argument}: expected at least 2 characters, got {len(text)}")
    sample = text[:65536]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if "\x00" in sample or control > 0.01 * len(sample):
        raise ValueError(f"{argument}: looks binary ({control} control characters in the "
                         f"first {len(sample)}); expected text")
    return text


def read_text(path) -> str:
    """The UTF-8 text of a file, checked to be text, without a leading byte order mark."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"text: no such file: {path}")
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise ValueError(f"text: {path} looks binary (it contains NUL bytes)")
    try:
        return check_text(data.decode("utf-8").removeprefix("\ufeff"), f"text: {path}")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text: {path} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None


def stdlib_corpus(max_chars: int = 2_000_000) -> str:
    """Python source from the running interpreter's standard library: a corpus that needs
    no download. Files are taken in sorted order until ``max_chars`` are gathered,
    non-ASCII characters dropped, so the result is the same on every run."""
    max_chars = _count(max_chars, "max_chars")
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        source = source.encode("ascii", "ignore").decode("ascii")
        parts.append(source)
        total += len(source)
        if total >= max_chars:
            break
    if not parts:
        raise ValueError(f"text: no Python sources found under {root}")
    return "".join(parts)[:max_chars]


def streams(sequence: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a sequence (L, ...) into B contiguous streams, time-major (N, B, ...).

    N = L // B; the last L - N B items are dropped.
    """
    sequence = np.asarray(sequence)
    if sequence.ndim == 0:
        raise ValueError(f"sequence: expected an array (L, ...), got shape {sequence.shape}")
    batch_size = _count(batch_size, "batch_size")
    n = len(sequence) // batch_size
    if n < 2:
        raise ValueError(f"batch_size: {batch_size} streams of a sequence of "
                         f"{len(sequence)} leave fewer than 2 steps per stream")
    cut = sequence[:n * batch_size].reshape((batch_size, n) + sequence.shape[1:])
    return np.ascontiguousarray(np.swapaxes(cut, 0, 1))


def lm_windows(ids: np.ndarray, window: int):
    """(x, y) windows of a language model over streams ids (N, B): y is x shifted by one.

    Yields x, y of shape (T, B), T = window, except a shorter last window. The arguments
    are checked by the call, before the first window.
    """
    window = check_window(window)
    ids = np.asarray(ids)
    if ids.ndim == 0 or ids.shape[0] < 2:
        raise ValueError(f"ids: expected streams (N, B) of at least 2 steps, got shape "
                         f"{ids.shape}")
    return _lm_windows(ids, window)


def _lm_windows(ids: np.ndarray, window: int):
    N = ids.shape[0]
    for start in range(0, N - 1, window):
        stop = min(start + window, N - 1)
        yield ids[start:stop], ids[start + 1:stop + 1]


def series_windows(values: np.ndarray, horizon: int = 1):
    """Inputs and targets for predicting the next ``horizon`` values of a series.

    values (N, B) or (N, B, D) as from ``streams``; returns x (M, B, D) and y (M, B, K)
    with M = N - K, y[t, b, k] = values[t + 1 + k, b, 0]: the next K values of the
    first feature.
    """
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[..., None]
    if values.ndim != 3 or values.shape[2] < 1:
        raise ValueError(f"values: expected streams (N, B) or (N, B, D) with D >= 1, got "
                         f"shape {values.shape}")
    horizon = _count(horizon, "horizon")
    M = values.shape[0] - horizon
    if M < 1:
        raise ValueError(f"horizon: {horizon} leaves no step of a series of "
                         f"{values.shape[0]}")
    y = np.stack([values[1 + k:1 + k + M, :, 0] for k in range(horizon)], axis=-1)
    return np.ascontiguousarray(values[:M]), np.ascontiguousarray(y)


def check_window(window) -> int:
    return _count(window, "window")


def _count(value, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{argument}: expected a positive int, got {value!r}")
    return int(value)
