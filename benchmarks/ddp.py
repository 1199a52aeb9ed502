"""DDP throughput of 1 and 2 processes on this machine, with the scaling efficiency.

Each configuration trains the RMC on the Nth-farthest task through
``torchrun --nproc_per_node=N -m relational_rnn train`` (gloo on CPU, nccl on GPU),
one torch thread per process, and reads the training throughput (samples per second
of training steps, evaluation excluded) from the run's ``summary.json``.

Two ways to scale: *strong* keeps the global batch (each of N processes takes 1/N of
it), *weak* keeps each process's batch (the global batch grows N times). Scaling
efficiency = throughput with N processes / (N x throughput with 1).

    python benchmarks/ddp.py [--steps 200] [--batch 64] [--repeats 2]

Prints a markdown table and writes it to ``benchmarks/results/ddp.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "ddp.md"
MODEL = [
    *("--task", "nth-farthest", "--task-option", "num_vectors=4", "--task-option", "dims=8"),
    *("--model", "rmc", "--mem-slots", "4", "--slot-size", "64", "--num-heads", "2"),
    *("--eval-size", "64", "--log-every", "50", "--threads", "1"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def throughput(processes: int, batch: int, steps: int) -> float:
    """Training samples per second of one torchrun launch."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [
            *(sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"),
            *(f"--master_port={free_port()}", "-m", "relational_rnn", "train", *MODEL),
            *("--batch-size", str(batch), "--steps", str(steps), "--eval-every", str(steps)),
            *("--checkpoint-every", str(steps), "--out", str(out)),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(command, check=True, capture_output=True, env=env)
        return json.loads((out / "summary.json").read_text())["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per launch")
    parser.add_argument("--batch", type=int, default=64, help="batch of one process")
    parser.add_argument("--repeats", type=int, default=2, help="launches per row (best kept)")
    args = parser.parse_args()

    rows = []
    base = max(throughput(1, args.batch, args.steps) for _ in range(args.repeats))
    rows.append(("1", "-", args.batch, args.batch, base, 1.0))
    for mode, batch in (("strong", args.batch), ("weak", 2 * args.batch)):
        rate = max(throughput(2, batch, args.steps) for _ in range(args.repeats))
        rows.append(("2", mode, batch, batch // 2, rate, rate / (2 * base)))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# DDP throughput (gloo on CPU)",
        "",
        f"RMC (4 slots x 64, 2 heads) on Nth-farthest (4 vectors of 8 dims), {args.steps} "
        f"steps per launch, best of {args.repeats}, one torch thread per process; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
        f"average {load:.1f} when it finished (a shared machine: timings are noisy).",
        "",
        "| processes | scaling | global batch | batch per process | samples/s | efficiency |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for processes, mode, batch, per, rate, efficiency in rows:
        lines.append(f"| {processes} | {mode} | {batch} | {per} | {rate:,.0f} | {efficiency:.0%} |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
