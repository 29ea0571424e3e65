"""What the training loop reports. The loop never prints: the CLI renders these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Started:
    params: int
    train_tokens: int
    valid_tokens: int
    windows_per_epoch: int
    total_steps: int | None  # known when --steps or --epochs bound the run
    time_budget: float | None
    resumed_from_step: int
    threads: int = 1  # threads computing the run (charlm.nn.stack)


@dataclass(frozen=True)
class Step:
    step: int
    epoch: float
    loss: float  # mean train loss over the log interval, nats/token
    lr: float
    grad_norm: float
    tokens_per_s: float
    elapsed: float
    tokens: int  # training tokens read so far (steps x batch x seq-len)


@dataclass(frozen=True)
class Validated:
    step: int
    epoch: float
    loss: float  # nats/token
    ppl: float
    bpc: float | None  # bits per character, char level only
    improved: bool
    elapsed: float
    tokens: int  # training tokens read so far


@dataclass(frozen=True)
class Validating:
    """Progress of a validation, after each of its windows."""

    step: int
    tokens_done: int
    tokens_total: int


@dataclass(frozen=True)
class Notice:
    message: str


@dataclass(frozen=True)
class Finished:
    reason: str
    steps: int
    epoch: float
    elapsed: float
    tokens: int
    best_loss: float | None
    best_step: int | None
    summary: dict = field(default_factory=dict)
