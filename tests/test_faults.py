"""Faults that must not cost a run: SIGKILL, damaged or forged checkpoints, NaN and Inf,
and an output directory that cannot take the run (found before training starts)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from helpers import assert_one_line_error, run_main

from relational_rnn import preflight
from relational_rnn.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    remove_incomplete,
    save_checkpoint,
)
from relational_rnn.cli import main
from relational_rnn.config import config_from_dict
from relational_rnn.guard import NonFiniteWarning
from relational_rnn.train import Run

TINY = {
    "task": {"name": "nth-farthest", "options": {"num_vectors": 3, "dims": 2}},
    "model": {"mem_slots": 2, "slot_size": 8, "num_heads": 2, "hidden_size": 8, "head_hidden": [8]},
    "optim": {"lr": 3e-3, "clip_norm": 1.0},
    "batch_size": 8,
    "steps": 8,
    "eval_every": 4,
    "eval_size": 20,
    "log_every": 2,
    "checkpoint_every": 4,
    "keep_checkpoints": 3,
}
CLI_TINY = [
    *("--task", "nth-farthest", "--task-option", "num_vectors=3", "--task-option", "dims=2"),
    *("--mem-slots", "2", "--slot-size", "8", "--num-heads", "2", "--head-hidden", "8"),
    *("--batch-size", "8", "--eval-size", "20", "--lr", "3e-3", "--clip-norm", "1.0"),
]


def tiny(**changes):
    return config_from_dict({**TINY, **changes})


def train(config, run_dir):
    run = Run.create(config, run_dir)
    return run, run.train(progress=False)


def assert_same_weights(a: dict, b: dict) -> None:
    """Bitwise equal weights, optimizer state and data stream (torch's global RNG, which
    the models do not use, starts unseeded in a fresh process)."""
    assert a.keys() == b.keys()
    for name in a:
        if name != "rng.torch":
            assert torch.equal(a[name], b[name]), name


# --- SIGKILL ---------------------------------------------------------------------------


def start(*argv: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "relational_rnn", "train", *argv, "--threads", "1"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after_a_new_checkpoint(process: subprocess.Popen, out: Path, rng: random.Random) -> bool:
    """SIGKILL ``process`` at a random moment after its next checkpoint; whether it was
    still running then."""
    before = max(list_checkpoints(out), default=-1)
    deadline = time.monotonic() + 120
    while process.poll() is None and max(list_checkpoints(out), default=-1) <= before:
        assert time.monotonic() < deadline, "no new checkpoint in 120 s"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    process.send_signal(signal.SIGKILL)
    return process.wait() == -signal.SIGKILL


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path):
    flags = [*CLI_TINY, "--steps", "150", "--checkpoint-every", "3", "--eval-every", "10"]
    whole = tmp_path / "whole"
    assert main(["train", *flags, "--out", str(whole), "--threads", "1"]) == 0

    out, rng = tmp_path / "killed", random.Random()
    process = start(*flags, "--out", str(out))
    for _ in range(3):
        assert kill_after_a_new_checkpoint(process, out, rng), "the run ended before the kill"
        for step in list_checkpoints(out):  # every checkpoint on disk loads
            load_checkpoint(out, step)
        process = start("--resume", str(out))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    assert_same_weights(load_latest(out)[0], load_latest(whole)[0])
    assert json.loads((out / "summary.json").read_text())["steps"] == 150
    leftovers = {p.name for p in (out / "checkpoints").iterdir()}
    assert leftovers == {p.name for s in list_checkpoints(out) for p in checkpoint_paths(out, s)}


# --- damaged and forged checkpoints ------------------------------------------------------


def test_bit_flipped_and_truncated_checkpoints_are_named_and_skipped(tmp_path):
    train(tiny(), tmp_path / "whole")
    out = tmp_path / "run"
    train(tiny(), out)
    tensor_path, meta_path = checkpoint_paths(out, 8)
    data = bytearray(tensor_path.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"step-000000008\.safetensors is corrupt"):
        load_checkpoint(out, 8)
    tensor_path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(CheckpointError, match=r"step-000000008\.safetensors is corrupt"):
        load_checkpoint(out, 8)
    meta_path.write_text(meta_path.read_text()[:20])
    with pytest.raises(CheckpointError, match=r"step-000000008\.json is unreadable"):
        load_checkpoint(out, 8)

    with pytest.warns(UserWarning, match=r"step-000000008\.json is unreadable"):
        resumed = Run.resume(out)
    assert resumed.counters.step == 4
    resumed.train(progress=False)
    assert_same_weights(load_latest(out)[0], load_latest(tmp_path / "whole")[0])


class Payload:
    """Unpickling this would create a file: proof that a loader ran the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_forged_pickle_checkpoint_is_refused_without_running_it(tmp_path):
    train(tiny(steps=4), tmp_path / "run")
    tensor_path, meta_path = checkpoint_paths(tmp_path / "run", 4)
    marker = tmp_path / "pwned"
    forged = pickle.dumps({"model.x": Payload(marker)})
    tensor_path.write_bytes(forged)
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(forged).hexdigest()  # a matching checksum
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"step-000000004\.safetensors is not a safetensors"):
        load_checkpoint(tmp_path / "run", 4)
    assert not marker.exists()


def test_a_checkpoint_with_nan_is_never_written(tmp_path):
    tensors = {"model.w": torch.tensor([1.0, math.nan]), "rng": torch.zeros(3, dtype=torch.uint8)}
    with pytest.raises(CheckpointError, match="model.w"):
        save_checkpoint(tmp_path, 1, tensors, {}, keep=2)
    assert list_checkpoints(tmp_path) == []


# --- NaN and Inf --------------------------------------------------------------------------


def poison_batches(monkeypatch, run: Run, bad_calls: set[int] | None, value=math.nan):
    """Put ``value`` into the inputs of the batches drawn at ``bad_calls`` (1-based;
    None: every batch from the third on)."""
    task_class, calls = type(run.task), []
    sample = task_class.sample

    def poisoned(self, batch_size, generator):
        inputs, targets = sample(self, batch_size, generator)
        calls.append(batch_size)
        if batch_size == run.config.batch_size and (
            len(calls) in bad_calls if bad_calls is not None else len(calls) >= 3
        ):
            inputs = inputs.clone()
            inputs[0, 0, 0] = value
        return inputs, targets

    monkeypatch.setattr(task_class, "sample", poisoned)


def adam_steps(run_dir: Path) -> float:
    """How many times the optimizer moved the first parameter (Adam's step count)."""
    tensors, _ = load_latest(run_dir)
    return float(tensors["optimizer.0.step"])


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_nonfinite_batch_skips_the_step(tmp_path, monkeypatch, value):
    run = Run.create(tiny(), tmp_path / "run")
    poison_batches(monkeypatch, run, {3}, value)
    with pytest.warns(NonFiniteWarning, match="step 3: non-finite"):
        summary = run.train(progress=False)
    assert summary["status"] == "finished" and summary["steps"] == 8
    assert summary["skipped_steps"] == 1
    assert adam_steps(tmp_path / "run") == 7  # the optimizer moved 7 times in 8 steps


def test_a_nonfinite_gradient_skips_the_step(tmp_path):
    run = Run.create(tiny(), tmp_path / "run")
    calls = []

    def poison(grad):
        calls.append(1)
        return grad * math.nan if len(calls) == 5 else grad

    next(run.model.parameters()).register_hook(poison)
    with pytest.warns(NonFiniteWarning, match="step 5: non-finite"):
        summary = run.train(progress=False)
    assert summary["skipped_steps"] == 1
    assert adam_steps(tmp_path / "run") == 7


def test_repeated_nonfinite_steps_stop_the_run_cleanly(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    run = Run.create(tiny(max_nonfinite_steps=3, steps=20), out)
    poison_batches(monkeypatch, run, None)
    with pytest.warns(NonFiniteWarning):
        summary = run.train(progress=False)
    assert summary["status"] == "diverged"
    assert summary["steps"] == 5 and summary["skipped_steps"] == 3
    for step in list_checkpoints(out):
        tensors, _ = load_checkpoint(out, step)
        assert all(t.isfinite().all() for t in tensors.values() if t.is_floating_point())


def test_the_command_reports_a_diverged_run(tmp_path, monkeypatch, capsys):
    task_class = type(tiny().task.build())
    sample = task_class.sample

    def always_nan(self, batch_size, generator):
        inputs, targets = sample(self, batch_size, generator)
        return inputs * math.nan if batch_size == 8 else inputs, targets

    monkeypatch.setattr(task_class, "sample", always_nan)
    with pytest.warns(NonFiniteWarning):
        status, _, err = run_main(
            capsys, "train", *CLI_TINY, "--max-nonfinite-steps", "2", "--out", tmp_path / "run"
        )
    assert status == 1
    assert "2 non-finite steps in a row" in err


# --- up-front checks ------------------------------------------------------------------------


def test_an_unwritable_output_directory_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run_main(capsys, "train", *CLI_TINY, "--out", blocker / "run")
    assert_one_line_error(status, err, "cannot write to the run directory")
    if Path("/proc/self").is_dir():  # not even root may create directories in /proc
        status, _, err = run_main(capsys, "train", *CLI_TINY, "--out", "/proc/relational-rnn/run")
        assert_one_line_error(status, err, "cannot write to the run directory")


def test_too_little_disk_is_refused(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    status, _, err = run_main(capsys, "train", *CLI_TINY, "--out", tmp_path / "run")
    assert_one_line_error(status, err, "not enough disk space")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_directory_with_another_runs_files_is_refused(tmp_path, capsys):
    train(tiny(steps=2), tmp_path / "old")
    (tmp_path / "old" / "config.json").unlink()  # a half-deleted run
    status, _, err = run_main(capsys, "train", *CLI_TINY, "--out", tmp_path / "old")
    assert_one_line_error(status, err, "of another run")


def test_resuming_with_another_models_checkpoints_is_refused(tmp_path, capsys):
    train(tiny(steps=2), tmp_path / "rmc")
    train(tiny(steps=2, model={**TINY["model"], "kind": "lstm"}), tmp_path / "lstm")
    shutil.rmtree(tmp_path / "rmc" / "checkpoints")
    shutil.copytree(tmp_path / "lstm" / "checkpoints", tmp_path / "rmc" / "checkpoints")
    status, _, err = run_main(capsys, "train", "--resume", tmp_path / "rmc")
    assert_one_line_error(status, err, "belongs to another run", "lstm")
    status, _, err = run_main(capsys, "eval", tmp_path / "rmc")
    assert_one_line_error(status, err, "belongs to another run")


def test_checkpoint_size_estimate_covers_a_real_checkpoint(tmp_path):
    run, _ = train(tiny(steps=2), tmp_path / "run")
    tensor_path, _ = checkpoint_paths(tmp_path / "run", 2)
    assert os.path.getsize(tensor_path) <= preflight.checkpoint_bytes(run.model)


def test_a_kill_while_pruning_leaves_nothing_that_outlives_a_resume(tmp_path):
    """Pruning deletes an old checkpoint's JSON before its tensors; either half left
    alone by a kill is removed as incomplete."""
    weights = {"w": torch.ones(2)}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, weights, {}, keep=3)
    tensor_1, meta_1 = checkpoint_paths(tmp_path, 1)
    tensor_2, meta_2 = checkpoint_paths(tmp_path, 2)
    tensor_1.unlink()  # a JSON without tensors
    meta_2.unlink()  # tensors without a JSON
    assert set(remove_incomplete(tmp_path)) == {meta_1, tensor_2}
    assert list_checkpoints(tmp_path) == [3]
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {
        p.name for p in checkpoint_paths(tmp_path, 3)
    }
