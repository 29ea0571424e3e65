"""The facts `charlm info` shows about a model file."""

from __future__ import annotations

from .evaluate import bits_per_char, perplexity
from .model import Model
from .tokenizer import Tokenizer


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
    if best is not None and tokenizer.level == "char":
        card["best_valid_bpc"] = round(bits_per_char(best), 4)
    return card
