"""The Python API that the CLI uses: prepare a training run, load a model, sample, score.

    trainer = charlm.api.prepare_training("corpus.txt", steps=1000)  # as `charlm train corpus.txt --steps 1000`
    for event in trainer.run(): ...
    model, tokenizer, header = charlm.api.load("charlm.safetensors")
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charlm.train import run_identity
from charlm.io.checkpoint import default_model_path, load_model, load_training_state, sidecar
from charlm.config import ModelConfig, TokenizerConfig, TrainConfig, configs_for
from charlm.data.batches import split_train_valid
from charlm.data.corpus import Corpus
from charlm.train.distributed import world
from charlm.errors import CharlmError, CorpusError, ModelFileError, OptionError
from charlm.json_numbers import is_int
from charlm.train.finetune import grown_model, grown_tokenizer, lineage
from charlm.nn.model import Model
from charlm.io.outputs import RunLock, check_outputs, follow_link
from charlm.data.tokenizer import Tokenizer
from charlm.validation import check_value, validate

if TYPE_CHECKING:
    from charlm.train.trainer import Trainer


# The model file's header sections that a resumed run writes again as they were.
RESUMED_HEADER = ("tokenizer_config", "corpus", "run", "parent", "corpora", "size_rule")


@dataclass(frozen=True)
class RunPaths:
    """The files of a run: the model and, beside it, the resumable state, the metrics and the
    lock. A symbolic link is followed (charlm.io.outputs): the files go where it points."""

    model: str
    state: str
    metrics: str
    lock: str

    @classmethod
    def for_model(cls, model_path: str | None) -> "RunPaths":
        model_path = follow_link(model_path or default_model_path())
        return cls(model_path, *(follow_link(str(sidecar(model_path, kind)))
                                 for kind in ("state.safetensors", "metrics.jsonl", "lock")))

    def claim(self) -> RunLock:
        """Check the output files and lock them for this run (before the corpus is read)."""
        check_outputs(self.model, [self.state, self.metrics, self.lock])
        return RunLock.acquire(self.lock, self.model)


def load(path: str | None = None):
    """(model, tokenizer, header) from a model file (default: $CHARLM_MODEL or ./charlm.safetensors)."""
    return load_model(path or default_model_path())


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
                     encoding_errors: str = "strict", notes: list | None = None,
                     init_from: str | None = None, header_extra: dict | None = None, **options) -> Trainer:
    """Read and encode the corpus, build the vocabulary and a fresh model, return a Trainer.

    options: `charlm train`'s options by field name (charlm.config: hidden=256, level="word",
    steps=1000, time_budget=600.0, ...), with the same defaults, as charlm.config.configs_for
    makes them; or, instead, the configs themselves (a config not given is the defaults of
    tok_cfg's level).

    The corpus is read in chunks, twice (counting, then encoding into a compact token file
    that training reads through a memory map), so memory does not grow with its size.

    init_from: a model file to fine-tune (charlm.train.finetune): its weights, architecture and
    level, its vocabulary grown by the corpus's new tokens; of model_cfg only dropout and
    locked_dropout apply; the optimizer starts afresh. header_extra: JSON-able sections
    stored in the model file's header. `notes` collects messages for the user (e.g. a batch
    shrunk to fit a small corpus).
    """
    model_cfg, tok_cfg, cfg = _configs(model_cfg, tok_cfg, cfg, options)
    check_value("encoding_errors", encoding_errors)
    parent = load_model(init_from) if init_from is not None else None
    if parent is not None:
        model_cfg, tok_cfg = _fine_tuning_configs(parent, model_cfg, tok_cfg, init_from)
    validate(model_cfg, tok_cfg, cfg)
    notes = notes if notes is not None else []
    notes.extend(_idle_options(model_cfg, cfg))
    paths = RunPaths.for_model(output)
    ranks = world()
    held: list = []  # the root's run lock, once claimed

    def read() -> tuple:  # on the root alone under MPI (_read_once)
        lock = paths.claim()
        held.append(lock)
        _remove_old_state(paths)
        with Corpus(corpus, encoding_errors, spool_dir=scratch) as source:
            counts = source.count(tok_cfg.level)  # pass 1
            if parent is None:
                tokenizer = Tokenizer.from_counts(counts, tok_cfg)
            else:
                tokenizer = grown_tokenizer(parent[1], counts, tok_cfg)
                notes.append(_growth_note(init_from, parent[1], tokenizer))
            train_ids, valid_ids, valid_text = _split(tokenizer, source, valid, cfg.valid_frac,
                                                      encoding_errors, scratch)
            identity = run_identity.make_identity(run_identity.text_identity(corpus, source.fingerprint),
                                                  valid_text, model_cfg, tok_cfg, cfg, encoding_errors)
        fitted = _fit_to_corpus(cfg, len(train_ids), notes)
        _start_metrics(paths)
        return tokenizer, train_ids, valid_ids, fitted, identity

    scratch = _scratch_dir(paths.model)
    try:
        tokenizer, train_ids, valid_ids, cfg, identity = _read_once(ranks, read, paths.model)
        extra = {"tokenizer_config": dataclasses.asdict(tok_cfg), "corpus": os.path.basename(corpus),
                 "run": identity, **(header_extra or {})}
        if parent is None:
            model = Model.create(dataclasses.replace(model_cfg, vocab_size=tokenizer.vocab_size).with_cell_defaults(),
                                 seed=cfg.seed)
        else:
            grown = grown_model(parent[0], tokenizer.vocab_size, np.random.default_rng(cfg.seed))
            model = Model(dataclasses.replace(grown.config, dropout=model_cfg.dropout,
                                              locked_dropout=model_cfg.locked_dropout), grown.params)
            extra.update(lineage(init_from, parent[2], corpus))
    except BaseException:
        for lock in held:
            lock.release()
        raise
    from charlm.train.trainer import Trainer  # the training machinery (and Numba) only when training

    return Trainer(model, tokenizer, train_ids, valid_ids, cfg, paths.model, paths.state, extra,
                   paths.metrics, run_lock=held[0] if held else None, world=ranks)


def _configs(model_cfg: ModelConfig | None, tok_cfg: TokenizerConfig | None, cfg: TrainConfig | None,
             options: dict) -> tuple[ModelConfig, TokenizerConfig, TrainConfig]:
    """The run's configs: from options, or those given with the level's defaults for the others."""
    given = [c for c in (model_cfg, tok_cfg, cfg) if c is not None]
    if options and given:
        raise OptionError("give prepare_training either options by name or configs, not both")
    if options:
        return configs_for(**options)
    defaults = configs_for(level=(tok_cfg or TokenizerConfig()).level)
    return model_cfg or defaults.model, tok_cfg or defaults.tokenizer, cfg or defaults.train


def _fine_tuning_configs(parent: tuple, model_cfg: ModelConfig, tok_cfg: TokenizerConfig,
                         path: str) -> tuple[ModelConfig, TokenizerConfig]:
    """The parent's architecture with model_cfg's dropout; tok_cfg at the parent's level."""
    parent_model, parent_tok, _ = parent
    if tok_cfg.level != parent_tok.level:
        raise OptionError(f"--level {tok_cfg.level} differs from {path}'s level {parent_tok.level}: "
                          f"a fine-tuned model keeps its parent's tokens; omit --level")
    return (dataclasses.replace(parent_model.config, dropout=model_cfg.dropout,
                                locked_dropout=model_cfg.locked_dropout), tok_cfg)


def _growth_note(path: str, parent: Tokenizer, grown: Tokenizer) -> str:
    added = grown.vocab_size - parent.vocab_size
    if added == 0:
        return f"fine-tuning {os.path.basename(path)}: the corpus has no token outside its vocabulary"
    return (f"fine-tuning {os.path.basename(path)}: {added} new tokens get ids {parent.vocab_size}-"
            f"{grown.vocab_size - 1} after its {parent.vocab_size}")


def resume_training(corpus: str, *, output: str | None = None, valid: str | None = None,
                    limits: dict | None = None, encoding_errors: str = "strict",
                    settings: dict | None = None) -> Trainer:
    """A Trainer that continues exactly where the saved state of `output` stopped.

    limits: new stop conditions (steps, epochs, time_budget) replacing the saved ones.
    settings: run settings the caller expects the saved run to have (option name -> value,
    e.g. {"hidden": 512}); any other value is refused, as are another corpus or validation
    text than the run's (charlm.train.run_identity).
    """
    _check_limits(limits or {})
    check_value("encoding_errors", encoding_errors)
    paths = RunPaths.for_model(output)
    ranks = world()
    held: list = []  # the root's run lock, once claimed
    model, tokenizer, arrays, info = load_training_state(paths.state) if not ranks.is_root else (None,) * 4

    def read() -> tuple:  # on the root alone under MPI (_read_once)
        header = info.get("header", {})
        identity = _saved_identity(paths, header)
        run_identity.check_settings(paths.state, identity, settings or {})
        with Corpus(corpus, encoding_errors, spool_dir=scratch) as source:
            train_ids, valid_ids, valid_text = _split(tokenizer, source, valid, cfg.valid_frac,
                                                      encoding_errors, scratch)
            run_identity.check_texts(paths.state, identity, run_identity.text_identity(corpus, source.fingerprint),
                                     valid_text)
        return tokenizer, train_ids, valid_ids, cfg, identity

    try:
        if ranks.is_root:
            held.append(paths.claim())  # before the state is read: another run may be writing it
            model, tokenizer, arrays, info = load_training_state(paths.state)
        cfg = TrainConfig(**info["train"])
        if limits:
            cfg = dataclasses.replace(cfg, **limits)
        scratch = _scratch_dir(paths.model)
        _, train_ids, valid_ids, _, _ = _read_once(ranks, read, paths.model)
        header = info.get("header", {})
        extra = {k: header[k] for k in RESUMED_HEADER if k in header}
        from charlm.train.trainer import Trainer

        trainer = Trainer(model, tokenizer, train_ids, valid_ids, cfg, paths.model, paths.state, extra,
                          paths.metrics, run_lock=held[0] if held else None, world=ranks)
        trainer.restore(arrays, info)
        if ranks.is_root:
            _trim_metrics(paths, trainer.progress.step)
    except BaseException:
        for lock in held:
            lock.release()
        raise
    return trainer


def _check_limits(limits: dict) -> None:
    """New stop conditions for a resumed run: only the limits, each in its option's range."""
    others = set(limits) - set(run_identity.LIMITS)
    if others:
        raise OptionError(f"--resume changes only {', '.join(run_identity.LIMITS)}, not {', '.join(sorted(others))}")
    for name, value in limits.items():
        check_value(name, value)


def _split(tokenizer: Tokenizer, source: Corpus, valid: str | None, valid_frac: float, errors: str,
           scratch: str):
    """(train, valid) token arrays, memory maps of compact token files (or views of one), and
    the identity of the validation file (None: the validation text is the corpus's end)."""
    ids = source.encode(tokenizer, scratch)  # pass 2
    valid_text = None
    if valid is not None:
        with Corpus(valid, errors, spool_dir=scratch) as valid_source:
            valid_ids = valid_source.encode(tokenizer, scratch)
            valid_text = run_identity.text_identity(valid, valid_source.fingerprint)
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
    return train_ids, valid_ids, valid_text


def _read_once(ranks, read, model_path: str) -> tuple:
    """read() -> (tokenizer, train ids, valid ids, config, run identity), on the root alone under
    MPI: the root writes the token arrays beside the model (a filesystem every rank sees), the
    others wait and map them; an error on the root is raised on every rank."""
    if ranks.size == 1:
        return read()
    shared = None
    if ranks.is_root:
        try:
            tokenizer, train_ids, valid_ids, cfg, identity = read()
            files = [_share_tokens(ids, sidecar(model_path, f"{kind}.tokens"))
                     for kind, ids in (("train", train_ids), ("valid", valid_ids))]
            shared = ("ok", tokenizer.to_dict(), cfg, files, identity)
        except CharlmError as exc:
            shared = ("error", type(exc), str(exc))
    shared = ranks.broadcast(shared)
    if shared[0] == "error":
        raise shared[1](shared[2])
    _, tokenizer_dict, cfg, files, identity = shared
    if ranks.is_root:
        ranks.barrier()  # every rank has mapped the files: they live on in the maps
        for path, _, _ in files:
            os.unlink(path)
        return tokenizer, train_ids, valid_ids, cfg, identity
    mapped = [np.memmap(path, dtype=dtype, mode="r", shape=(n,)) for path, dtype, n in files]
    ranks.barrier()
    return (Tokenizer.from_dict(tokenizer_dict), *mapped, cfg, identity)


def _share_tokens(ids: np.ndarray, path) -> tuple[str, str, int]:
    """Write token ids to a file the other ranks map: (path, dtype, count)."""
    try:
        np.asarray(ids).tofile(str(path))
    except OSError as exc:
        raise CorpusError(f"cannot write {path} ({exc.strerror}): the directory of -o must be "
                          "writable and shared by every rank") from None
    return str(path), np.asarray(ids).dtype.str, len(ids)


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


def _saved_identity(paths: RunPaths, header: dict) -> dict | None:
    """The saved run's identity (None in states written before runs had one)."""
    identity = header.get("run")
    if identity is not None and not run_identity.is_well_formed(identity):
        raise ModelFileError(f"{paths.state} holds a damaged training state (the run's identity): "
                             "start a new run without --resume")
    return identity


def _remove_old_state(paths: RunPaths) -> None:
    """A new run never continues an earlier one: the earlier run's resumable state goes."""
    try:
        os.unlink(paths.state)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CharlmError(f"cannot remove the resumable state {paths.state} of an earlier run on "
                          f"{paths.model} ({exc.strerror}): remove it, or choose another -o/--output") from exc


def _trim_metrics(paths: RunPaths, step: int) -> None:
    """Before a resumed run appends to the metrics file, drop the rows past the step it resumes
    at (written after the saved state by a run that was then killed) and any line cut short:
    each step's rows appear once."""
    try:
        with open(paths.metrics, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CharlmError(f"cannot read the metrics file {paths.metrics} beside {paths.model} "
                          f"({exc.strerror}): remove it to continue") from exc
    kept = [line for line in lines if _row_step(line, default=step + 1) <= step]
    if len(kept) == len(lines):
        return
    tmp = f"{paths.metrics}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in kept)
        os.replace(tmp, paths.metrics)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CharlmError(f"cannot write the metrics file {paths.metrics} beside {paths.model} "
                          f"({exc.strerror}): free some disk space or choose another -o/--output") from exc


def _row_step(line: str, default: int) -> int:
    """The step of a metrics row; `default` for a line that is not one (e.g. cut short by a kill)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return default
    return step if is_int(step) else default


def _start_metrics(paths: RunPaths) -> None:
    """A new run starts a new metrics file (a resumed run appends)."""
    try:
        open(paths.metrics, "w").close()
    except OSError as exc:
        raise OptionError(f"cannot write the metrics file {paths.metrics} beside {paths.model} "
                          f"({exc.strerror}): choose another -o/--output") from exc
