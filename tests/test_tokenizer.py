"""Tokenizer: vocabulary rules, line breaks, UNK, round trips and streaming decode."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.config import TokenizerConfig
from charlm.errors import ModelFileError, OptionError
from charlm.data.tokenizer import EOS, UNK, TokenCounts, Tokenizer, normalize

from vocabulary import build_tokenizer, count_unk

CHAR = TokenizerConfig(level="char")
WORD = TokenizerConfig(level="word")

# Text without line-break-like or BOM characters: encode -> decode must be the identity.
plain_chars = st.characters(blacklist_characters="\r\n\ufeff", blacklist_categories=("Cs",))
line_text = st.lists(st.text(plain_chars, max_size=20), max_size=6).map("\n".join)
words = st.text(st.characters(whitelist_categories=("L", "N", "P")), min_size=1, max_size=8).filter(
    lambda w: w not in (UNK, EOS) and len(w.split()) == 1 and w == w.strip()
)
word_lines = st.lists(st.lists(words, min_size=1, max_size=6).map(" ".join), max_size=6)


def streamed(tok: Tokenizer, ids) -> str:
    out, prev = [], None
    for i in ids:
        out.append(tok.decode_token(int(i), prev))
        prev = int(i)
    return "".join(out)


# ---- char level ---------------------------------------------------------------------------


@given(line_text)
def test_char_round_trip(text):
    tok = build_tokenizer(text, CHAR)
    ids = tok.encode(text)
    assert ids.dtype == np.int32
    assert tok.decode(ids) == text
    assert streamed(tok, ids) == text
    assert count_unk(ids) == 0


def test_char_vocab_is_sorted_by_code_point():
    tok = build_tokenizer("cbaé\nab", CHAR)
    assert tok.tokens == [UNK, EOS, "a", "b", "c", "é"]
    assert tok.vocab_size == 6
    assert tok.encode("abc\n").tolist() == [2, 3, 4, 1]


def test_char_is_code_points_not_bytes():
    tok = build_tokenizer("日本語 🙂", CHAR)
    assert len(tok.encode("日本🙂")) == 3
    assert tok.decode(tok.encode("日本🙂")) == "日本🙂"


def test_char_min_count_and_unseen_are_unk():
    tok = build_tokenizer("aaab", TokenizerConfig(level="char", min_count=2))
    assert tok.tokens == [UNK, EOS, "a"]
    ids = tok.encode("abz\U0010ffff")
    assert ids.tolist() == [2, 0, 0, 0]
    assert count_unk(ids) == 3
    assert tok.decode(ids) == "a\ufffd\ufffd\ufffd"


@pytest.mark.parametrize("level", ["char", "word"])
def test_line_breaks_and_bom(level):
    cfg = TokenizerConfig(level=level)
    tok = build_tokenizer("\ufeffa b\r\nc\rd\n", cfg)
    assert "\r" not in tok.tokens and "\ufeff" not in tok.tokens
    unix = tok.encode("a b\nc\nd\n")
    assert tok.encode("\ufeffa b\r\nc\rd\n").tolist() == unix.tolist()
    assert tok.encode("a b\r\nc\r\nd\r\n").tolist() == unix.tolist()
    assert unix[-1] == tok.eos_id and np.count_nonzero(unix == tok.eos_id) == 3
    assert tok.encode("a b").tolist() == tok.encode_line("a b").tolist()
    assert tok.eos_id not in tok.encode("a b\n")[:-1]


def test_no_final_eos_without_final_newline():
    tok = build_tokenizer("ab\nab", CHAR)
    assert tok.encode("ab\nab").tolist() == [2, 3, 1, 2, 3]
    assert tok.encode_line("ab").tolist() == [2, 3]
    assert tok.encode_line("ab\r\n").tolist() == [2, 3]
    assert tok.encode("\n\n").tolist() == [1, 1]


# ---- word level ---------------------------------------------------------------------------


@given(word_lines, st.booleans())
def test_word_round_trip(lines, final_newline):
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    tok = build_tokenizer(text, WORD)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert streamed(tok, ids) == text
    assert count_unk(ids) == 0


def test_word_decode_normalizes_spaces():
    tok = build_tokenizer(" the cat \n  sat\n", WORD)
    assert tok.decode(tok.encode(" the cat \n  sat\n")) == "the cat\nsat\n"
    assert streamed(tok, tok.encode("the cat\nsat")) == "the cat\nsat"


def test_decode_token_spacing():
    tok = build_tokenizer("a b\n", WORD)
    a, b = tok.encode("a b").tolist()
    assert tok.decode_token(a, None) == "a"
    assert tok.decode_token(b, a) == " b"
    assert tok.decode_token(tok.eos_id, b) == "\n"
    assert tok.decode_token(a, tok.eos_id) == "a"
    assert tok.decode_token(tok.unk_id, a) == " <unk>"
    char = build_tokenizer("ab", CHAR)
    assert char.decode_token(2, 3) == "a" and char.decode_token(0, None) == "\ufffd"


def test_literal_unk_is_the_unk_token():
    text = "the <unk> sat\nthe <unk> ran <unk>\n"
    tok = build_tokenizer(text, WORD)
    assert tok.tokens.count(UNK) == 1 and tok.tokens[0] == UNK
    ids = tok.encode(text)
    assert count_unk(ids) == 3
    assert tok.decode(ids) == text


def test_word_vocab_order_min_count_and_max_vocab():
    text = "c b a b c\nd c\ne\n"  # c:3 b:2 a:1 d:1 e:1
    assert build_tokenizer(text, WORD).tokens == [UNK, EOS, "c", "b", "a", "d", "e"]
    tok = build_tokenizer(text, TokenizerConfig(level="word", max_vocab=5))
    assert tok.tokens == [UNK, EOS, "c", "b", "a"]  # ties: first occurrence wins
    assert tok.vocab_size == 5
    assert tok.encode("e a zzz").tolist() == [0, 4, 0]
    tok = build_tokenizer(text, TokenizerConfig(level="word", min_count=2))
    assert tok.tokens == [UNK, EOS, "c", "b"]


def _word_vocab_in_a_process(text: str, hash_seed: str) -> list[str]:
    """The word vocabulary of `text` counted in a new Python process with that PYTHONHASHSEED."""
    code = ("import json, sys; from charlm.config import TokenizerConfig; "
            "from charlm.data.tokenizer import TokenCounts, Tokenizer; "
            "counts = TokenCounts('word'); counts.update(sys.stdin.read()); "
            "print(json.dumps(Tokenizer.from_counts(counts, TokenizerConfig(level='word')).tokens))")
    out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": hash_seed})
    return json.loads(out.stdout)


def test_word_vocabulary_follows_the_text_not_string_hashing():
    text = "x y z y x w\n" * 3  # x, y: 6 each; z, w: 3 each: ties go to the first seen
    assert _word_vocab_in_a_process(text, "1") == _word_vocab_in_a_process(text, "2") == [UNK, EOS, "x", "y", "z", "w"]
    assert _word_vocab_in_a_process("w z y x\n" * 3, "1") == [UNK, EOS, "w", "z", "y", "x"]


@pytest.mark.parametrize(
    "cfg",
    [TokenizerConfig(level="byte"), TokenizerConfig(min_count=0), TokenizerConfig(level="word", max_vocab=2)],
)
def test_bad_config(cfg):
    with pytest.raises(OptionError):
        build_tokenizer("a b", cfg)


# ---- counts gathered piece by piece (a corpus read in chunks) -----------------------------


def counted(pieces, cfg: TokenizerConfig) -> Tokenizer:
    counts = TokenCounts(cfg.level)
    for piece in pieces:
        counts.update(piece)
    return Tokenizer.from_counts(counts, cfg)


@given(st.lists(st.sampled_from(["a", "b", "c", "é", "日", "🙂", "\U0010ffff", "\n", " "]), max_size=60),
       st.integers(1, 7), st.integers(1, 3))
def test_char_counts_in_pieces_build_the_same_vocabulary(chars, size, min_count):
    text = "".join(chars)
    cfg = TokenizerConfig(level="char", min_count=min_count)
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert counted(pieces, cfg).tokens == build_tokenizer(text, cfg).tokens


@given(word_lines, st.integers(3, 8), st.integers(1, 2))
def test_word_counts_in_pieces_build_the_same_vocabulary(lines, max_vocab, min_count):
    text = normalize("\n".join(lines))
    cfg = TokenizerConfig(level="word", max_vocab=max_vocab, min_count=min_count)
    # Cut after every whitespace character: words never straddle two pieces.
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if ch.isspace():
            pieces.append(text[start : i + 1])
            start = i + 1
    pieces.append(text[start:])
    assert counted(pieces, cfg).tokens == build_tokenizer(text, cfg).tokens


def test_from_counts_checks_level_and_config():
    with pytest.raises(ValueError):
        Tokenizer.from_counts(TokenCounts("char"), WORD)
    with pytest.raises(OptionError):
        Tokenizer.from_counts(TokenCounts("char"), TokenizerConfig(min_count=0))
    with pytest.raises(OptionError):
        TokenCounts("byte")


# ---- storage ------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["char", "word"])
def test_dict_round_trip(level):
    text = "hello world\nhi there 日本\n"
    tok = build_tokenizer(text, TokenizerConfig(level=level))
    d = json.loads(json.dumps(tok.to_dict()))
    assert set(d) == {"level", "tokens", "unk_id", "eos_id"}
    back = Tokenizer.from_dict(d)
    assert back.level == level and back.tokens == tok.tokens
    assert back.encode(text).tolist() == tok.encode(text).tolist()


@pytest.mark.parametrize(
    "d",
    [
        None,
        {"level": "char", "tokens": ["a"], "unk_id": 0, "eos_id": 1},
        {"level": "char", "tokens": [UNK, EOS, "ab"], "unk_id": 0, "eos_id": 1},
        {"level": "word", "tokens": [UNK, EOS, "a", "a"], "unk_id": 0, "eos_id": 1},
        {"level": "word", "tokens": [UNK, EOS, "a b"], "unk_id": 0, "eos_id": 1},
        {"level": "word", "tokens": [UNK, EOS, 3], "unk_id": 0, "eos_id": 1},
        {"level": "bpe", "tokens": [UNK, EOS], "unk_id": 0, "eos_id": 1},
    ],
)
def test_bad_dict(d):
    with pytest.raises(ModelFileError):
        Tokenizer.from_dict(d)


# ---- the shared corpora (skipped when absent) --------------------------------------------


@pytest.mark.parametrize("name,level", [("tinyshakespeare/input.txt", "char"), ("ptb/ptb.train.txt", "word")])
def test_shared_corpus_round_trip(shared_corpus, name, level):
    text = shared_corpus(name).read_text(encoding="utf-8")
    tok = build_tokenizer(text, TokenizerConfig(level=level))
    ids = tok.encode(text)
    if level == "word":
        assert tok.vocab_size == 10000 and count_unk(ids) > 0  # PTB: 10k words incl. <unk>, <eos>
    else:
        assert tok.decode(ids) == text
