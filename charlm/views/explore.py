"""`charlm explore`: one self-contained HTML page showing what a model makes of a text.

The page (charlm/views/explorer/page.html, .css, .js, inlined) colours each token by its surprisal,
shows on hover or tap the model's five most likely tokens at that point, and recolours the
text by the activation of any unit of any layer's hidden state (and LSTM cell state), with the
units that vary most listed first. It loads nothing: no network, no other file.

Sizes: activations are int8 (round(127 x value), value in [-1, 1]: h itself, tanh(c) for an
LSTM cell state), base64-encoded, unit by unit: about 1.35 bytes per token per unit kept.
"""

from __future__ import annotations

import base64
import json
import math
import re
from importlib import resources

import numpy as np

from charlm.errors import OptionError
from charlm.views.heatmap import STOPS, scale_bits
from charlm.nn.model import Model
from charlm.views.probe import TOP_K, probe
from charlm.score import sequence_ids
from charlm.views.token_records import surface_pieces
from charlm.data.tokenizer import Tokenizer

RANKED_UNITS = 12  # units listed as varying most, per layer and state
SHOWN = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5"}  # how a vocabulary token reads in a list


def shown(token: str) -> str:
    """A token as it reads in the page's lists: a visible mark for space, tab, line end."""
    return SHOWN.get(token, token)


def explorer_data(model: Model, tokenizer: Tokenizer, text: str, *, as_line: bool,
                  units: int | None = None, max_tokens: int | None = None) -> dict:
    """Everything the page shows, JSON-able. units: keep only that many units per layer and
    state (those that vary most); None keeps all."""
    ids = sequence_ids(tokenizer, text, as_line=as_line)
    n = len(ids) - 1
    if max_tokens is not None and n > max_tokens:
        raise OptionError(f"the text has {n:,} tokens, more than --max-tokens {max_tokens:,}: "
                          "explore an excerpt, or raise --max-tokens (the page grows with it)")
    if units is not None and units < 1:
        raise OptionError(f"--units must be at least 1, not {units} (omit it to keep every unit)")
    preds, states = probe(model, ids, k=TOP_K)
    cfg = model.config
    kinds = [("hidden", states.hidden)] + ([("cell", np.tanh(states.cells))] if states.cells is not None else [])
    return {
        "model": {"cell": cfg.cell, "layers": cfg.layers, "hidden": cfg.hidden,
                  "level": tokenizer.level, "vocabulary": tokenizer.vocab_size},
        "vocab": [shown(tokenizer.token_text(i)) for i in range(tokenizer.vocab_size)],
        "tokens": surface_pieces(tokenizer, text, ids, as_line=as_line),
        "target": preds.targets.tolist(),
        "unkId": tokenizer.unk_id,
        "bits": [round(-lp / math.log(2.0), 3) for lp in preds.logprob.tolist()],
        "rank": preds.rank.tolist(),
        "top": preds.top_ids.reshape(-1).tolist(),  # n x TOP_K ids, row by row
        "topPermille": np.rint(np.exp(preds.top_logprob) * 1000).astype(int).reshape(-1).tolist(),
        "topK": int(preds.top_ids.shape[1]),
        "scaleBits": scale_bits(tokenizer),
        "surprisalStops": STOPS,
        "totalBits": round(float(-preds.logprob.sum() / math.log(2.0)), 3),
        # states[:, 1:]: the state after reading each target token (ids[0] is the opening EOS)
        "states": [_state_entry(layer, kind, values[layer, 1:], units)
                   for layer in range(cfg.layers) for kind, values in kinds],
    }


def _state_entry(layer: int, kind: str, values: np.ndarray, units: int | None) -> dict:
    """One layer's state over the text, values (n, H) in [-1, 1]: its units by spread,
    largest standard deviation first, and their quantised activations unit-major."""
    spread = values.std(axis=0) if len(values) else np.zeros(values.shape[1])
    order = np.argsort(-spread, kind="stable")[: units or values.shape[1]]
    q = np.clip(np.rint(values[:, order].T * 127), -127, 127).astype(np.int8)  # (kept, n)
    return {
        "layer": layer, "kind": kind, "units": order.tolist(),
        "std": [round(float(s), 4) for s in spread[order]],
        "ranked": min(RANKED_UNITS, len(order)),
        "int8": base64.b64encode(q.tobytes()).decode("ascii"),
    }


def render_page(data: dict, title: str) -> str:
    """The HTML page: template, CSS, JS and data inlined."""
    asset = resources.files("charlm.views") / "explorer"
    page = (asset / "page.html").read_text(encoding="utf-8")
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # "<" only occurs inside JSON strings: as \u003c no "</script>" or "<!--" can end the element
    payload = payload.replace("<", "\\u003c")
    parts = {"/*CSS*/": (asset / "page.css").read_text(encoding="utf-8"),
             "/*JS*/": (asset / "page.js").read_text(encoding="utf-8"),
             "__TITLE__": _html_escape(title), "__DATA__": payload}
    return re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], page)


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
