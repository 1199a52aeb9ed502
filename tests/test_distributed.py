"""Data-parallel training: 2 gloo processes on CPU through the command line.

The ranks are started with ``torch.multiprocessing.spawn`` and the environment that
torchrun sets, and each runs ``relational_rnn.cli.main``. Checks: the weights equal one
process trained on the two ranks' batches concatenated, evaluation is reduced over
the ranks, only rank 0 writes files, and a resumed DDP run is bitwise an
uninterrupted one.

The equality with one process is checked on the LSTM: in the attention models some
gradients are zero in exact arithmetic (softmax ignores a shift of all keys, so the
key biases get none), and Adam turns their rounding noise, which differs between one
process and two, into full learning-rate steps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from relational_rnn.checkpoint import (
    checkpoint_paths,
    list_checkpoints,
    load_checkpoint,
    load_latest,
)
from relational_rnn.cli import main
from relational_rnn.config import ConfigError, config_from_dict
from relational_rnn.distributed import World, world_from_env
from relational_rnn.train import (
    Run,
    build_model,
    evaluate,
    generator,
    learning_rate,
    model_weights,
    read_config,
    read_metrics,
)

RANKS = 2
STEPS = 6
ARGS = [
    *("--model", "lstm", "--hidden-size", "8"),
    *("--task", "nth-farthest", "--task-option", "num_vectors=3", "--task-option", "dims=2"),
    *("--mem-slots", "2", "--slot-size", "8", "--num-heads", "2", "--head-hidden", "8"),
    *("--batch-size", "8", "--eval-size", "30", "--eval-every", "3", "--log-every", "1"),
    *("--lr", "3e-3", "--schedule", "cosine", "--clip-norm", "1.0", "--checkpoint-every", "2"),
    *("--keep-checkpoints", "10", "--threads", "1"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_main(rank: int, argv: list[str], port: int, records: str) -> None:
    """One rank: torchrun's environment, a record of every file it writes, then the CLI."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(RANKS),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    written: list[str] = []
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def audit(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if (mode is not None and set(str(mode)) & set("wax+")) or (
                mode is None and isinstance(flags, int) and flags & writing
            ):
                written.append(str(path))
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.unlink"):
            written.append(str(args[0]))

    sys.addaudithook(audit)
    status = main(argv)
    record = json.dumps({"status": status, "written": written})
    Path(records, f"rank{rank}.json").write_text(record)


def train_ddp(tmp_path: Path, name: str, *argv: str) -> list[dict]:
    """Run ``relational-rnn train ARGV`` on 2 ranks; each rank's status and written paths."""
    records = tmp_path / f"{name}-records"
    records.mkdir()
    mp.spawn(rank_main, args=(list(argv), free_port(), str(records)), nprocs=RANKS, join=True)
    return [json.loads((records / f"rank{r}.json").read_text()) for r in range(RANKS)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A 2-rank run of STEPS steps."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    out = tmp_path / "run"
    ranks = train_ddp(tmp_path, "run", "train", *ARGS, "--steps", str(STEPS), "--out", str(out))
    return out, ranks


def test_two_ranks_equal_one_process_on_the_concatenated_batches(ddp_run):
    out, ranks = ddp_run
    assert [r["status"] for r in ranks] == [0, 0]
    config = read_config(out)
    task = config.task.build()
    model = build_model(config, task)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    streams = [generator(config.seed, World(r, RANKS).stream("train")) for r in range(RANKS)]
    shard = config.batch_size // RANKS
    for step in range(STEPS):
        batches = [task.sample(shard, stream) for stream in streams]
        inputs = torch.cat([inputs for inputs, _ in batches])  # (B, T, I), rank 0's first
        targets = torch.cat([targets for _, targets in batches])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config.optim, step, step / STEPS)
        optimizer.zero_grad()
        task.loss(model(inputs), targets).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip_norm)
        optimizer.step()

    tensors, meta = load_latest(out)
    assert meta["step"] == STEPS
    for name, value in model.state_dict().items():
        torch.testing.assert_close(model_weights(tensors)[name], value, atol=1e-6, rtol=0)

    # the held-out metrics logged by rank 0 are those of the whole held-out set
    valid = task.sample(config.eval_size, generator(config.seed, "valid"))
    final = [r for r in read_metrics(out) if r["kind"] == "eval"][-1]
    expected = evaluate(model, task, *valid)
    assert final["step"] == STEPS
    for key, value in expected.items():
        assert final[key] == pytest.approx(value, abs=1e-5), key


def test_only_rank_0_writes_files(ddp_run):
    out, ranks = ddp_run
    inside = [[p for p in r["written"] if Path(p).resolve().is_relative_to(out)] for r in ranks]
    assert inside[0], "rank 0 wrote nothing into the run directory"
    assert inside[1] == []
    assert all(step % 2 == 0 for step in list_checkpoints(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == STEPS


def test_a_killed_ddp_run_resumes_bitwise(ddp_run, tmp_path):
    whole, _ = ddp_run
    out = tmp_path / "killed"
    shutil.copytree(whole, out)
    for step in list_checkpoints(out):
        if step > 2:  # as if killed after the checkpoint of step 2
            for path in checkpoint_paths(out, step):
                path.unlink()
    records = train_ddp(tmp_path, "resumed", "train", "--resume", str(out))
    assert [r["status"] for r in records] == [0, 0]
    resumed, _ = load_checkpoint(out, STEPS)
    uninterrupted, _ = load_checkpoint(whole, STEPS)
    assert resumed.keys() == uninterrupted.keys()
    for name in uninterrupted:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_world_from_torchrun_environment():
    assert world_from_env({}) == World()
    world = world_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.is_main, world.distributed) == (1, 2, False, True)
    assert world.stream("train") == "train.rank1" and World().stream("train") == "train"
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        world_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_batch_that_the_ranks_cannot_share_is_refused(tmp_path):
    config = config_from_dict({"batch_size": 7})
    with pytest.raises(ConfigError, match=r"batch_size \(7\) must be a multiple of the number"):
        Run(config, tmp_path / "run", World(0, RANKS))  # checked before any collective
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_torchrun_launches_the_command(tmp_path):
    out = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"),
        *(f"--master_port={free_port()}", "-m", "relational_rnn", "train", *ARGS),
        *("--steps", "2", "--out", str(out)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
