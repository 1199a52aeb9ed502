"""Figures: learning curves of runs, of a comparison, and a memory's attention maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from .attention import attention_weights, split_heads
from .config import ConfigError
from .memory import RelationalMemoryCell
from .train import derive_seed, load_trained, read_config, read_metrics


def plot_runs(run_dirs: Sequence[Path], out: Path | None = None) -> Path:
    """Loss and accuracy against step (training and held-out) of each run; returns the PNG."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for index, run_dir in enumerate(run_dirs):
        read_config(run_dir)  # a clear error for a missing or foreign directory
        records = read_metrics(run_dir)
        color = f"C{index}"
        name = Path(run_dir).name
        for kind, style, width in (("train", "-", 0.8), ("eval", "-", 2.0)):
            points = [r for r in records if r["kind"] == kind]
            steps = [r["step"] for r in points]
            label = f"{name} {'held-out' if kind == 'eval' else 'train'}"
            alpha = 0.5 if kind == "train" else 1.0
            loss_axes.plot(
                steps,
                [r["loss"] for r in points],
                style,
                lw=width,
                color=color,
                alpha=alpha,
                label=label,
            )
            accuracy_axes.plot(
                steps,
                [r["accuracy"] for r in points],
                style,
                lw=width,
                color=color,
                alpha=alpha,
                label=label,
            )
        baseline = next((r for r in records if r["kind"] == "baseline"), None)
        if baseline is not None:
            accuracy_axes.axhline(
                baseline["accuracy"], ls="--", color=color, lw=1, label=f"{name} majority baseline"
            )
    loss_axes.set(xlabel="step", ylabel="loss (nats)", title="loss")
    accuracy_axes.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    accuracy_axes.legend(fontsize=7)
    out = Path(out) if out is not None else Path(run_dirs[0]) / "curves.png"
    figure.savefig(out, dpi=110)
    return out


def plot_comparison(runs: dict[tuple[str, int], Path], out: Path) -> Path:
    """Held-out accuracy against step: per model the mean over seeds and the min-max band."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    models = list(dict.fromkeys(model for model, _ in runs))
    for index, model in enumerate(models):
        curves = []
        for (name, _), run_dir in runs.items():
            if name == model:
                evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
                curves.append(evals)
        steps = [r["step"] for r in curves[0]]
        length = min(len(c) for c in curves)
        values = torch.tensor([[r["accuracy"] for r in c[:length]] for c in curves])  # (seeds, E)
        axes.plot(
            steps[:length],
            values.mean(0).tolist(),
            color=f"C{index}",
            lw=2,
            label=f"{model} (mean of {len(curves)})",
        )
        axes.fill_between(
            steps[:length],
            values.amin(0).tolist(),
            values.amax(0).tolist(),
            color=f"C{index}",
            alpha=0.2,
        )
    first = next(iter(runs.values()))
    baseline = next(r for r in read_metrics(first) if r["kind"] == "baseline")
    axes.axhline(baseline["accuracy"], ls="--", color="gray", label="majority baseline")
    task = read_config(first).task.build()
    partial = task.partial_solution
    if partial is not None:
        axes.axhline(partial[1], ls=":", color="black", label=f"partial solution: {partial[0]}")
    axes.set(
        xlabel="training step",
        ylabel="held-out accuracy",
        ylim=(0, 1),
        title=f"{task.describe()}: mean and min–max over seeds",
    )
    axes.legend()
    figure.savefig(out, dpi=110)
    return out


def default_steps(length: int, count: int = 8) -> list[int]:
    """Up to ``count`` time steps spread evenly over a sequence of ``length``."""
    return sorted(set(torch.linspace(0, length - 1, min(count, length)).round().long().tolist()))


def trace_memory(model: torch.nn.Module, inputs: Tensor) -> tuple[list[list[Tensor]], Tensor]:
    """Run a memory model on one example step by step.

    inputs (1, T, I) -> the attention weights of each step (a list per block of
    (h, N, N + 1), or (h, N, N) for the gated slot memory, which does not attend to
    its input) and the memories M_0..M_T (T + 1, N, S).
    """
    core = model.core
    if hasattr(core.cell, "lstm"):  # the Relational RNN: the LSTM's h_t is the memory's input
        memory_cell = core.cell.memory
        state = core.cell.initial_state(1)
        h, c, memory = state
        memory_inputs = []
        for t in range(inputs.shape[1]):
            h, c = core.cell.lstm(inputs[:, t], (h, c))  # (1, H) each
            memory_inputs.append(h)
    else:
        memory_cell = core.cell
        memory = memory_cell.initial_state(1)
        memory_inputs = [inputs[:, t] for t in range(inputs.shape[1])]
    weights, memories = [], [memory[0]]
    for x in memory_inputs:
        if isinstance(memory_cell, RelationalMemoryCell):
            blocks = memory_cell.attention_weights(x, memory)  # each (1, h, N + 1, N + 1)
            weights.append([w[0, :, : memory_cell.mem_slots] for w in blocks])  # (h, N, N + 1)
        else:
            mha = memory_cell.attention
            queries = split_heads(mha.query(memory), mha.num_heads)  # (1, h, N, d)
            keys = split_heads(mha.key(memory), mha.num_heads)  # (1, h, N, d)
            scale = (mha.size // mha.num_heads) ** -0.5
            weights.append([attention_weights(queries, keys, scale)[0]])  # (h, N, N)
        memory = memory_cell.step(memory_cell.project_input(x), memory)  # (1, N, S)
        memories.append(memory[0])
    return weights, torch.stack(memories)


@torch.no_grad()
def plot_attention(
    run_dir: Path, out: Path | None = None, seed: int = 0, steps: Sequence[int] | None = None
) -> list[Path]:
    """PNGs of one example's attention maps and slot changes; returns their paths."""
    config, task, model, _ = load_trained(run_dir)
    if config.model.kind == "lstm":
        raise ConfigError(
            f"{run_dir} is an lstm run: it has no memory to show; use a rmc or relational-rnn run"
        )
    generator = torch.Generator().manual_seed(derive_seed(seed, "attention"))
    inputs, targets = task.sample(1, generator)  # (1, T, I), (1,) or (1, L)
    prediction = model(inputs).argmax(dim=-1)[0]
    weights, memories = trace_memory(model, inputs)
    length = inputs.shape[1]
    steps = default_steps(length) if steps is None else list(steps)
    for step in steps:
        if not 0 <= step < length:
            raise ConfigError(f"--steps must lie in 0..{length - 1} for {task.name}, got {step}")
    out = Path(out) if out is not None else Path(run_dir) / "attention"
    out.mkdir(parents=True, exist_ok=True)
    answer = f"target {targets[0].tolist()}, prediction {prediction.tolist()}"
    title = f"{task.describe()}, example seed {seed}: {answer}"

    rows = [
        (block, head)
        for block in range(len(weights[0]))
        for head in range(weights[0][block].shape[0])
    ]
    figure = Figure(figsize=(2.1 * len(steps) + 1, 2.0 * len(rows) + 0.8), layout="constrained")
    grid = figure.subplots(len(rows), len(steps), squeeze=False)
    slots = weights[0][0].shape[1]
    columns = weights[0][0].shape[2]
    labels = [f"m{i}" for i in range(slots)] + (["in"] if columns > slots else [])
    for r, (block, head) in enumerate(rows):
        for c, step in enumerate(steps):
            axes = grid[r][c]
            image = axes.imshow(weights[step][block][head].numpy(), vmin=0, vmax=1, cmap="viridis")
            axes.set_xticks(range(columns), labels, fontsize=7)
            axes.set_yticks(range(slots), labels[:slots], fontsize=7)
            if r == 0:
                axes.set_title(f"step {step}", fontsize=9)
            if c == 0:
                axes.set_ylabel(f"block {block} head {head}", fontsize=8)
    figure.colorbar(image, ax=grid, shrink=0.6, label="attention weight")
    figure.suptitle(
        title + "\nrows: memory slots (queries); columns: slots and the input (keys)", fontsize=9
    )
    attention_path = out / "attention.png"
    figure.savefig(attention_path, dpi=110)

    changes = (memories[1:] - memories[:-1]).norm(dim=-1).T  # (N, T): ||M_t[i] - M_{t-1}[i]||
    figure = Figure(figsize=(max(5, 0.5 * length + 2), 0.5 * slots + 2), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(changes.numpy(), cmap="magma", aspect="auto")
    axes.set(xlabel="time step", ylabel="memory slot", title=title + "\nhow much each slot changes")
    axes.set_xticks(range(length))
    axes.set_yticks(range(slots))
    figure.colorbar(image, ax=axes, label="‖M_t[i] − M_{t−1}[i]‖")
    memory_path = out / "memory.png"
    figure.savefig(memory_path, dpi=110)
    return [attention_path, memory_path]
