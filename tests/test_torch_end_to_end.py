"""The product's promise, end to end: a model file written by `charlm train`, loaded into the
PyTorch modules its tensor names describe (no renaming, no reshaping), gives the same per-line
log-probabilities as `charlm score --json`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm.cli.app import app
from conftest import TINY

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

LINES = ["The quick brown fox jumps over a lazy dog.", "", "zebra ÿ unseen letters!", "rain falls"]


class CharLM(torch.nn.Module):
    """The module the README names: embedding, rnn, decoder."""

    def __init__(self, cell: str, V: int, E: int, H: int, L: int):
        super().__init__()
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.embedding = torch.nn.Embedding(V, E)
        self.rnn = rnn(E, H, num_layers=L)
        self.decoder = torch.nn.Linear(H, V)

    def line_logprob(self, ids: list[int]) -> float:
        x = torch.tensor(ids[:-1]).view(-1, 1)
        out, _ = self.rnn(self.embedding(x))
        logp = torch.log_softmax(self.decoder(out[:, 0]), dim=-1)
        return float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_torch_modules_loaded_from_the_model_file_score_like_charlm(cell, corpus_file, tmp_path):
    model_path = tmp_path / f"{cell}.safetensors"
    layers = ["--layers", "2"]
    trained = CliRunner().invoke(app, ["train", str(corpus_file), "-o", str(model_path), *TINY,
                                       *layers, "--cell", cell, "--steps", "8"])
    assert trained.exit_code == 0, trained.output
    scored = CliRunner().invoke(app, ["score", "-m", str(model_path), "--json", "-q", *LINES])
    assert scored.exit_code == 0, scored.output
    charlm_rows = [json.loads(line) for line in scored.stdout.splitlines()]

    from charlm.io.checkpoint import load_model

    model, tokenizer, _ = load_model(model_path)
    cfg = model.config
    module = CharLM(cell, cfg.vocab_size, cfg.embed, cfg.hidden, cfg.layers)
    module.load_state_dict(safetensors_torch.load_file(str(model_path)))  # strict: names must match
    module.eval()
    with torch.no_grad():
        for line, row in zip(LINES, charlm_rows):
            ids = [tokenizer.eos_id, *tokenizer.encode_line(line).tolist(), tokenizer.eos_id]
            expected = module.line_logprob(ids)
            assert row["tokens"] == len(ids) - 1
            np.testing.assert_allclose(row["logprob"], expected, rtol=1e-4)
