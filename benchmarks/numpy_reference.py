"""Throughput of the NumPy reference next to the PyTorch modules, on the same CPU.

    python benchmarks/numpy_reference.py [--threads 1 2] [--repeats 10]

Measures forward and forward + backward (full BPTT, a gradient on every output) of the
gated-slot Relational RNN at B=64, T=50, input 32, hidden 64, 4 slots of 64, 2 heads,
at a larger configuration, and of the RMC-memory Relational RNN, in float32. Reports
batch x steps per second (the median of ``--repeats`` timed runs after one warm-up), prints
a Markdown table and writes it to benchmarks/results/numpy_reference.md.

NumPy's forward keeps what its backward needs; PyTorch's forward runs under
``torch.inference_mode``. Each thread count of ``--threads`` (BLAS and intra-op threads
for both libraries) is measured in its own process, because BLAS fixes its thread count
when NumPy is imported. The target is judged at the best of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TARGET = 150_000  # forward batch x steps per second at the base configuration, 2 cores


@dataclass(frozen=True)
class Config:
    name: str
    batch: int
    steps: int
    input_size: int
    hidden_size: int
    num_slots: int
    slot_size: int
    num_heads: int
    memory: str = "gated_slot"

    def arguments(self) -> dict:
        return dict(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_slots=self.num_slots,
            slot_size=self.slot_size,
            num_heads=self.num_heads,
            memory=self.memory,
        )


CONFIGS = [
    Config("base", 64, 50, 32, 64, 4, 64, 2),
    Config("large", 128, 100, 64, 128, 8, 128, 4),
    Config("base, RMC memory", 64, 50, 32, 64, 4, 64, 2, memory="rmc"),
]


def median_time(function, repeats: int) -> float:
    """The median of ``repeats`` timed calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config: Config, repeats: int) -> dict[str, tuple[float, float]]:
    """{implementation: (forward, forward + backward) in batch x steps per second}."""
    import numpy as np
    import torch

    from relational_rnn import RelationalRNN
    from relational_rnn.convert import reference_model, to_arrays
    from relational_rnn.reference import zeros_like

    torch.manual_seed(0)
    module = RelationalRNN(**config.arguments())
    model, params = reference_model(module), to_arrays(module)  # float32
    x = np.random.default_rng(0).standard_normal(
        (config.batch, config.steps, config.input_size), dtype=np.float32
    )
    x_torch = torch.from_numpy(x)
    d_output = np.ones((config.batch, config.steps, config.hidden_size), np.float32)

    def numpy_forward_backward() -> None:
        output, _, cache = model.forward(params, x)
        model.backward(params, cache, d_output, None, zeros_like(params))

    def torch_forward() -> None:
        with torch.inference_mode():
            module(x_torch)

    def torch_forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        output, _ = module(x_torch)
        output.sum().backward()

    work = config.batch * config.steps
    return {
        "NumPy reference": (
            work / median_time(lambda: model.forward(params, x), repeats),
            work / median_time(numpy_forward_backward, repeats),
        ),
        "PyTorch": (
            work / median_time(torch_forward, repeats),
            work / median_time(torch_forward_backward, repeats),
        ),
    }


def machine() -> str:
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical cores, load average {load:.1f} at the start; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"PyTorch {torch.__version__}; float32"
    )


def worker(threads: int, repeats: int) -> None:
    """Measure every configuration with ``threads`` threads; print one JSON row each."""
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)  # before NumPy is imported
    import torch

    torch.set_num_threads(threads)
    for index, config in enumerate(CONFIGS):
        for implementation, (forward, both) in measure(config, repeats).items():
            row = dict(config=index, implementation=implementation, forward=forward, both=both)
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).parent / "results" / "numpy_reference.md",
        help="where the Markdown table is written",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # a child's thread count
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.repeats)
        return

    lines = [
        "# NumPy reference throughput",
        "",
        f"`{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}` on {machine()}.",
        "Batch x steps per second, median of "
        f"{args.repeats} runs; forward + backward is full BPTT with a gradient on every output.",
        "",
        "| model (Relational RNN) | B | T | I | H | slots x size | heads | threads "
        "| implementation | forward | forward + backward |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    base_forward = {}  # threads -> NumPy forward at the base configuration
    for threads in dict.fromkeys(args.threads):  # each count once, in the order given
        child = subprocess.run(
            [sys.executable, __file__, "--worker", str(threads), "--repeats", str(args.repeats)],
            check=True,
            stdout=subprocess.PIPE,  # the rows; a failing child's traceback shows as it is
            text=True,
        )
        for row in map(json.loads, child.stdout.splitlines()):
            config = CONFIGS[row["config"]]
            if config.name == "base" and row["implementation"] == "NumPy reference":
                base_forward[threads] = row["forward"]
            lines.append(
                f"| {config.name} | {config.batch} | {config.steps} | {config.input_size} "
                f"| {config.hidden_size} | {config.num_slots} x {config.slot_size} "
                f"| {config.num_heads} | {threads} | {row['implementation']} "
                f"| {row['forward']:,.0f} | {row['both']:,.0f} |"
            )
            print(lines[-1], flush=True)
    best = max(base_forward, key=base_forward.get)
    verdict = "met" if base_forward[best] >= TARGET else "NOT met"
    measured = ", ".join(f"{value:,.0f} at {t} thread(s)" for t, value in base_forward.items())
    lines += [
        "",
        f"Target: NumPy forward >= {TARGET:,} batch x steps/s at the base configuration on "
        f"2 cores: {verdict} at {best} thread(s) ({measured}).",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(lines[-1])
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
