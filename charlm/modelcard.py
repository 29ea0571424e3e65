"""The facts `charlm info` shows about a model file."""

from __future__ import annotations

import math

import numpy as np

from .config import LEAKY_CELLS
from .evaluate import bits_per_char
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
        "best_valid_ppl": None if best is None else round(math.exp(min(best, 700)), 4),
    }
    card.update(_cell_settings(model))
    if best is not None and tokenizer.level == "char":
        card["best_valid_bpc"] = round(bits_per_char(best), 4)
    return card


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
