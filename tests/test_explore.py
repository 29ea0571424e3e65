"""`charlm explore`: the page's numbers against the model's own, its size, that it loads
nothing, and (in headless Chromium, when installed) what a user sees and does."""

from __future__ import annotations

import base64
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm.api import load
from charlm.cli.app import app
from charlm.views.explore import explorer_data, render_page
from charlm.views.probe import predict
from charlm.score import score_text, sequence_ids

TEXT = 'The "quick" fox; rain falls on green hills.'
DOCUMENT = "Rain falls on the sea.\nThe \"lazy\" dog, 42 times?\n\nYes!\n"
SMALL_LSTM = ["--hidden", "12", "--embed", "8", "--layers", "2", "--batch", "4", "--seq-len", "16"]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def run(args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def two_layer_model(tmp_path_factory, corpus_file) -> Path:
    out = tmp_path_factory.mktemp("explore") / "lstm2.safetensors"
    result = run(["train", corpus_file, "-o", out, *SMALL_LSTM, "--steps", "20", "--seed", "2"])
    assert result.exit_code == 0, result.output
    return out


def decode(entry: dict, n: int) -> np.ndarray:
    """(kept units, n) activations in [-1, 1] from the page's int8."""
    raw = np.frombuffer(base64.b64decode(entry["int8"]), dtype=np.int8)
    return raw.reshape(len(entry["units"]), n) / 127.0


def forward_top(model, ids) -> np.ndarray:
    """The last layer's output after each input, by the model's compiled forward pass."""
    top, _, _ = model.forward(np.asarray(ids, np.int32)[:, None], model.zero_state(1))
    return top


# ---- the page's data ---------------------------------------------------------------------
@pytest.mark.parametrize("text,as_line", [(TEXT, True), (DOCUMENT, False)])
def test_the_pages_numbers_are_the_models(two_layer_model, text, as_line):
    model, tokenizer, _ = load(str(two_layer_model))
    data = explorer_data(model, tokenizer, text, as_line=as_line)
    ids = sequence_ids(tokenizer, text, as_line=as_line)
    n = len(ids) - 1
    assert len(data["tokens"]) == len(data["bits"]) == n
    total = score_text(model, tokenizer, text, as_line=as_line).logprob
    assert abs(-sum(data["bits"]) * math.log(2) - total) < n * 0.0005 * math.log(2) + 1e-5
    preds = predict(model, ids)
    assert data["top"] == preds.top_ids.reshape(-1).tolist()
    assert data["rank"] == preds.rank.tolist()
    # the last layer's hidden state after each token, against the compiled forward pass
    top = forward_top(model, ids)  # (n + 1, H): after ids[0] (the opening EOS) .. ids[n]
    last = next(s for s in data["states"] if s["layer"] == 1 and s["kind"] == "hidden")
    np.testing.assert_allclose(decode(last, n), top[1:, last["units"]].T, atol=0.5 / 127 + 1e-6)


def test_units_are_ranked_by_spread_and_can_be_limited(two_layer_model):
    model, tokenizer, _ = load(str(two_layer_model))
    data = explorer_data(model, tokenizer, DOCUMENT, as_line=False)
    assert [(s["layer"], s["kind"]) for s in data["states"]] == [
        (0, "hidden"), (0, "cell"), (1, "hidden"), (1, "cell")]
    n = len(data["tokens"])
    for entry in data["states"]:
        assert sorted(entry["units"]) == list(range(12))
        assert entry["std"] == sorted(entry["std"], reverse=True)
        values = decode(entry, n)
        np.testing.assert_allclose(values.std(axis=1), entry["std"], atol=0.01)
    small = explorer_data(model, tokenizer, DOCUMENT, as_line=False, units=3)
    for entry, full in zip(small["states"], data["states"]):
        assert entry["units"] == full["units"][:3]
        assert len(base64.b64decode(entry["int8"])) == 3 * n


def test_a_gru_has_no_cell_states(corpus_file, tmp_path):
    out = tmp_path / "gru.safetensors"
    assert run(["train", corpus_file, "-o", out, *SMALL_LSTM, "--cell", "gru", "--steps", "3"]).exit_code == 0
    model, tokenizer, _ = load(str(out))
    data = explorer_data(model, tokenizer, TEXT, as_line=True)
    assert [s["kind"] for s in data["states"]] == ["hidden", "hidden"]


def test_ten_thousand_characters_make_a_page_of_reasonable_size(two_layer_model, corpus_text):
    model, tokenizer, _ = load(str(two_layer_model))
    text = corpus_text[:10_000]
    page = render_page(explorer_data(model, tokenizer, text, as_line=False), "10k")
    n = len(text) + (not text.endswith("\n"))
    activations = 2 * 2 * 12 * n * 4 / 3  # layers x (h, c) x units x tokens, int8 in base64
    assert len(page.encode()) < activations + 60 * n  # tokens, top 5 and surprisal: under 60 bytes each
    assert len(page.encode()) < 1_500_000


def loaded_urls(html: str) -> list[str]:
    """Everything in the page that a browser could fetch: attributes, CSS url() and imports,
    and the JavaScript ways to reach the network."""
    patterns = [r"""\b(?:src|href|srcset|action|poster|data)\s*=""", r"url\(", r"@import",
                r"\bfetch\s*\(", r"XMLHttpRequest", r"WebSocket", r"EventSource", r"\bimport\s*\(",
                r"\bimport\s+[\w{*]", r"sendBeacon", r"https?:"]
    return [m.group(0) for p in patterns for m in re.finditer(p, html)]


def test_the_page_loads_nothing_and_survives_hostile_text(tiny_model):
    model, tokenizer, _ = load(str(tiny_model))
    page = render_page(explorer_data(model, tokenizer, TEXT, as_line=True), "t")
    assert loaded_urls(page) == []
    assert "default-src 'none'" in page  # and the browser is told to refuse any load
    hostile = '</script><script>alert(1)</script><!-- https://example.com/x.js'
    page = render_page(explorer_data(model, tokenizer, hostile, as_line=True), hostile)
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page
    # the URL is in the data as text only, never in an attribute or a loader
    assert [u for u in loaded_urls(page) if not u.startswith("http")] == []


# ---- the command ---------------------------------------------------------------------------
def test_the_command_writes_one_html_file(tiny_model, tmp_path):
    out = tmp_path / "page.html"
    result = run(["explore", TEXT, "-m", tiny_model, "-o", out])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {out}" in result.stderr
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "&quot;quick&quot;" in html  # the title
    doc = tmp_path / "doc.txt"
    doc.write_text(DOCUMENT, encoding="utf-8")
    result = run(["explore", "--file", doc, "-m", tiny_model, "-o", "-"])
    assert result.exit_code == 0 and result.stdout.startswith("<!DOCTYPE html>")
    assert "doc.txt" in result.stdout


def test_an_unwritable_output_is_one_line_and_exit_1(tiny_model, tmp_path):
    result = run(["explore", "x", "-m", tiny_model, "-o", tmp_path / "no" / "p.html"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error: cannot write") and "-o" in result.stderr


@pytest.mark.parametrize("args,words", [
    ([], ["TEXT", "--file"]), (["x", "--file", "y.txt"], ["TEXT", "--file"]),
    (["a long text", "--max-tokens", "5"], ["--max-tokens"]), (["x", "--units", "0"], ["--units"]),
])
def test_usage_errors(tiny_model, tmp_path, args, words):
    result = run(["explore", *args, "-m", tiny_model, "-o", tmp_path / "p.html"])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "p.html").exists()


# ---- in a real browser -----------------------------------------------------------------------
def browser_or_skip():
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium): the browser test needs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright): the browser test needs it")
    return exe, sync_playwright


SHOWN = {" ": "\u2423", "\n": "\u21b5"}


def expected_top5(model, tokenizer, ids, position) -> list[tuple[str, float]]:
    """The model's five most likely tokens at a position, by its compiled forward pass and
    decoder (not the page's code path), with probabilities in percent."""
    logits = model.logits(forward_top(model, ids)[:-1]).astype(np.float64)[position]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    best = np.argsort(-p)[:5]
    return [(SHOWN.get(tokenizer.token_text(i), tokenizer.token_text(i)), 100 * p[i]) for i in best]


def test_in_chromium_hover_shows_the_models_top5_and_a_unit_recolours(two_layer_model, tmp_path):
    exe, sync_playwright = browser_or_skip()
    model, tokenizer, _ = load(str(two_layer_model))
    page_file = tmp_path / "page.html"
    doc = tmp_path / "doc.txt"
    doc.write_text(DOCUMENT, encoding="utf-8")
    assert run(["explore", "--file", doc, "-m", two_layer_model, "-o", page_file]).exit_code == 0
    ids = sequence_ids(tokenizer, DOCUMENT, as_line=False)
    top = forward_top(model, ids)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            requests, errors = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            assert page.locator("span.tok").count() == len(ids) - 1
            for position in (0, 5, 23):
                page.hover(f"span.tok >> nth={position}")
                rows = page.locator("#tip tr.pred")
                assert rows.count() == 5
                shown = [(rows.nth(r).locator(".pt").inner_text(), rows.nth(r).locator(".pp").inner_text())
                         for r in range(5)]
                for (token, percent), (want_token, want_percent) in zip(shown, expected_top5(model, tokenizer, ids, position)):
                    assert token == want_token, (position, shown)
                    got = 0.0 if percent == "<0.1%" else float(percent.rstrip("%"))
                    assert abs(got - want_percent) <= 0.051 + (0.05 if percent == "<0.1%" else 0), (position, shown)
            # colour by a unit of layer 2's hidden state: the second most varying one
            page.select_option("#layer", index=1)  # layer 2 (a value would also match labels)
            page.select_option("#kind", value="hidden")
            unit = int(page.locator("#ranking li").nth(1).get_attribute("data-unit"))
            page.locator("#ranking li").nth(1).click()
            assert page.is_checked("#mode-unit") and page.input_value("#unit") == str(unit)
            backgrounds = page.eval_on_selector_all("span.tok", "els => els.map(e => getComputedStyle(e).backgroundColor)")
            activations = top[1:, unit]
            checked = 0
            for colour, a in zip(backgrounds, activations):
                r, g, b = (int(v) for v in re.findall(r"\d+", colour)[:3])
                if abs(a) > 0.1:  # red above zero, blue below
                    assert (r > b) == (a > 0), (colour, a)
                    checked += 1
            assert checked > 5
            page.hover("span.tok >> nth=7")
            act = page.inner_text("#tip .act")
            assert act.startswith(f"layer 2 hidden h unit {unit}: ")
            assert abs(float(act.rsplit(" ", 1)[1]) - activations[7]) < 0.01
            shot = tmp_path / "explore.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes()[:4] == b"\x89PNG"
            assert errors == []
            assert requests == [page_file.as_uri()]  # the page itself, nothing else
            # the address fragment reopens a view: a unit of a cell state, a token's predictions
            page.goto(page_file.as_uri() + f"#layer=1&state=cell&unit={unit}&token=6")
            assert page.input_value("#layer") == "0" and page.input_value("#kind") == "cell"
            assert page.is_checked("#mode-unit") and page.input_value("#unit") == str(unit)
            assert page.is_visible("#tip") and page.inner_text("#tip .act").startswith(
                f"layer 1 cell tanh(c) unit {unit}: ")
            assert page.locator("#tip tr.pred .pt").first.inner_text() == expected_top5(model, tokenizer, ids, 5)[0][0]
            assert errors == []
        finally:
            browser.close()
