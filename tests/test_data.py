"""Vocabulary, streams and windows."""
import numpy as np
import pytest

from fastrnn import data


def test_vocabulary_round_trip():
    vocab = data.Vocabulary.from_text("hello world")
    assert vocab.chars == " dehlorw" and len(vocab) == 8
    assert vocab.decode(vocab.encode("world hello")) == "world hello"


@pytest.mark.parametrize("text, match", [
    ("", r"^text: expected at least 2"),
    ("a\x00b" * 10, r"^text: looks binary"),
    ("".join(chr(i) for i in range(1, 32)) * 4, r"^text: looks binary"),
])
def test_bad_text(text, match):
    with pytest.raises(ValueError, match=match):
        data.Vocabulary.from_text(text)


def test_read_text_rejects_binary_and_missing_files(tmp_path):
    (tmp_path / "bin").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match=r"^text: .* looks binary"):
        data.read_text(tmp_path / "bin")
    (tmp_path / "latin").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"^text: .* is not UTF-8"):
        data.read_text(tmp_path / "latin")
    with pytest.raises(ValueError, match=r"^text: no such file"):
        data.read_text(tmp_path / "missing.txt")


def test_streams_are_contiguous_and_time_major():
    s = data.streams(np.arange(10), 3)
    np.testing.assert_array_equal(s, [[0, 3, 6], [1, 4, 7], [2, 5, 8]])
    with pytest.raises(ValueError, match=r"^batch_size: "):
        data.streams(np.arange(10), 6)


def test_lm_windows_shift_by_one():
    ids = data.streams(np.arange(40), 2)
    pairs = list(data.lm_windows(ids, 6))
    assert [x.shape[0] for x, _ in pairs] == [6, 6, 6, 1]
    for x, y in pairs:
        np.testing.assert_array_equal(y, x + 1)


def test_series_windows_predict_the_next_values():
    values = data.streams(np.arange(30.0), 3)      # (10, 3)
    x, y = data.series_windows(values, horizon=2)
    assert x.shape == (8, 3, 1) and y.shape == (8, 3, 2)
    np.testing.assert_array_equal(y[..., 0], x[..., 0] + 1)
    np.testing.assert_array_equal(y[..., 1], x[..., 0] + 2)


def test_stdlib_corpus_is_deterministic_ascii():
    a = data.stdlib_corpus(50_000)
    assert a == data.stdlib_corpus(50_000) and len(a) == 50_000 and a.isascii()


def test_vocabulary_of_unicode_text():
    vocab = data.Vocabulary.from_text("héllo wörld 🙂\n")
    assert vocab.decode(vocab.encode("🙂 öh")) == "🙂 öh"
    with pytest.raises(ValueError, match=r"^text: character 'x' is not in the vocabulary"):
        vocab.encode("höx")


@pytest.mark.parametrize("ids, error, match", [
    ([-1], ValueError, r"^ids: expected token ids in \[0, 8\), got -1"),
    ([0, 8], ValueError, r"^ids: expected token ids in \[0, 8\), got 8"),
    (np.array([1.0, 2.0]), TypeError, r"^ids: expected integer token ids, got float64"),
    (np.array([True]), TypeError, r"^ids: expected integer token ids, got bool"),
    ("12", TypeError, r"^ids: expected integer token ids, got <U2"),
])
def test_decode_refuses_what_is_not_a_token_id(ids, error, match):
    vocab = data.Vocabulary.from_text("hello world")
    with pytest.raises(error, match=match):
        vocab.decode(ids)


def test_decode_of_empty_and_unsigned_ids():
    vocab = data.Vocabulary.from_text("hello world")
    assert vocab.decode([]) == "" and vocab.decode(np.zeros(0, dtype=np.int64)) == ""
    assert vocab.decode(np.array([[3], [7]], dtype=np.uint8)) == "hw"


@pytest.mark.parametrize("text", [b"hello", None, ["h", "e"]])
def test_encode_refuses_what_is_not_str(text):
    vocab = data.Vocabulary.from_text("hello world")
    with pytest.raises(TypeError, match=r"^text: expected str, got "):
        vocab.encode(text)


@pytest.mark.parametrize("max_chars", [0, -5, 1e4, True])
def test_stdlib_corpus_refuses_a_bad_size(max_chars):
    with pytest.raises(ValueError, match=r"^max_chars: expected a positive int, got "):
        data.stdlib_corpus(max_chars)


@pytest.mark.parametrize("sequence", [np.float64(3.0), "hello world"])
def test_streams_refuse_a_sequence_without_a_time_axis(sequence):
    with pytest.raises(ValueError, match=r"^sequence: expected an array \(L, \.\.\.\), got "
                                         r"shape \(\)"):
        data.streams(sequence, 2)


@pytest.mark.parametrize("batch_size", [True, 0, 2.0])
def test_streams_refuse_a_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=r"^batch_size: expected a positive int, got "):
        data.streams(np.arange(10), batch_size)


def test_lm_windows_check_their_arguments_when_called():
    ids = data.streams(np.arange(40), 2)
    with pytest.raises(ValueError, match=r"^window: expected a positive int, got 0"):
        data.lm_windows(ids, 0)
    with pytest.raises(ValueError, match=r"^ids: expected streams \(N, B\) of at least 2 "
                                         r"steps, got shape \(1, 2\)"):
        data.lm_windows(ids[:1], 5)
    pairs = list(data.lm_windows(ids.tolist(), 19))
    assert [x.shape for x, _ in pairs] == [(19, 2)]


@pytest.mark.parametrize("values", [np.arange(10.0), np.zeros((10, 2, 3, 1)),
                                    np.zeros((10, 2, 0))])
def test_series_windows_refuse_values_that_are_not_streams(values):
    with pytest.raises(ValueError, match=r"^values: expected streams \(N, B\) or \(N, B, D\) "
                                         r"with D >= 1, got shape "):
        data.series_windows(values)


def test_series_windows_refuse_a_bool_horizon():
    with pytest.raises(ValueError, match=r"^horizon: expected a positive int, got True"):
        data.series_windows(np.zeros((10, 2)), True)


def test_read_text_drops_a_byte_order_mark(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffhello wörld".encode("utf-8"))
    assert data.read_text(tmp_path / "bom.txt") == "hello wörld"
    (tmp_path / "bad.txt").write_bytes("\ufeffhello ".encode("utf-8") + b"\xff")
    with pytest.raises(ValueError, match=r"^text: .* is not UTF-8 text \(invalid start byte "
                                         r"at byte 9\)"):
        data.read_text(tmp_path / "bad.txt")
