"""Per-token records of a scored sequence (`charlm score --tokens`): TSV or JSON lines.

TSV columns, one token a line: line, pos, token, logprob, rank, unk, then with alternatives
K pairs alt_i, p_i. `line` numbers the input lines from 1 (with --file, the document's lines),
`pos` the token within its line from 1; `logprob` is the natural log of the token's
probability, `rank` its place among the whole vocabulary (1 = the model's first choice) and
`unk` 1 when the token was not in the vocabulary. In the token columns the end of a line is
`</s>`, an out-of-vocabulary alternative `<unk>`, and a tab or backslash in a token `\\t`, `\\\\`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from charlm.views.probe import Predictions
from charlm.data.tokenizer import Tokenizer, normalize

TSV_EOS, TSV_UNK = "</s>", "<unk>"


@dataclass(frozen=True)
class TokenRecord:
    pos: int  # 1-based within its line
    text: str  # the token as it appeared in the input ("\n" for the end of a line)
    logprob: float
    rank: int
    unk: bool
    alternatives: list[tuple[int, float]]  # (token id, probability), most likely first


def surface_pieces(tokenizer: Tokenizer, text: str, ids: np.ndarray, *, as_line: bool) -> list[str]:
    """The input text of each target ids[1:] (from score.sequence_ids): a character or a
    word as written, so an unknown one shows what it was; "\\n" for each EOS."""
    text = normalize(text)
    if as_line and text.endswith("\n"):
        text = text[:-1]
    if tokenizer.level == "char":
        pieces = list(text)
    else:
        lines = text.split("\n")
        pieces = []
        for i, line in enumerate(lines):
            pieces.extend(line.split())
            if i < len(lines) - 1:
                pieces.append("\n")
    if as_line or not text.endswith("\n"):
        pieces.append("\n")
    if len(pieces) != len(ids) - 1:  # e.g. a literal <eos> word read as a line break
        pieces = [tokenizer.token_text(i) for i in ids[1:]]
    return pieces


def token_lines(tokenizer: Tokenizer, preds: Predictions, pieces: list[str], *,
                first_line: int, split_lines: bool, alternatives: int) -> Iterator[tuple[int, list[TokenRecord]]]:
    """(line number, its records): the whole sequence as line first_line, or (split_lines)
    one group per line of a document, each ending with its EOS."""
    line, group = first_line, []
    for t, piece in enumerate(pieces):
        alts = [(int(i), math.exp(lp)) for i, lp in
                zip(preds.top_ids[t, :alternatives], preds.top_logprob[t, :alternatives])]
        group.append(TokenRecord(len(group) + 1, piece, float(preds.logprob[t]), int(preds.rank[t]),
                                 int(preds.targets[t]) == tokenizer.unk_id, alts))
        if split_lines and int(preds.targets[t]) == tokenizer.eos_id:
            yield line, group
            line, group = line + 1, []
    if group:
        yield line, group


def tsv_rows(tokenizer: Tokenizer, line: int, records: list[TokenRecord]) -> Iterator[str]:
    for r in records:
        token = TSV_EOS if r.text == "\n" else _escape(r.text)
        fields = [str(line), str(r.pos), token, f"{r.logprob:.6f}", str(r.rank), str(int(r.unk))]
        for i, p in r.alternatives:
            fields += [_tsv_vocab_token(tokenizer, i), f"{p:.6g}"]
        yield "\t".join(fields)


def json_row(tokenizer: Tokenizer, line: int, records: list[TokenRecord]) -> str:
    """One object for one line: its text, total logprob and a `tokens` array."""
    text_pieces = [r.text for r in records if r.text != "\n"]
    sep = "" if tokenizer.level == "char" else " "
    tokens = []
    for r in records:
        d = {"pos": r.pos, "token": r.text, "logprob": r.logprob, "rank": r.rank, "unk": r.unk}
        if r.alternatives:
            d["alternatives"] = [{"token": tokenizer.token_text(i), "p": p} for i, p in r.alternatives]
        tokens.append(d)
    row = {"line": line, "text": sep.join(text_pieces), "logprob": sum(r.logprob for r in records),
           "tokens": tokens}
    return json.dumps(row, ensure_ascii=False)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _tsv_vocab_token(tokenizer: Tokenizer, id: int) -> str:
    if id == tokenizer.eos_id:
        return TSV_EOS
    if id == tokenizer.unk_id:
        return TSV_UNK
    return _escape(tokenizer.token_text(id))
