"""`charlm info`: the card's figures written for people; the JSON keeps the raw values."""

from __future__ import annotations

import pytest

from charlm.io.modelcard import card_rows, duration, lineage_text


@pytest.mark.parametrize("seconds,text", [(0.27, "0.3s"), (59.94, "59.9s"), (60, "1m00s"), (185.2, "3m05s"),
                                          (3599.9, "59m59s"), (3720, "1h02m"), (36_061, "10h01m")])
def test_duration_is_written_as_hours_minutes_seconds(seconds, text):
    assert duration(seconds) == text


def test_card_rows_format_counts_losses_flags_and_missing_values():
    card = {"parameters": 3_253_825, "training_tokens": 11_750_400, "best_valid_loss": 1.499123456,
            "best_valid_ppl": 12345.678912, "dropout": 0.2, "tied": False, "training_seconds": 3720.5,
            "best_step": None, "cell": "gru", "corpora": ["a.txt", "b.txt"]}
    rows = dict(card_rows(card))
    assert rows == {"parameters": "3,253,825", "training tokens": "11,750,400", "best valid loss": "1.4991",
                    "best valid ppl": "12,345.6789", "dropout": "0.2", "tied": "no", "training time": "1h02m",
                    "best step": "-", "cell": "gru", "corpora": "a.txt, then b.txt"}


def test_lineage_text_follows_every_parent():
    parent = {"file": "b.safetensors", "sha256": "0123456789abcdef" * 4, "corpus": "b.txt",
              "parent": {"file": "a.safetensors", "sha256": "f" * 64, "corpus": "a.txt"}}
    assert lineage_text(parent) == ("b.safetensors (sha256 0123456789ab…, trained on b.txt) <- "
                                    "a.safetensors (sha256 ffffffffffff…, trained on a.txt)")
