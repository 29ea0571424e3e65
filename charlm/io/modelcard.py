"""The facts `charlm info` shows about a model file: as JSON-able values (model_card) and as
text for people (card_rows)."""

from __future__ import annotations


import numpy as np

from charlm.config import LEAKY_CELLS
from charlm.metrics import bits_per_char, perplexity
from charlm.nn.model import Model
from charlm.data.tokenizer import Tokenizer

# Card entries shown to 4 decimals in the table (the JSON keeps every digit).
FOUR_DECIMALS = ("best_valid_loss", "best_valid_ppl", "best_valid_bpc")
SHA_SHOWN = 12  # hex digits of a parent's sha256 shown in the table (all in the JSON)
LABELS = {"training_seconds": "training time", "fine_tuned_from": "fine-tuned from"}


def model_card(path: str, model: Model, tokenizer: Tokenizer, header: dict) -> dict:
    cfg = model.config
    summary = header.get("summary", {})
    best = summary.get("best_valid_loss")
    card = {
        "file": path,
        "format_version": header.get("format_version"),
        "cell": cfg.cell,
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "embed": cfg.embed if cfg.embed else "one-hot",
        "dropout": cfg.dropout,
        "locked_dropout": cfg.locked_dropout,
        "tied": cfg.tie,
        "parameters": model.num_parameters(),
        "level": tokenizer.level,
        "vocabulary": tokenizer.vocab_size,
        "corpus": header.get("corpus"),
        "training_steps": summary.get("steps"),
        "training_tokens": summary.get("tokens"),
        "training_seconds": summary.get("seconds"),
        "training_threads": summary.get("threads"),
        "best_valid_loss": best,
        "best_valid_ppl": None if best is None else round(perplexity(best), 4),
    }
    card.update(_cell_settings(model))
    if best is not None and tokenizer.level == "char":
        card["best_valid_bpc"] = round(bits_per_char(best), 4)
    if "parent" in header:
        card["fine_tuned_from"] = header["parent"]  # {file, sha256, corpus[, parent]}
        card["corpora"] = header.get("corpora")
    if "size_rule" in header:
        card["size_rule"] = header["size_rule"]
    return card


def card_rows(card: dict) -> list[tuple[str, str]]:
    """(label, text) per card entry, for people: 12,345; losses to 4 decimals; 1h02m."""
    return [(LABELS.get(key, key.replace("_", " ")), _text(key, value)) for key, value in card.items()]


def _text(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "training_seconds":
        return duration(value)
    if key in FOUR_DECIMALS:
        return f"{value:,.4f}"
    if key == "fine_tuned_from":
        return lineage_text(value)
    if key == "corpora":
        return ", then ".join(str(c) for c in value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def duration(seconds: float) -> str:
    """12.3s, 3m05s, 1h02m (the largest two units, rounded down)."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def lineage_text(parent: dict) -> str:
    """'b.safetensors (sha256 0123456789ab…, trained on b.txt) <- a.safetensors (…)'."""
    parts = []
    while parent:
        parts.append(f"{parent.get('file')} (sha256 {str(parent.get('sha256'))[:SHA_SHOWN]}…, "
                     f"trained on {parent.get('corpus')})")
        parent = parent.get("parent")
    return " <- ".join(parts)


def _cell_settings(model: Model) -> dict:
    """The leaky cells' leak rate and the reservoir's spectral radius and frozen weights."""
    cfg = model.config
    if cfg.cell not in LEAKY_CELLS:
        return {}
    if cfg.learn_leak:
        rates = np.concatenate([model.leak_rates(layer) for layer in range(cfg.layers)])
        settings = {"leak": "learned", "leak_min": round(float(rates.min()), 4),
                    "leak_mean": round(float(rates.mean()), 4), "leak_max": round(float(rates.max()), 4)}
    else:
        settings = {"leak": cfg.leak_rate}
    if cfg.reservoir:
        settings["spectral_radius"] = cfg.radius
        settings["learned_embedding"] = cfg.learn_embedding
        settings["frozen_parameters"] = sum(model.params[n].size for n in model.frozen_names())
    return settings
