"""The Python API that the CLI uses: prepare a training run, load a model, sample, score.

    trainer = charlm.api.prepare_training("corpus.txt")
    for event in trainer.run(): ...
    model, tokenizer, header = charlm.api.load("charlm.safetensors")
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import default_model_path, load_model, load_training_state, sidecar
from .config import (CELLS, CLIP_MODES, LEAKY_CELLS, LEVELS, OPTIMIZERS, ModelConfig, TokenizerConfig,
                     TrainConfig)
from .data import Corpus, split_train_valid
from .errors import CorpusError, OptionError
from .initializers import INITS
from .model import Model
from .schedule import BUDGET_SCHEDULES, SCHEDULES
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .train import Trainer


@dataclass(frozen=True)
class RunPaths:
    model: str
    state: str
    metrics: str

    @classmethod
    def for_model(cls, model_path: str | None) -> "RunPaths":
        model_path = model_path or default_model_path()
        return cls(model_path, str(sidecar(model_path, "state.safetensors")),
                   str(sidecar(model_path, "metrics.jsonl")))


def load(path: str | None = None):
    """(model, tokenizer, header) from a model file (default: $CHARLM_MODEL or ./charlm.safetensors)."""
    return load_model(path or default_model_path())


def validate_options(model_cfg: ModelConfig, tok_cfg: TokenizerConfig, cfg: TrainConfig) -> None:
    """Raise OptionError naming the bad value and the accepted range."""
    checks = [
        (model_cfg.cell in CELLS, f"--cell must be one of {', '.join(CELLS)}"),
        (model_cfg.init in INITS, f"--init must be one of {', '.join(INITS)}"),
        (tok_cfg.level in LEVELS, f"--level must be one of {', '.join(LEVELS)}"),
        (model_cfg.hidden >= 1, "--hidden must be at least 1"),
        (model_cfg.layers >= 1, "--layers must be at least 1"),
        (model_cfg.embed >= 0, "--embed must be 0 (one-hot) or more"),
        (0.0 <= model_cfg.dropout < 1.0, "--dropout must be in [0, 1)"),
        (not model_cfg.tie or model_cfg.embed == model_cfg.hidden,
         "--tie needs --embed equal to --hidden"),
        (model_cfg.leak is None or model_cfg.cell in LEAKY_CELLS,
         f"--leak is for --cell leaky or esn, not {model_cfg.cell}"),
        (not model_cfg.learn_leak or model_cfg.cell == "leaky",
         "--leak learn is for --cell leaky (an echo state network's reservoir is not trained)"),
        (_real_in(model_cfg.leak, 0.0, 1.0, top_open=model_cfg.learn_leak),
         "--leak must be in (0, 1], e.g. 0.5 (1 is the plain tanh RNN), or learn (a learned "
         "rate starts below 1)"),
        (model_cfg.spectral_radius is None or model_cfg.cell == "esn",
         f"--spectral-radius is for --cell esn, not {model_cfg.cell}"),
        (_real_in(model_cfg.spectral_radius, 0.0, np.inf),
         "--spectral-radius must be positive, e.g. 0.9 (below 1 the reservoir forgets its start)"),
        (not model_cfg.learn_embedding or (model_cfg.reservoir and model_cfg.embed > 0),
         "--learn-embedding is for --cell esn with an embedding (--embed above 0); the other "
         "cells always learn theirs"),
        (not (model_cfg.reservoir and model_cfg.tie),
         "--tie cannot be used with --cell esn: the embedding is frozen and the decoder is trained"),
        (cfg.batch >= 1, "--batch must be at least 1"),
        (cfg.seq_len >= 1, "--seq-len must be at least 1"),
        (cfg.lr > 0 and np.isfinite(cfg.lr), "--lr must be a positive number"),
        (cfg.clip >= 0, "--clip must be 0 (off) or positive"),
        (cfg.clip_mode in CLIP_MODES, f"--clip-mode must be one of {', '.join(CLIP_MODES)}"),
        (cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (cfg.schedule in SCHEDULES, f"--schedule must be one of auto, {', '.join(SCHEDULES)}"),
        (cfg.schedule not in BUDGET_SCHEDULES
         or not (cfg.steps is None and cfg.epochs is None and cfg.time_budget is None),
         f"--schedule {cfg.schedule} needs the length of the run: give --steps, --epochs or --time"),
        (0.0 <= cfg.warmup < 1.0, "--warmup must be in [0, 1), a fraction of the run"),
        (0.0 < cfg.decay <= 1.0, "--decay must be in (0, 1], the fraction of the run that anneals"),
        (cfg.warmup + cfg.decay <= 1.0, "--warmup and --decay together must not exceed 1 (the whole run)"),
        (0.0 < cfg.beta2 < 1.0, "--beta2 must be in (0, 1), e.g. 0.999 or 0.99"),
        (0 <= cfg.weight_decay < np.inf and (cfg.optimizer == "adam" or cfg.lr * cfg.weight_decay < 1),
         "--weight-decay must be 0 (off) or a positive number, and with adamw or sgd below 1 / --lr "
         "(each step multiplies the weights by 1 - lr x weight decay)"),
        (0.0 <= cfg.valid_frac < 1.0, "--valid-frac must be in [0, 1), e.g. 0.1"),
        (cfg.steps is None or cfg.steps >= 1, "--steps must be at least 1"),
        (cfg.epochs is None or cfg.epochs > 0, "--epochs must be positive"),
        (cfg.time_budget is None or cfg.time_budget > 0, "--time must be positive, e.g. 90s or 10m"),
        (tok_cfg.min_count >= 1, "--min-count must be at least 1"),
        (tok_cfg.max_vocab >= 3, "--max-vocab must be at least 3"),
    ]
    for ok, message in checks:
        if not ok:
            raise OptionError(message)


def _real_in(x, low: float, high: float, top_open: bool = False) -> bool:
    """x is None (not given), or a finite number in (low, high] ((low, high) when top_open)."""
    if x is None:
        return True
    return bool(np.isfinite(x)) and low < x and (x < high if top_open else x <= high)


def _idle_options(model_cfg: ModelConfig, cfg: TrainConfig) -> list[str]:
    """Notes on options that are valid but do nothing with the others given."""
    notes = []
    if model_cfg.locked_dropout and model_cfg.dropout == 0.0:
        notes.append("--locked-dropout has no effect with --dropout 0: give --dropout P (e.g. 0.3) "
                     "to drop units")
    if cfg.optimizer == "adamw" and cfg.weight_decay == 0.0:
        # PyTorch's AdamW decays by 0.01 unless told otherwise; charlm's default stays 0 for all
        notes.append("--optimizer adamw without --weight-decay is Adam: give --weight-decay W "
                     "(e.g. 0.1) to decay the weights")
    return notes


def prepare_training(corpus: str, *, model_cfg: ModelConfig | None = None,
                     tok_cfg: TokenizerConfig | None = None, cfg: TrainConfig | None = None,
                     valid: str | None = None, output: str | None = None,
                     encoding_errors: str = "strict", notes: list | None = None) -> Trainer:
    """Read and encode the corpus, build the vocabulary and a fresh model, return a Trainer.

    The corpus is read in chunks, twice (counting, then encoding into a compact token file
    that training reads through a memory map), so memory does not grow with its size.

    `notes` collects messages for the user (e.g. a batch shrunk to fit a small corpus).
    """
    model_cfg, tok_cfg, cfg = model_cfg or ModelConfig(), tok_cfg or TokenizerConfig(), cfg or TrainConfig()
    validate_options(model_cfg, tok_cfg, cfg)
    notes = notes if notes is not None else []
    notes.extend(_idle_options(model_cfg, cfg))
    paths = RunPaths.for_model(output)
    scratch = _scratch_dir(paths.model)
    with Corpus(corpus, encoding_errors, spool_dir=scratch) as source:
        tokenizer = Tokenizer.from_counts(source.count(tok_cfg.level), tok_cfg)  # pass 1
        train_ids, valid_ids = _split(tokenizer, source, valid, cfg.valid_frac, encoding_errors, scratch)
    cfg = _fit_to_corpus(cfg, len(train_ids), notes)
    model_cfg = dataclasses.replace(model_cfg, vocab_size=tokenizer.vocab_size).with_cell_defaults()
    model = Model.create(model_cfg, seed=cfg.seed)
    extra = {"tokenizer_config": dataclasses.asdict(tok_cfg), "corpus": os.path.basename(corpus)}
    _start_metrics(paths.metrics)
    from .train import Trainer  # the training machinery (and Numba) only when training

    return Trainer(model, tokenizer, train_ids, valid_ids, cfg, paths.model, paths.state, extra, paths.metrics)


def resume_training(corpus: str, *, output: str | None = None, valid: str | None = None,
                    limits: dict | None = None, encoding_errors: str = "strict") -> Trainer:
    """A Trainer that continues exactly where the saved state of `output` stopped.

    limits: new stop conditions (steps, epochs, time_budget) replacing the saved ones.
    """
    paths = RunPaths.for_model(output)
    model, tokenizer, arrays, info = load_training_state(paths.state)
    cfg = TrainConfig(**info["train"])
    if limits:
        cfg = dataclasses.replace(cfg, **limits)
    scratch = _scratch_dir(paths.model)
    with Corpus(corpus, encoding_errors, spool_dir=scratch) as source:
        train_ids, valid_ids = _split(tokenizer, source, valid, cfg.valid_frac, encoding_errors, scratch)
    header = info.get("header", {})
    extra = {k: header[k] for k in ("tokenizer_config", "corpus") if k in header}
    from .train import Trainer

    trainer = Trainer(model, tokenizer, train_ids, valid_ids, cfg, paths.model, paths.state, extra, paths.metrics)
    trainer.restore(arrays, info)
    return trainer


def _split(tokenizer: Tokenizer, source: Corpus, valid: str | None, valid_frac: float, errors: str,
           scratch: str):
    """(train, valid) token arrays: memory maps of compact token files (or views of one)."""
    ids = source.encode(tokenizer, scratch)  # pass 2
    if valid is not None:
        with Corpus(valid, errors, spool_dir=scratch) as valid_source:
            valid_ids = valid_source.encode(tokenizer, scratch)
        train_ids = ids
    elif valid_frac > 0:
        train_ids, valid_ids = split_train_valid(ids, valid_frac)
    else:
        raise OptionError("no validation text: give --valid FILE or a --valid-frac above 0")
    if len(valid_ids) < 2:
        raise CorpusError(
            f"the validation text has only {len(valid_ids)} tokens: give a longer --valid "
            "file or a larger --valid-frac"
        )
    return train_ids, valid_ids


def _scratch_dir(model_path: str) -> str:
    """Temporary files (the token arrays, a copy of stdin) go beside the model: the disk that
    holds the run, rather than a /tmp that may be small or in memory."""
    return os.path.dirname(os.path.abspath(model_path))


def _fit_to_corpus(cfg: TrainConfig, n_tokens: int, notes: list) -> TrainConfig:
    """Shrink --batch, then --seq-len, so that every stream holds at least one window."""
    batch, seq_len = cfg.batch, cfg.seq_len
    if n_tokens < 3:
        raise CorpusError(f"the training text has only {n_tokens} tokens: charlm needs at least 3")
    if n_tokens // batch < seq_len + 1:
        batch = max(1, min(batch, n_tokens // (seq_len + 1)))
        seq_len = min(seq_len, n_tokens // batch - 1)
        notes.append(
            f"the training text has only {n_tokens} tokens, too few for --batch {cfg.batch} x "
            f"--seq-len {cfg.seq_len} (needs {cfg.batch * (cfg.seq_len + 1)}): using --batch "
            f"{batch} --seq-len {seq_len}"
        )
    return dataclasses.replace(cfg, batch=batch, seq_len=seq_len)


def _start_metrics(path: str) -> None:
    """A new run starts a new metrics file (a resumed run appends)."""
    try:
        open(path, "w").close()
    except OSError as exc:
        raise OptionError(f"cannot write {path} ({exc.strerror}): choose another -o/--output") from exc
