"""`charlm score --tokens` (records per token) and `--color` (text shaded by surprisal)."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console
from typer.testing import CliRunner

from charlm.api import load
from charlm.cli.app import app
from charlm.views.heatmap import legend, scale_bits, shaded_text, surprisal_style
from charlm.views.probe import predict
from charlm.score import sequence_ids
from charlm.views.token_records import surface_pieces

from conftest import TINY

LINES = ["The quick brown fox.", "rain falls\ton green hills", "Unseen \u03a9 here"]


def run(args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def plain_scores(model, lines):
    out = ok(run(["score", "-m", model, "-q", *lines])).stdout
    return [float(row.split("\t")[0]) for row in out.splitlines()]


def tsv(stdout: str) -> list[list[str]]:
    return [row.split("\t") for row in stdout.splitlines()]


def test_token_logprobs_add_up_to_each_lines_score(tiny_model):
    rows = tsv(ok(run(["score", "-m", tiny_model, "--tokens", "-q", *LINES])).stdout)
    assert all(len(r) == 6 for r in rows)  # line, pos, token, logprob, rank, unk
    for number, (line, total) in enumerate(zip(LINES, plain_scores(tiny_model, LINES)), 1):
        mine = [r for r in rows if r[0] == str(number)]
        assert [int(r[1]) for r in mine] == list(range(1, len(line) + 2))  # every char and EOS
        assert mine[-1][2] == "</s>"
        assert abs(sum(float(r[3]) for r in mine) - total) < 1e-5
    # the tab is escaped (the row still has 6 fields) and the unseen character is flagged
    second = [r for r in rows if r[0] == "2"]
    assert [r[2] for r in second].count("\\t") == 1
    vocab = set(load(str(tiny_model))[1].tokens)
    unseen = {r[2] for r in rows if r[5] == "1"}
    assert "\u03a9" in unseen and "\\t" in unseen  # shown as written, flagged
    assert unseen == {r[2] for r in rows if r[2] not in vocab and r[2] not in ("</s>", "\\t")} | {"\\t"}


def test_token_sums_match_lines_scored_together_by_the_compiled_path(tiny_model, corpus_text):
    lines = [line for line in corpus_text.splitlines() if line][:30]  # a batch of ~1,000 tokens
    stdin = "\n".join(lines) + "\n"
    rows = tsv(ok(run(["score", "-m", tiny_model, "--tokens", "-q"], input=stdin)).stdout)
    totals = [float(r.split("\t")[0]) for r in ok(run(["score", "-m", tiny_model, "-q"], input=stdin)).stdout.splitlines()]
    assert len(totals) == len(lines) and sum(len(line) + 1 for line in lines) > 256
    for number, total in enumerate(totals, 1):
        assert abs(sum(float(r[3]) for r in rows if r[0] == str(number)) - total) < 1e-5


def test_alternatives_are_the_most_likely_tokens_with_the_true_one_at_its_rank(tiny_model):
    rows = tsv(ok(run(["score", "-m", tiny_model, "--tokens", "--alternatives", "3", "-q", LINES[0]])).stdout)
    assert all(len(r) == 6 + 2 * 3 for r in rows)
    for r in rows:
        probs = [float(p) for p in r[7::2]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
        rank, token = int(r[4]), r[2]
        assert rank >= 1
        if rank <= 3:
            assert r[6 + 2 * (rank - 1)] == token
            assert probs[rank - 1] == pytest.approx(math.exp(float(r[3])), rel=1e-4)
        else:
            assert math.exp(float(r[3])) < probs[-1]


def test_json_has_one_object_per_line_with_a_tokens_array(tiny_model):
    stdout = ok(run(["score", "-m", tiny_model, "--tokens", "--json", "--alternatives", "2", "-q"],
                    input="\n".join(LINES[:2]) + "\n")).stdout
    objects = [json.loads(row) for row in stdout.splitlines()]
    assert [o["line"] for o in objects] == [1, 2]
    for o, line, total in zip(objects, LINES, plain_scores(tiny_model, LINES[:2])):
        assert o["text"] == line
        assert len(o["tokens"]) == len(line) + 1
        assert o["tokens"][-1]["token"] == "\n"
        assert abs(sum(t["logprob"] for t in o["tokens"]) - total) < 1e-5
        assert abs(o["logprob"] - total) < 1e-5
        assert all(len(t["alternatives"]) == 2 for t in o["tokens"])
        assert all((t["rank"] == 1) == (t["alternatives"][0]["token"] == t["token"]) for t in o["tokens"])


def test_a_document_is_numbered_by_its_own_lines(tiny_model, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Rain falls.\nThe fox\n\njumps!", encoding="utf-8")
    rows = tsv(ok(run(["score", "-m", tiny_model, "--tokens", "--file", doc, "-q"])).stdout)
    assert [int(r[0]) for r in rows if r[2] == "</s>"] == [1, 2, 3, 4]
    assert [r[1] for r in rows if r[0] == "3"] == ["1"]  # the blank line: its EOS only
    total = float(ok(run(["score", "-m", tiny_model, "--file", doc, "-q"])).stdout.split("\t")[0])
    assert abs(sum(float(r[3]) for r in rows) - total) < 1e-5


@pytest.fixture(scope="module")
def word_model(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("word") / "word.safetensors"
    ok(run(["train", corpus_file, "-o", out, *TINY, "--level", "word", "--steps", "5"]))
    return out


def test_word_level_records_show_unknown_words_as_written(word_model):
    line = "the quick zyzzyva fox"
    rows = tsv(ok(run(["score", "-m", word_model, "--tokens", "-q", line])).stdout)
    assert [r[2] for r in rows] == ["the", "quick", "zyzzyva", "fox", "</s>"]
    assert [r[5] for r in rows] == ["0", "0", "1", "0", "0"]
    assert abs(sum(float(r[3]) for r in rows) - plain_scores(word_model, [line])[0]) < 1e-5
    assert ok(run(["score", "-m", word_model, "--color", "-q", "the  quick\tfox"])).stdout == "the quick fox\n"


def test_color_prints_plain_text_when_stdout_is_not_a_terminal(tiny_model):
    result = ok(run(["score", "-m", tiny_model, "--color", *LINES[:2]]))
    assert result.stdout == LINES[0] + "\n" + LINES[1] + "\n"
    assert "\x1b" not in result.stdout
    assert "2 lines" in result.stderr  # the usual summary


def test_color_on_a_terminal_shades_tokens_and_shows_the_legend(tiny_model):
    result = ok(run(["score", "-m", tiny_model, "--color", LINES[0]], env={"FORCE_COLOR": "1"}))
    assert "\x1b[" in result.stdout
    assert "surprisal, bits" in result.stderr


def test_the_shade_follows_each_tokens_surprisal(tiny_model):
    model, tokenizer, _ = load(str(tiny_model))
    ids = sequence_ids(tokenizer, LINES[0])
    preds = predict(model, ids)
    pieces = surface_pieces(tokenizer, LINES[0], ids, as_line=True)
    top = scale_bits(tokenizer)
    text = shaded_text(tokenizer, preds, pieces, top)
    assert text.plain == LINES[0] + "\u21b5"
    styles = [str(span.style) for span in text.spans]
    bits = [-lp / math.log(2) for lp in preds.logprob]
    assert styles == [surprisal_style(b, top) for b in bits]
    # darker (lower sum of RGB) for more surprise; saturated past the top of the scale
    darkness = [-sum(int(surprisal_style(b, 8.0).split("#")[1][i:i + 2], 16) for i in (0, 2, 4))
                for b in (0, 2, 4, 6, 8, 20)]
    assert darkness == sorted(darkness) and darkness[-1] == darkness[-2]
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="truecolor").print(legend(top))
    assert "48;2;" in out.getvalue()  # truecolor backgrounds


@pytest.mark.parametrize("args,words", [
    (["--color", "--json"], ["--color"]), (["--color", "--tokens"], ["--color"]),
    (["--tokens", "--alternatives", "-1"], ["--alternatives"]),
])
def test_conflicting_or_bad_options_are_usage_errors(tiny_model, args, words):
    result = run(["score", "-m", tiny_model, *args, "x"])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words)
