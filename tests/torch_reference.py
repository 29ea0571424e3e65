"""The PyTorch module equivalent to a charlm Model, built from charlm's own parameter names.

`embedding = nn.Embedding`, `rnn = nn.LSTM/GRU/RNN(num_layers=L)` and `decoder = nn.Linear`;
charlm's params load with `load_state_dict` as they are (strict, no renaming). With one-hot
input (embed == 0) there is no embedding module: layer 0 reads the one-hot vector.
"""

from __future__ import annotations

import numpy as np

import torch
from torch import nn

RNN_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class TorchLM(nn.Module):
    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        n_in = cfg.embed if cfg.embed > 0 else cfg.vocab_size
        if cfg.embed > 0:
            self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.rnn = RNN_MODULES[cfg.cell](n_in, cfg.hidden, num_layers=cfg.layers)
        self.decoder = nn.Linear(cfg.hidden, cfg.vocab_size)
        if cfg.tie:
            self.decoder.weight = self.embedding.weight
        self.to(dtype)

    def forward(self, tokens, state=None):
        """tokens (T, B) long -> logits (T, B, V), new state (h_n or (h_n, c_n))."""
        if self.cfg.embed > 0:
            x = self.embedding(tokens)
        else:
            x = nn.functional.one_hot(tokens, self.cfg.vocab_size).to(self.decoder.weight.dtype)
        out, new_state = self.rnn(x, state)
        return self.decoder(out), new_state


def torch_module(model, dtype=torch.float32) -> TorchLM:
    """A TorchLM holding a copy of `model`'s parameters (cast to dtype), in eval mode."""
    net = TorchLM(model.config, dtype)
    sd = {k: torch.tensor(np.asarray(v)).to(dtype) for k, v in model.params.items()}
    net.load_state_dict(sd, strict=True)
    return net.eval()


def torch_state(model, state: np.ndarray, dtype=torch.float32):
    """charlm's (L, S, B, H) state -> torch's h0 or (h0, c0), each (L, B, H)."""
    h = torch.tensor(np.ascontiguousarray(state[:, 0])).to(dtype)
    if model.config.cell == "lstm":
        return h, torch.tensor(np.ascontiguousarray(state[:, 1])).to(dtype)
    return h


def state_to_numpy(model, state) -> np.ndarray:
    """torch's h_n or (h_n, c_n) -> charlm's (L, S, B, H)."""
    parts = state if model.config.cell == "lstm" else (state,)
    return np.stack([p.detach().numpy() for p in parts], axis=1)
