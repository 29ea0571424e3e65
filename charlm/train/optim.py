"""Optimizers (Adam, AdamW, SGD) and gradient clipping, updating float32 arrays in place.

Adam follows torch.optim.Adam exactly: bias-corrected moments, eps added after the square
root, optional L2 weight decay added to the gradient. AdamW follows torch.optim.AdamW: the
same step, with the weights shrunk by lr * weight_decay before it instead (decoupled weight
decay, Loshchilov & Hutter 2019), so the decay is not divided by Adam's running scale.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from charlm.validation import check_value
from charlm.nn.kernels.reductions import _sum_squares

ADAM_PART = 1 << 18  # elements per part at least when an update is split between threads


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """L2 norm of all gradients together, accumulated in float64 (no BLAS call: numpy's own
    BLAS pool stays asleep, see charlm.nn.kernels.linalg)."""
    return float(np.sqrt(sum(_sum_squares(g.ravel()) for g in grads.values())))


def clip_gradients(grads: dict[str, np.ndarray], clip: float, mode: str) -> float:
    """Clip in place against exploding gradients; returns the global norm before clipping.

    mode "norm": rescale all gradients together when their global L2 norm exceeds `clip`
    (Pascanu et al. 2013; torch.nn.utils.clip_grad_norm_). mode "value": clamp each element
    to [-clip, clip] (Mikolov's element-wise clipping). clip <= 0 disables clipping.
    """
    norm = global_norm(grads)
    if clip <= 0 or not np.isfinite(norm):
        return norm
    if mode == "norm":
        if norm > clip:
            scale = np.float32(clip / (norm + 1e-6))
            for g in grads.values():
                g *= scale
    else:
        for g in grads.values():
            np.clip(g, -clip, clip, out=g)
    return norm


class Optimizer:
    """Holds the learning rate, the step count and per-parameter state arrays."""

    def __init__(self, kind: str, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps=1e-8):
        check_value("optimizer", kind)
        self.kind, self.lr, self.weight_decay = kind, lr, weight_decay
        self.betas, self.eps = betas, eps
        self.t = 0
        self.state: dict[str, np.ndarray] = {}  # "m.<name>", "v.<name>" for Adam and AdamW

    @classmethod
    def for_training(cls, cfg) -> "Optimizer":
        """The optimizer a TrainConfig asks for (its kind, rate, weight decay and Adam's beta2)."""
        return cls(cfg.optimizer, cfg.lr, cfg.weight_decay, betas=(0.9, cfg.beta2))

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay:
                if self.kind == "adamw":  # decoupled: shrink the weights, leave the gradient
                    p *= np.float32(1.0 - self.lr * self.weight_decay)
                else:  # L2: through the gradient
                    g += np.float32(self.weight_decay) * p
            if self.kind == "sgd":
                p -= np.float32(self.lr) * g
            else:
                self._adam(name, p, g)

    def _adam(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        """One fused pass (charlm.nn.kernels.adam), large arrays in parts side by side."""
        from charlm.nn.kernels.adam import _adam_update
        from charlm.nn.stack import run_parts

        b1, b2 = self.betas
        m = self.state.setdefault(f"m.{name}", np.zeros_like(p))
        v = self.state.setdefault(f"v.{name}", np.zeros_like(p))
        f32 = np.float32
        scalars = (f32(b1), f32(1 - b1), f32(b2), f32(1 - b2), f32(1.0 / np.sqrt(1 - b2**self.t)),
                   f32(self.eps), f32(self.lr / (1 - b1**self.t)))
        flat = [a.reshape(-1) for a in (p, np.ascontiguousarray(g), m, v)]
        n = flat[0].size
        parts = max(1, min(4, n // ADAM_PART))
        run_parts([partial(_adam_update, *flat, *scalars, n * k // parts, n * (k + 1) // parts)
                   for k in range(parts)])

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays and JSON-able scalars, for the resumable training state."""
        return dict(self.state), {"kind": self.kind, "lr": self.lr, "t": self.t,
                                  "weight_decay": self.weight_decay}

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict) -> None:
        # Copies: stepping must not write into the caller's arrays (e.g. another optimizer's
        # state_dict(), whose arrays are that optimizer's live moments).
        self.state = {k: np.array(v, dtype=np.float32, order="C", copy=True) for k, v in arrays.items()}
        self.kind, self.lr, self.t = scalars["kind"], scalars["lr"], scalars["t"]
        self.weight_decay = scalars.get("weight_decay", 0.0)
