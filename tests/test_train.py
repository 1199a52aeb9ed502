"""The training loop: files of a run, bitwise resume, checkpoints, schedules, evaluation."""

import json
import math
import os
import shutil
import signal

import pytest
import torch
from helpers import linear_output_dtypes
from safetensors import safe_open

from relational_rnn.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    list_checkpoints,
    load_checkpoint,
    load_latest,
)
from relational_rnn.config import ConfigError, OptimConfig, config_from_dict
from relational_rnn.train import Run, evaluate_run, learning_rate, read_config, read_metrics

TINY = {
    "task": {"name": "nth-farthest", "options": {"num_vectors": 3, "dims": 2}},
    "model": {"mem_slots": 2, "slot_size": 8, "num_heads": 2, "hidden_size": 8, "head_hidden": [8]},
    "optim": {"lr": 3e-3, "schedule": "cosine", "warmup_steps": 2, "clip_norm": 1.0},
    "batch_size": 8,
    "steps": 12,
    "eval_every": 4,
    "eval_size": 40,
    "log_every": 2,
    "checkpoint_every": 4,
    "keep_checkpoints": 5,
}


def tiny(**changes):
    return config_from_dict({**TINY, **changes})


def tiny_model(kind: str):
    return {**TINY["model"], "kind": kind}


def train(config, run_dir):
    run = Run.create(config, run_dir)
    return run, run.train(progress=False)


def assert_same_state(a: Run, b: Run) -> None:
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    state_a, state_b = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for index in state_a:
        for key in state_a[index]:
            assert torch.equal(state_a[index][key], state_b[index][key]), (index, key)
    assert torch.equal(a.data.get_state(), b.data.get_state())


def test_a_short_run_writes_every_file(tmp_path):
    run, summary = train(tiny(), tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoints", "config.json", "metrics.jsonl", "summary.json"]
    assert read_config(tmp_path / "run") == run.config
    records = read_metrics(tmp_path / "run")
    assert [r["kind"] for r in records[:2]] == ["baseline", "eval"]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 4, 8, 12]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8, 10, 12]
    for record in records:
        if record["kind"] == "train":
            assert {"loss", "accuracy", "samples_per_s", "lr", "elapsed_s"} <= set(record)
    assert list_checkpoints(tmp_path / "run") == [0, 4, 8, 12]
    assert summary["status"] == "finished" and summary["steps"] == 12
    assert summary["parameters"] == run.parameters
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())


def test_checkpoints_are_safetensors_with_the_optimizer_state(tmp_path):
    run, _ = train(tiny(), tmp_path / "run")
    tensor_path, meta_path = checkpoint_paths(tmp_path / "run", 12)
    header = int.from_bytes(tensor_path.read_bytes()[:8], "little")
    assert tensor_path.read_bytes()[8 : 8 + header].startswith(b"{")  # not a pickle
    with safe_open(tensor_path, "pt") as file:
        names = set(file.keys())
    assert {"rng.train", "rng.torch"} <= names
    assert sum(n.startswith("optimizer.") and n.endswith(".exp_avg_sq") for n in names) == len(
        list(run.model.parameters())
    )
    meta = json.loads(meta_path.read_text())
    assert meta["step"] == 12 and meta["counters"]["samples"] == 12 * 8
    assert meta["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]


@pytest.mark.parametrize("kind", ["rmc", "lstm", "relational-rnn"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, kind, monkeypatch):
    config = tiny(model=tiny_model(kind), steps=10)
    whole, _ = train(config, tmp_path / "whole")

    run = Run.create(config, tmp_path / "parts")
    task_class = type(run.task)
    sample, calls = task_class.sample, []

    def interrupting_sample(self, batch_size, generator):
        calls.append(batch_size)
        if len(calls) == 6:  # Ctrl-C while step 6 runs; the step completes first
            os.kill(os.getpid(), signal.SIGINT)
        return sample(self, batch_size, generator)

    monkeypatch.setattr(task_class, "sample", interrupting_sample)
    summary = run.train(progress=False)
    assert summary["status"] == "interrupted" and summary["steps"] == 6
    assert list_checkpoints(tmp_path / "parts")[-1] == 6

    monkeypatch.undo()
    resumed = Run.resume(tmp_path / "parts")
    assert resumed.counters.step == 6
    assert resumed.train(progress=False)["status"] == "finished"
    assert_same_state(whole, resumed)


@pytest.mark.parametrize("last_checkpoint", [0, 8])
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, last_checkpoint):
    whole, _ = train(tiny(), tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "killed")
    for step in list_checkpoints(tmp_path / "killed"):
        if step > last_checkpoint:  # killed after the last_checkpoint one was written
            for path in checkpoint_paths(tmp_path / "killed", step):
                path.unlink()
    resumed = Run.resume(tmp_path / "killed")
    assert resumed.counters.step == last_checkpoint
    assert max(r["step"] for r in read_metrics(tmp_path / "killed")) == last_checkpoint
    resumed.train(progress=False)
    assert_same_state(whole, resumed)
    assert read_metrics(tmp_path / "killed")[-1]["step"] == 12


def test_resume_can_extend_the_run_but_not_change_it(tmp_path):
    train(tiny(optim={"lr": 1e-3}), tmp_path / "run")
    run = Run.resume(tmp_path / "run", {"steps": 14})
    assert run.train(progress=False)["steps"] == 14
    with pytest.raises(ConfigError, match="cannot change batch_size"):
        Run.resume(tmp_path / "run", {"batch_size": 4})


def test_a_corrupt_checkpoint_is_named_and_skipped(tmp_path):
    train(tiny(), tmp_path / "run")
    tensor_path, _ = checkpoint_paths(tmp_path / "run", 12)
    data = bytearray(tensor_path.read_bytes())
    data[-3] ^= 0xFF
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="step-000000012.safetensors is corrupt"):
        load_checkpoint(tmp_path / "run", 12)
    with pytest.warns(UserWarning, match="trying an older checkpoint"):
        _, meta = load_latest(tmp_path / "run")
    assert meta["step"] == 8
    tensor_path.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "run", 12)


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    train(tiny(keep_checkpoints=2), tmp_path / "run")
    assert list_checkpoints(tmp_path / "run") == [8, 12]
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))


def test_a_run_directory_is_not_overwritten(tmp_path):
    train(tiny(steps=2), tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run"):
        Run.create(tiny(), tmp_path / "run")


def test_time_budget_ends_the_run(tmp_path):
    _, summary = train(tiny(steps=None, time_budget=0.5, eval_every=1000), tmp_path / "run")
    assert summary["status"] == "finished" and summary["wall_time_s"] >= 0.5
    assert summary["steps"] >= 1


def test_checkpoints_count_the_evaluation_in_the_elapsed_time(tmp_path):
    run, summary = train(tiny(steps=4, eval_every=4, checkpoint_every=4), tmp_path / "run")
    last_eval = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "eval"][-1]
    _, meta = load_latest(tmp_path / "run")
    assert last_eval["step"] == meta["step"] == 4
    # The clock is read again after the evaluation, so a resumed run's budget counts it.
    assert meta["counters"]["elapsed_s"] > last_eval["elapsed_s"]
    assert summary["wall_time_s"] == meta["counters"]["elapsed_s"]


def test_learning_rate_schedules():
    constant = OptimConfig(lr=1.0)
    assert learning_rate(constant, 5, 0.5) == 1.0
    warm = OptimConfig(lr=1.0, warmup_steps=4, schedule="linear")
    assert [learning_rate(warm, s, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(warm, 10, 0.75) == 0.25
    cosine = OptimConfig(lr=2.0, schedule="cosine")
    assert learning_rate(cosine, 9, 0.5) == pytest.approx(1.0)
    assert learning_rate(cosine, 9, 1.0) == pytest.approx(0.0)


def test_evaluate_run_uses_a_fresh_seeded_test_set(tmp_path):
    train(tiny(), tmp_path / "run")
    first = evaluate_run(tmp_path / "run", seed=3, size=50)
    assert first == evaluate_run(tmp_path / "run", seed=3, size=50)
    assert first["step"] == 12 and first["size"] == 50
    assert set(first["metrics"]) == {"loss", "accuracy"}
    assert first != evaluate_run(tmp_path / "run", seed=4, size=50)


def test_sequence_task_trains_and_reports_sequence_accuracy(tmp_path):
    config = tiny(task={"name": "sorting", "options": {"length": 3, "num_values": 4}}, steps=2)
    _, summary = train(config, tmp_path / "run")
    assert "sequence_accuracy" in summary["final"]


def test_seed_sets_the_initial_weights(tmp_path):
    a = Run(tiny(seed=1), tmp_path / "a")
    b = Run(tiny(seed=1), tmp_path / "b")
    c = Run(tiny(seed=2), tmp_path / "c")
    weights = [next(r.model.parameters()) for r in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


@pytest.mark.parametrize("kind", ["rmc", "lstm", "relational-rnn"])
@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)]
)
def test_precision_sets_the_training_forward_only(tmp_path, kind, precision, dtype):
    config = tiny(model=tiny_model(kind), optim={**TINY["optim"], "precision": precision})
    run = Run.create(config, tmp_path / "run")
    dtypes = linear_output_dtypes(run.model)
    loss, _, taken = run.train_step()
    assert dtypes and set(dtypes) == {dtype}
    assert taken and math.isfinite(loss)
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in run.model.parameters())
    dtypes.clear()
    run.evaluate()
    assert dtypes and set(dtypes) == {torch.float32}


def test_bf16_training_follows_fp32_closely_and_resumes_bitwise(tmp_path):
    optim = {**TINY["optim"], "schedule": "constant"}  # the same rates when cut at step 4
    bf16 = tiny(steps=10, optim={**optim, "precision": "bf16"})
    whole, _ = train(bf16, tmp_path / "bf16")
    train(tiny(steps=10, optim=optim), tmp_path / "fp32")
    records = [read_metrics(tmp_path / name) for name in ("bf16", "fp32")]
    losses = [[r["loss"] for r in metrics if r["kind"] == "train"] for metrics in records]
    assert losses[0] != losses[1]  # autocast changed the arithmetic
    assert losses[0] == pytest.approx(losses[1], rel=0.05)
    # the step-0 evaluation, of the same initial weights, is float32 in both runs
    first_evals = [next(r for r in metrics if r["kind"] == "eval") for metrics in records]
    assert first_evals[0] == first_evals[1]

    config = config_from_dict({"steps": 4}, bf16)
    train(config, tmp_path / "parts")
    resumed = Run.resume(tmp_path / "parts", {"steps": 10})
    assert resumed.config.optim.precision == "bf16"
    resumed.train(progress=False)
    assert_same_state(whole, resumed)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision must be one of 'fp32', 'bf16'; got 'fp16'"):
        tiny(optim={"precision": "fp16"})
