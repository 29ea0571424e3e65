"""Text <-> token ids at char or word level. Ids 0 and 1 are always UNK and EOS (a line break)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from charlm.config import LEVELS, TokenizerConfig
from charlm.errors import ModelFileError
from charlm.validation import check_config, check_value

UNK = "<unk>"
EOS = "<eos>"
UNK_ID = 0
EOS_ID = 1
CHAR_UNK_TEXT = "\ufffd"  # what a char-level UNK prints as
BOM = "\ufeff"


def normalize(text: str) -> str:
    """Make every line break "\\n" (from \\r\\n or a lone \\r) and drop byte order marks."""
    return text.replace(BOM, "").replace("\r\n", "\n").replace("\r", "\n")


def _code_points(text: str) -> np.ndarray:
    """(len(text),) uint32 code points; surrogatepass keeps lone surrogates (from odd input)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class Tokenizer:
    """A fixed vocabulary: `tokens[id]` is the token text; built once from the training text."""

    unk_id = UNK_ID
    eos_id = EOS_ID

    def __init__(self, level: str, tokens: list[str]):
        self.level = level
        self.tokens = list(tokens)
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self._texts = [self.token_text(i) for i in range(len(self.tokens))]  # id -> printed text
        if level == "char":
            self._table = self._char_table()
        else:
            # A literal <unk> in the corpus (PTB) is UNK; a literal <eos> is a line break.
            self._index[UNK] = UNK_ID
            self._index[EOS] = EOS_ID

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def from_counts(cls, counts: TokenCounts, cfg: TokenizerConfig) -> Tokenizer:
        """Vocabulary from token counts gathered piece by piece (a corpus read in chunks):
        the same as counting the whole text at once."""
        check_config(cfg)
        if counts.level != cfg.level:
            raise ValueError(f"counts are {counts.level}-level, the config is {cfg.level}-level")
        if cfg.level == "char":
            return cls("char", [UNK, EOS] + _char_vocab(counts.chars, cfg.min_count))
        return cls("word", [UNK, EOS] + _word_vocab(counts.words, cfg.min_count, cfg.max_vocab))

    def _char_table(self) -> np.ndarray:
        """(max code point + 2,) int32: code point -> id; the last slot (and any gap) is UNK."""
        cps = [ord(t) for t in self.tokens[2:]]
        table = np.full(max(cps + [ord("\n")]) + 2, UNK_ID, dtype=np.int32)
        table[cps] = np.arange(2, len(self.tokens), dtype=np.int32)
        table[ord("\n")] = EOS_ID
        return table

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # ---- encoding -------------------------------------------------------------------------

    def encode(self, text: str) -> np.ndarray:
        """(n,) int32 ids of a whole text. Every line break is EOS; no EOS is added at the end."""
        text = normalize(text)
        if self.level == "char":
            cps = _code_points(text)
            # Code points past the table's end land on its last slot, which is UNK.
            return self._table[np.minimum(cps, len(self._table) - 1)]
        return self._encode_words(text)

    def _encode_words(self, text: str) -> np.ndarray:
        get = self._index.get
        ids: list[int] = []
        lines = text.split("\n")
        for line in lines[:-1]:
            ids.extend([get(w, UNK_ID) for w in line.split()])
            ids.append(EOS_ID)
        ids.extend([get(w, UNK_ID) for w in lines[-1].split()])
        return np.array(ids, dtype=np.int32)

    def encode_line(self, line: str) -> np.ndarray:
        """(n,) int32 ids of one line without EOS; one trailing line break, if any, is dropped."""
        line = normalize(line)
        return self.encode(line[:-1] if line.endswith("\n") else line)

    # ---- decoding -------------------------------------------------------------------------

    def token_text(self, id: int) -> str:
        """The bare text of one token: EOS is "\\n"; UNK is U+FFFD (char) or "<unk>" (word)."""
        id = int(id)
        if id == EOS_ID:
            return "\n"
        if id == UNK_ID:
            return CHAR_UNK_TEXT if self.level == "char" else UNK
        return self.tokens[id]

    def decode_token(self, id: int, prev_id: int | None) -> str:
        """Text to print for `id` when streaming, given the token printed before (None: first).

        Concatenating decode_token over a sequence equals decode(sequence). At word level a
        space goes before a word unless it starts the text or follows a line break.
        """
        text = self.token_text(id)
        if self.level == "word" and int(id) != EOS_ID:
            if prev_id is not None and int(prev_id) != EOS_ID:
                return " " + text
        return text

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids; equals "".join(decode_token(i, prev) ...)."""
        texts = self._texts
        ids = np.asarray(ids, dtype=np.int64).reshape(-1).tolist()
        if self.level == "char":
            return "".join([texts[i] for i in ids])
        # Word level: each line's words joined by single spaces, lines joined by "\n".
        lines: list[list[str]] = [[]]
        for i in ids:
            if i == EOS_ID:
                lines.append([])
            else:
                lines[-1].append(texts[i])
        return "\n".join([" ".join(words) for words in lines])

    # ---- storage (JSON in the model file header) ------------------------------------------

    def to_dict(self) -> dict:
        return {"level": self.level, "tokens": list(self.tokens), "unk_id": UNK_ID, "eos_id": EOS_ID}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        problem = _dict_problem(d)
        if problem:
            raise ModelFileError(
                f"the model file's tokenizer is invalid ({problem}): the file is corrupt or from "
                "another program; retrain the model or pass the right file with -m/--model"
            )
        return cls(d["level"], d["tokens"])


class TokenCounts:
    """Token counts of a text fed in pieces: update() each normalized piece in order.

    Pieces must be cut between tokens: anywhere at char level, at a whitespace character at
    word level (data.Corpus.pieces cuts them so). Word order of first occurrence is kept for
    the vocabulary's tie-break, as if the whole text had been counted at once.
    """

    _BLOCK = 1 << 20  # code points per bincount call (bounds its int64 temporary)

    def __init__(self, level: str):
        check_value("level", level)
        self.level = level
        self.chars = np.zeros(128, dtype=np.int64)  # char level: count by code point
        self.words: Counter = Counter()  # word level

    def update(self, text: str) -> None:
        if self.level == "word":
            self.words.update(text.split())
            return
        cps = _code_points(text)
        for start in range(0, len(cps), self._BLOCK):
            counts = np.bincount(cps[start : start + self._BLOCK])
            if len(counts) > len(self.chars):
                self.chars = np.concatenate([self.chars, np.zeros(len(counts) - len(self.chars), np.int64)])
            self.chars[: len(counts)] += counts


def _char_vocab(counts: np.ndarray, min_count: int) -> list[str]:
    """Characters seen at least min_count times, sorted by code point ("\\n" is EOS, not a char)."""
    keep = counts >= min_count
    keep[ord("\n")] = False
    return [chr(c) for c in np.flatnonzero(keep).tolist()]


def _word_vocab(counts: Counter, min_count: int, max_vocab: int) -> list[str]:
    """The max_vocab - 2 most frequent words seen at least min_count times.

    Order: by count, descending; ties by first occurrence (Counter keeps insertion order and
    most_common sorts stably). Literal <unk> / <eos> are the special tokens, not words.
    """
    # most_common is stable, so dropping the two specials from the top max_vocab equals
    # taking the top max_vocab - 2 of the others (without copying a big Counter).
    frequent = [(w, c) for w, c in counts.most_common(max_vocab) if w not in (UNK, EOS)]
    return [w for w, c in frequent[: max_vocab - 2] if c >= min_count]


def _dict_problem(d) -> str | None:
    """Why `d` is not a valid Tokenizer.to_dict() result, or None."""
    if not isinstance(d, dict):
        return "not an object"
    if d.get("level") not in LEVELS:
        return f"unknown level {d.get('level')!r}"
    tokens = d.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return "tokens is not a list of strings"
    if tokens[:2] != [UNK, EOS] or d.get("unk_id") != UNK_ID or d.get("eos_id") != EOS_ID:
        return "ids 0 and 1 are not <unk> and <eos>"
    if len(set(tokens)) != len(tokens):
        return "repeated tokens"
    if d["level"] == "char" and not all(len(t) == 1 and t != "\n" for t in tokens[2:]):
        return "a char-level token is not one character"
    if d["level"] == "word" and not all(t and len(t.split()) == 1 and t == t.strip() for t in tokens[2:]):
        return "a word-level token is empty or contains whitespace"
    return None
