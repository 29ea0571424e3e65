"""Faults a user can provoke from the command line: outputs that are not regular files, two runs on one
output, stale and foreign training states, diverged models, out-of-range seeds."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charlm.io.checkpoint import load_model
from charlm.cli.app import app
from charlm.io.tensorfile import load_tensors

from conftest import TINY
from vocabulary import build_tokenizer


def run(args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def cli(*args):
    return [sys.executable, "-m", "charlm", *map(str, args)]


def one_line_error(result, code: int, *words: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for w in words:
        assert w.lower() in line.lower(), (w, line)
    return line


# ---- -o/--output: what it points at ------------------------------------------------------
def _make_special(path: Path, kind: str):
    """Create a special file at path; returns an object to keep alive (a bound socket)."""
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "character device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
        except PermissionError:
            pytest.skip("creating a device file needs privileges")
    return None


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket", "character device"])
def test_output_that_is_not_a_regular_file_is_refused_before_the_corpus_is_read(cwd, kind):
    out = cwd / "out.safetensors"
    keep = _make_special(out, kind)
    before = os.lstat(out)
    # The corpus does not exist: the output is checked first, so its error is the one shown.
    line = one_line_error(run(["train", "missing.txt", *TINY, "--steps", "2", "-o", out]), 2,
                          str(out), kind.split()[0])
    assert "missing.txt" not in line
    after = os.lstat(out)
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    # Nothing was written beside it (no metrics file, no lock file).
    assert sorted(os.listdir(cwd)) == ["out.safetensors"]
    if keep is not None:
        keep.close()


def test_output_directory_leaves_nothing_behind(corpus):
    (corpus.parent / "outdir").mkdir()
    one_line_error(run(["train", corpus, *TINY, "--steps", "2", "-o", "outdir"]), 2,
                   "outdir is a directory", "outdir/charlm.safetensors")
    assert sorted(os.listdir(corpus.parent)) == ["corpus.txt", "outdir"]
    assert os.listdir(corpus.parent / "outdir") == []


def test_a_sidecar_that_is_not_a_regular_file_is_refused(corpus):
    keep = _make_special(corpus.parent / "m.metrics.jsonl", "socket")
    one_line_error(run(["train", corpus, *TINY, "--steps", "2", "-o", "m.safetensors"]), 2,
                   "m.metrics.jsonl", "socket")
    assert not (corpus.parent / "m.safetensors").exists()
    keep.close()


def test_output_in_a_missing_directory_is_a_usage_error_naming_it(corpus):
    one_line_error(run(["train", corpus, *TINY, "--steps", "2", "-o", "nodir/m.safetensors"]), 2,
                   "nodir", "does not exist")


def test_a_symlinked_output_writes_its_target_and_stays_a_link(corpus):
    target_dir = corpus.parent / "models"
    target_dir.mkdir()
    link = corpus.parent / "latest.safetensors"
    link.symlink_to(target_dir / "run1.safetensors")  # dangling: the target is created
    result = run(["train", corpus, *TINY, "--steps", "3", "-o", link])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target_dir / "run1.safetensors")
    load_model(target_dir / "run1.safetensors")
    # The sidecars go beside the target, where --resume through the link finds them.
    assert sorted(os.listdir(target_dir)) == ["run1.metrics.jsonl", "run1.safetensors",
                                              "run1.state.safetensors"]
    resumed = run(["train", corpus, "--resume", "--steps", "4", "-o", link])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 3" in resumed.stderr


def test_a_symlink_to_a_device_is_refused(corpus):
    link = corpus.parent / "null.safetensors"
    link.symlink_to(os.devnull)
    one_line_error(run(["train", corpus, *TINY, "--steps", "2", "-o", link]), 2, "character device")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


# ---- one run per output --------------------------------------------------------------------
def _start_long_run(cwd: Path, corpus: Path, *extra) -> subprocess.Popen:
    proc = subprocess.Popen(cli("train", corpus, *TINY, "--steps", "1000000", "-o", "m.safetensors", *extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, text=True)
    assert proc.stderr.readline().startswith("training "), "the run did not start"
    return proc


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(corpus):
    cwd = corpus.parent
    holder = _start_long_run(cwd, corpus)
    try:
        second = run(["train", corpus, *TINY, "--steps", "2", "-o", "m.safetensors"])
        one_line_error(second, 1, f"PID {holder.pid}", "m.safetensors", "another -o")
        resumed = run(["train", corpus, "--resume", "-o", "m.safetensors"])
        one_line_error(resumed, 1, f"PID {holder.pid}")
        # Another output in the same directory is free.
        assert run(["train", corpus, *TINY, "--steps", "2", "-o", "other.safetensors"]).exit_code == 0
    finally:
        holder.kill()
        holder.wait(timeout=60)
        holder.stderr.close()
    # The killed run's lock file stays behind; the next run takes it over, and removes it.
    assert (cwd / "m.lock").exists()
    after = run(["train", corpus, *TINY, "--steps", "2", "-o", "m.safetensors"])
    assert after.exit_code == 0, after.output
    assert not (cwd / "m.lock").exists()


# ---- a new run does not inherit an old run's state; --resume checks the run -----------------
def _saved_step(path: Path) -> int:
    return json.loads(load_tensors(str(path))[1]["charlm"])["train_state"]["progress"]["step"]


def test_a_new_run_killed_before_its_first_validation_leaves_no_old_state_to_resume(corpus):
    cwd = corpus.parent
    assert run(["train", corpus, *TINY, "--steps", "5", "-o", "m.safetensors"]).exit_code == 0
    assert _saved_step(cwd / "m.state.safetensors") == 5
    # A new run with other options, killed before it validates (and so before it saves)
    new = _start_long_run(cwd, corpus, "--hidden", "24", "--valid-every", "1000000")
    new.send_signal(signal.SIGKILL)
    new.wait(timeout=60)
    new.stderr.close()
    # ... took the old run's state away: --resume cannot continue the old run in its name.
    one_line_error(run(["train", corpus, "--resume", "-o", "m.safetensors"]), 1,
                   "no training state", "without --resume")


def test_resume_on_another_corpus_is_refused_naming_both(corpus, corpus_text):
    cwd = corpus.parent
    assert run(["train", corpus, *TINY, "--steps", "3"]).exit_code == 0
    (cwd / "other.txt").write_text(corpus_text[::-1], encoding="utf-8")  # same size, other text
    line = one_line_error(run(["train", "other.txt", "--resume", "--steps", "5"]), 1,
                          "corpus", "corpus.txt", "other.txt", "same corpus")
    assert f"{len(corpus_text.encode()):,} bytes" in line
    # A copy of the corpus under another name, touched, is the same corpus.
    (cwd / "copy.txt").write_text(corpus_text, encoding="utf-8")
    resumed = run(["train", "copy.txt", "--resume", "--steps", "5"])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 3" in resumed.stderr


def test_resume_with_another_validation_text_is_refused(corpus, corpus_text):
    cwd = corpus.parent
    (cwd / "valid.txt").write_text(corpus_text[:3000], encoding="utf-8")
    assert run(["train", corpus, *TINY, "--steps", "3", "--valid", "valid.txt"]).exit_code == 0
    one_line_error(run(["train", corpus, "--resume", "--steps", "5"]), 1,
                   "validation text", "valid.txt", "given: none")
    ok = run(["train", corpus, "--resume", "--steps", "5", "--valid", "valid.txt"])
    assert ok.exit_code == 0, ok.output


# ---- numbers from a model: never a traceback ------------------------------------------------
@pytest.fixture
def overflowing_model(cwd, tiny_model):
    """A model file written by charlm whose perplexity exceeds a double: the decoder scaled up,
    as after a divergence (lr 1e4, no clipping) that stayed finite."""
    from charlm.io.checkpoint import save_model

    model, tokenizer, header = load_model(tiny_model)
    model.params["decoder.weight"] *= 1e5
    path = cwd / "diverged.safetensors"
    summary = {**header["summary"], "best_valid_loss": 903.9}  # a validation loss of such a run
    save_model(path, model, tokenizer, {"train": header["train"], "summary": summary})
    return path


def test_score_of_a_model_whose_perplexity_overflows_prints_inf(overflowing_model):
    tsv = run(["score", "-m", overflowing_model, "the quick fox", "rain"])
    assert tsv.exit_code == 0, tsv.output
    assert "Traceback" not in tsv.output
    rows = [line.split("\t") for line in tsv.stdout.splitlines()]
    assert [r[3] for r in rows] == ["inf", "inf"]
    assert all(float(r[0]) < -1000 for r in rows)  # finite log-probabilities
    assert "ppl inf" in tsv.stderr
    as_json = run(["score", "-m", overflowing_model, "--json", "the quick fox"])
    assert as_json.exit_code == 0, as_json.output
    row = json.loads(as_json.stdout)  # strict JSON: no Infinity
    assert row["ppl"] is None and row["logprob"] < -1000
    document = run(["score", "-m", overflowing_model, "--file", "-"], input="the quick fox\n")
    assert document.exit_code == 0 and document.stdout.split("\t")[3].strip() == "inf"


def test_info_and_training_logs_show_an_overflowing_perplexity_as_inf(overflowing_model):
    from charlm.metrics import perplexity

    table = run(["info", overflowing_model])
    assert table.exit_code == 0 and "inf" in table.stdout.split("best valid ppl")[1].splitlines()[0]
    card = json.loads(run(["info", overflowing_model, "--json"]).stdout)  # strict JSON
    assert card["best_valid_ppl"] is None and card["best_valid_loss"] == 903.9
    assert perplexity(903.9) == float("inf") and perplexity(2.0) == pytest.approx(np.exp(2.0))


# ---- --seed out of range --------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_seed_out_of_range_is_a_usage_error(corpus, tiny_model, seed):
    for args in (["train", corpus, *TINY, "--steps", "1", "--seed", seed],
                 ["sample", "-m", tiny_model, "--length", "5", "--seed", seed]):
        result = run(args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "--seed" in result.output
    assert not (corpus.parent / "charlm.safetensors").exists()


def test_largest_seed_is_accepted(corpus, tiny_model):
    result = run(["sample", "-m", tiny_model, "--length", "5", "--seed", str(2**63 - 1)])
    assert result.exit_code == 0, result.output


# ---- score: empty input, word-level characters ----------------------------------------------
def test_empty_input_scores_nothing_and_is_not_an_error(cwd, tiny_model):
    (cwd / "empty.txt").write_bytes(b"")
    for args, stdin in ((["score"], ""), (["score", "--file", "empty.txt"], None), (["score", "-"], "")):
        result = run([*args, "-m", tiny_model], input=stdin)
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout == ""
        assert result.stderr.strip() == "0 lines, 0 tokens: nothing to score"
    # A document of blank lines is text: it is scored.
    (cwd / "blank.txt").write_text("\n\n")
    blank = run(["score", "--file", "blank.txt", "-m", tiny_model])
    assert blank.exit_code == 0 and blank.stdout.split("\t")[1] == "2"


def test_word_level_bits_per_char_count_the_characters_of_unknown_words():
    from charlm.config import ModelConfig, TokenizerConfig
    from charlm.nn.model import Model
    from charlm.score import Totals, score_text

    tokenizer = build_tokenizer("the cat sat\non the mat\n", TokenizerConfig(level="word"))
    model = Model.create(ModelConfig(vocab_size=tokenizer.vocab_size, hidden=8, embed=4, layers=1))
    unknown = score_text(model, tokenizer, "the  hippopotamus sat")
    assert unknown.unk == 1
    assert unknown.chars == len("the hippopotamus sat\n")  # not len("the <unk> sat\n")
    document = score_text(model, tokenizer, "the cat\non zebras\n", as_line=False)
    assert document.chars == len("the cat\non zebras\n")
    totals = Totals()
    totals.add(unknown)
    assert totals.bits_per_char == pytest.approx(-unknown.logprob / np.log(2) / 21)


# ---- validation: capped, with progress, interruptible ----------------------------------------
def _api_trainer(corpus, out: Path, steps: int, **cfg):
    from test_resume import small_trainer

    return small_trainer(corpus, out, steps, valid_frac=0.3, **cfg)


def test_validation_scores_the_first_valid_tokens_with_progress(corpus_file, tmp_path):
    from charlm.train import events
    from charlm.train.evaluate import evaluate_in_windows

    trainer = _api_trainer(corpus_file, tmp_path / "m.safetensors", 5, valid_tokens=500)
    whole = _api_trainer(corpus_file, tmp_path / "n.safetensors", 5, valid_tokens=0).valid_ids
    assert len(whole) > 5000
    assert np.array_equal(trainer.valid_ids, whole[:500])  # the first tokens: comparable runs
    seen = list(trainer.run())
    assert seen[0].valid_tokens == 500
    progress = [e for e in seen if isinstance(e, events.Validating)]
    done = [e.tokens_done for e in progress]
    assert len(done) > 1 and done == sorted(done) and {e.tokens_total for e in progress} == {500}
    [validated] = [e for e in seen if isinstance(e, events.Validated)]
    assert seen.index(progress[-1]) < seen.index(validated)
    *_, (_, whole_loss) = evaluate_in_windows(trainer.model, whole[:500], 4, 16)
    assert validated.loss == pytest.approx(whole_loss)


def test_valid_tokens_option(corpus):
    result = run(["train", corpus, *TINY, "--steps", "2", "--valid-tokens", "300"])
    assert result.exit_code == 0, result.output
    assert "validating on 300" in result.stderr
    assert run(["train", corpus, *TINY, "--steps", "2", "--valid-tokens", "-1"]).exit_code == 2
    one_line_error(run(["train", corpus, *TINY, "--steps", "2", "--valid-tokens", "1"]), 2, "--valid-tokens")


def test_a_long_validation_shows_progress_in_plain_logs(monkeypatch):
    import io

    from rich.console import Console

    from charlm.train import events
    from charlm.cli import render

    monkeypatch.setattr(render, "PLAIN_LOG_SECONDS", 0.0)
    out = io.StringIO()
    view = render.TrainingView(Console(file=out, force_terminal=False, width=200))
    view.handle(events.Validating(step=20, tokens_done=5_000_000, tokens_total=20_000_000))
    assert out.getvalue().strip() == "validating step 20: 5,000,000 of 20,000,000 tokens (25%)"


def test_a_stop_during_a_validation_ends_at_once_and_resumes_exactly(corpus_file, tmp_path):
    from charlm import api
    from charlm.train import events
    from test_resume import assert_same_state

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for _ in _api_trainer(corpus_file, a / "m.safetensors", 12).run():
        pass

    trainer = _api_trainer(corpus_file, b / "m.safetensors", 12)
    seen = []
    for event in trainer.run():
        seen.append(event)
        if isinstance(event, events.Validating) and event.step == 10 and event.tokens_done == 64:
            trainer.request_stop("test")
    notices = [e.message for e in seen if isinstance(e, events.Notice)]
    assert notices == ["the validation of step 10 was interrupted; --resume runs it again"]
    # No validation after the interrupted one: the run ended at once, with its state saved.
    assert [e.step for e in seen if isinstance(e, events.Validated)] == [5]
    assert sum(isinstance(e, events.Validating) and e.step == 10 for e in seen) == 1
    assert isinstance(seen[-1], events.Finished) and seen[-1].steps == 10

    resumed = api.resume_training(str(corpus_file), output=str(b / "m.safetensors"))
    again = list(resumed.run())
    assert [e.step for e in again if isinstance(e, events.Validated)] == [10, 12]
    assert_same_state(a / "m.state.safetensors", b / "m.state.safetensors")


# ---- signals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_stops_at_once_with_its_exit_status_and_says_so(tmp_path, signum, code):
    from conftest import make_corpus

    # A validation text of ~1M tokens scored whole: the closing validation that the first
    # signal starts lasts seconds, and the second signal arrives during it.
    (tmp_path / "big.txt").write_text(make_corpus(2_000_000), encoding="utf-8")
    proc = subprocess.Popen(cli("train", "big.txt", *TINY, "--steps", "1000000", "--valid-every", "1000000",
                                "--valid-frac", "0.5", "--valid-tokens", "0", "-o", "m.safetensors"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, text=True)
    assert proc.stderr.readline().startswith("training ")
    try:
        proc.send_signal(signum)
        time.sleep(0.3)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == f"stopped at once by a second {name}: the run had saved nothing yet"
    assert not (tmp_path / "m.lock").exists()


# ---- messages and files after failures --------------------------------------------------------
def test_an_invalid_model_config_is_named_field_by_field(cwd, tiny_model):
    from charlm.io.tensorfile import save_tensors

    tensors, meta = load_tensors(str(tiny_model))
    header = json.loads(meta["charlm"])
    header["model"]["hidden"] = -3
    save_tensors(str(cwd / "bad.safetensors"), tensors, {"charlm": json.dumps(header)})
    line = one_line_error(run(["info", cwd / "bad.safetensors"]), 1,
                          "hidden is -3: it must be at least 1", "retrain")
    assert "{" not in line


def test_repeated_rollbacks_at_one_step_name_it_once(corpus_file, tmp_path):
    from charlm.train import events
    from test_divergence import make_trainer, poison_steps

    trainer = make_trainer(corpus_file, tmp_path / "m.safetensors", steps=12, valid_every=5)
    poison_steps(trainer, {8, 9, 10})  # three failures in a row: the step count stays at 7
    notices = [e.message for e in trainer.run() if isinstance(e, events.Notice)]
    assert len(notices) == 3
    assert sum(n.count("step 8") for n in notices) == 1
    assert notices[0].startswith("training diverged at step 8: the loss is nan: rolled back to the weights of step 5")
    assert notices[1].startswith("training diverged again, on the next batch: rolled back again")
    assert "lowered to 0.00025" in notices[2]


def test_a_metrics_write_error_names_the_model(corpus_file, tmp_path):
    from charlm.errors import CharlmError

    trainer = _api_trainer(corpus_file, tmp_path / "m.safetensors", 5)
    trainer.metrics_path = str(tmp_path / "gone" / "m.metrics.jsonl")  # its directory is gone
    with pytest.raises(CharlmError, match=r"m\.metrics\.jsonl beside the model .*m\.safetensors"):
        for _ in trainer.run():
            pass
    assert not (tmp_path / "m.lock").exists()


def test_resume_drops_the_metrics_rows_written_after_the_saved_state(corpus):
    cwd = corpus.parent
    assert run(["train", corpus, *TINY, "--steps", "10", "--valid-every", "5"]).exit_code == 0
    metrics = cwd / "charlm.metrics.jsonl"
    before = metrics.read_text()
    # A run killed after its last save wrote rows for steps the saved state has not reached,
    # and a row cut short.
    with open(metrics, "a") as f:
        f.write(json.dumps({"event": "step", "step": 20, "loss": 9.0}) + "\n")
        f.write('{"event": "validated", "st')
    resumed = run(["train", corpus, "--resume", "--steps", "20"])
    assert resumed.exit_code == 0, resumed.output
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert metrics.read_text().startswith(before)
    assert [r["step"] for r in rows if r["event"] == "step"] == [10, 20]
    assert [r["step"] for r in rows if r["event"] == "validated"] == [5, 10, 15, 20]
    assert all(r.get("loss") != 9.0 for r in rows)


def test_run_lock_holds_the_pid_and_goes_away_on_release(tmp_path):
    from charlm.io.outputs import RunLock, RunLockedError

    path = str(tmp_path / "m.lock")
    lock = RunLock.acquire(path, "m.safetensors")
    assert Path(path).read_text() == f"{os.getpid()}\n"
    with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
        RunLock.acquire(path, "m.safetensors")
    lock.release()
    lock.release()  # once only
    assert not Path(path).exists()
    RunLock.acquire(path, "m.safetensors").release()
