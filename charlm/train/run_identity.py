"""A run's identity: the texts it trains and validates on and the settings it was started
with. It is stored in the header of the run's model and state files (under "run"), so that
--resume continues only the run it names: another corpus, another validation text or a run
setting given with another value is refused with a message saying what differs.

Texts are identified by their size and a BLAKE2b digest of their bytes (charlm.data.corpus.Corpus
computes both while reading), so a copied or touched corpus is still the same corpus.
"""

from __future__ import annotations

import dataclasses
import os

from charlm.config import FIELDS, ModelConfig, TokenizerConfig, TrainConfig
from charlm.errors import CharlmError
from charlm.options import flag_of

# TrainConfig fields that --resume may change: the run's limits.
LIMITS = ("steps", "epochs", "time_budget")


def text_identity(name: str, fingerprint: dict | None) -> dict | None:
    """{"name", "bytes", "blake2b"} of a text read by a Corpus (None: no such text)."""
    if fingerprint is None:
        return None
    return {"name": os.path.basename(name), **fingerprint}


def make_identity(corpus: dict, valid: dict | None, model_cfg: ModelConfig, tok_cfg: TokenizerConfig,
                  cfg: TrainConfig, encoding_errors: str) -> dict:
    """The identity of a new run; the settings as requested (before a small corpus shrinks
    --batch or --seq-len), keyed by their option names with '_' for '-'."""
    settings = {**dataclasses.asdict(model_cfg), **dataclasses.asdict(tok_cfg), **dataclasses.asdict(cfg),
                "encoding_errors": encoding_errors}
    for name in ("vocab_size", *LIMITS):
        settings.pop(name, None)
    return {"corpus": corpus, "valid": valid, "settings": settings}


def check_settings(state_path: str, identity: dict | None, given: dict) -> None:
    """Refuse to resume when a run setting given on the command line differs from the saved
    run's. `given`: option name ('_' for '-') -> value."""
    saved = (identity or {}).get("settings") or {}
    differ = [f"{_flag(name)} {saved[name]!r} (given: {value!r})"
              for name, value in given.items() if name in saved and saved[name] != value]
    if differ:
        raise CharlmError(
            f"the run saved in {state_path} was started with other settings: {', '.join(differ)}: "
            "drop these options to continue it (--resume keeps the run's settings), or start a new "
            "run without --resume")


def check_texts(state_path: str, identity: dict | None, corpus: dict, valid: dict | None) -> None:
    """Refuse to resume on another corpus or validation text than the saved run's."""
    if identity is None:  # a state written before runs had identities
        return
    _check_text(state_path, "corpus", identity.get("corpus"), corpus, "pass the same corpus")
    _check_text(state_path, "validation text", identity.get("valid"), valid,
                "pass the same --valid FILE (or none, if the run had none)")


def _check_text(state_path: str, what: str, saved: dict | None, now: dict | None, fix: str) -> None:
    if _same_text(saved, now):
        return
    raise CharlmError(f"the {what} is not the one of the run saved in {state_path} "
                      f"({_describe(saved)}; given: {_describe(now)}): {fix}, or start a new run "
                      "without --resume")


def _same_text(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.get("bytes"), a.get("blake2b")) == (b.get("bytes"), b.get("blake2b"))


def _describe(text: dict | None) -> str:
    if text is None:
        return "none"
    size = text.get("bytes")
    size = f"{size:,}" if isinstance(size, int) else "?"
    return f"{text.get('name')}, {size} bytes, BLAKE2b {str(text.get('blake2b'))[:12]}"


def is_well_formed(identity) -> bool:
    """The shape that the checks above read (a damaged or hand-edited state may hold anything)."""
    def text(t) -> bool:
        return t is None or isinstance(t, dict)

    return (isinstance(identity, dict) and isinstance(identity.get("settings", {}), dict)
            and text(identity.get("corpus")) and text(identity.get("valid")))


def _flag(name: str) -> str:
    """The command-line option that sets the setting `name` ('--leak learn' for learn_leak)."""
    return flag_of(name, FIELDS[name][1] if name in FIELDS else None)
