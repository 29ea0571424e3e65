"""Fine-tuning: a parent model trained on, on new text, its vocabulary grown for that text.

Tokens of the new text missing from the parent's vocabulary get ids after the parent's, so
every old id keeps its meaning and its weights: the grown model gives the old tokens the
parent's logits. The new tokens' weights are drawn as at creation (charlm.nn.initializers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from charlm.config import TokenizerConfig
from charlm.nn.initializers import new_token_params
from charlm.nn.model import Model
from charlm.data.tokenizer import EOS, UNK, Tokenizer, TokenCounts, _char_vocab


def grown_tokenizer(parent: Tokenizer, counts: TokenCounts, cfg: TokenizerConfig) -> Tokenizer:
    """The parent's tokens, then the new text's tokens it lacks (seen at least cfg.min_count
    times): characters by code point; words by frequency (ties by first occurrence), while the
    vocabulary holds fewer than cfg.max_vocab tokens."""
    known = set(parent.tokens)
    if parent.level == "char":
        new = [c for c in _char_vocab(counts.chars, cfg.min_count) if c not in known]
    else:
        room = max(0, cfg.max_vocab - parent.vocab_size)
        new = []
        for word, count in counts.words.most_common():
            if len(new) >= room or count < cfg.min_count:
                break
            if word not in known and word not in (UNK, EOS):
                new.append(word)
    return Tokenizer(parent.level, parent.tokens + new)


def grown_model(parent: Model, vocab_size: int, rng: np.random.Generator) -> Model:
    """A new model: the parent's weights with rows (one-hot input: W_ih columns) appended for
    ids parent vocab_size .. vocab_size - 1. The parent is not changed; tied stays tied."""
    cfg = dataclasses.replace(parent.config, vocab_size=vocab_size)
    added = new_token_params(cfg, rng, vocab_size - parent.config.vocab_size)
    params = {}
    for name, p in parent.params.items():
        if name in added:
            axis = 1 if name == "rnn.weight_ih_l0" else 0
            params[name] = np.ascontiguousarray(np.concatenate([p, added[name]], axis=axis))
        else:
            params[name] = p.copy()
    if cfg.tie:
        params["decoder.weight"] = params["embedding.weight"]
    return Model(cfg, params)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lineage(parent_path: str, parent_header: dict, corpus: str) -> dict:
    """Header sections of a fine-tuned model: its parent (file name, sha256, the parent's own
    parent) and every corpus the weights were trained on, oldest first."""
    corpora = parent_header.get("corpora") or [parent_header.get("corpus")]
    parent = {"file": os.path.basename(parent_path), "sha256": file_sha256(parent_path),
              "corpus": parent_header.get("corpus")}
    if "parent" in parent_header:
        parent["parent"] = parent_header["parent"]
    return {"parent": parent, "corpora": [*corpora, os.path.basename(corpus)]}
