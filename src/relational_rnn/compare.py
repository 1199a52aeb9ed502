"""``relational-rnn compare``: several models, matched parameter counts, several seeds.

Parameter matching: the first model in the list that has a memory (``rmc``, else
``relational-rnn``) is the reference and keeps its configured sizes; every other
model gets the ``hidden_size`` whose total parameter count (core and head) is
closest to the reference's. A model that cannot come within 10% is an error.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from .allocator import keep_freed_memory
from .config import MODELS, ConfigError, ModelConfig, TaskConfig, TrainConfig, config_from_dict
from .train import CONFIG, Run, build_model, evaluate_run, format_metrics, read_config
from .utils import count_parameters

DEFAULT_MODELS = ("lstm", "rmc")
TOLERANCE = 0.10
MAX_HIDDEN = 4096  # the largest hidden_size the matching tries
TEST_SIZE = 5000

#: The default comparison: a reduced Nth farthest that a 2-core machine trains in
#: a few minutes (3 seeds of each of the two models, two runs at a time).
DEFAULT_COMPARISON = TrainConfig(
    task=TaskConfig("nth-farthest", {"num_vectors": 3, "dims": 2}),
    model=ModelConfig(kind="rmc", mem_slots=4, slot_size=64, num_heads=2, head_hidden=[64]),
    batch_size=512,
    steps=2000,
    eval_every=100,
    eval_size=1000,
    checkpoint_every=500,
)


def parse_models(text: str) -> list[str]:
    """``"lstm,rmc"`` -> ["lstm", "rmc"], each checked, no repeats."""
    models = [part.strip() for part in text.split(",") if part.strip()]
    if not models:
        raise ConfigError("--models needs at least one model")
    for model in models:
        if model not in MODELS:
            raise ConfigError(
                f"unknown model {model!r} in --models; choose from {', '.join(MODELS)}"
            )
    if len(set(models)) != len(models):
        raise ConfigError(f"--models lists a model twice: {text}")
    return models


def count_for(config: TrainConfig, **model: Any) -> int:
    """Parameters of the model of ``config`` with the model fields ``model`` changed."""
    changed = dataclasses.replace(config, model=dataclasses.replace(config.model, **model))
    return count_parameters(build_model(changed, changed.task.build()))


def matched_configs(config: TrainConfig, models: list[str]) -> tuple[dict[str, TrainConfig], str]:
    """One config per model with parameter counts matched; and how they were matched."""
    memory_models = [m for m in models if m != "lstm"]
    reference = "rmc" if "rmc" in models else (memory_models or models)[0]
    target = count_for(config, kind=reference)
    configs, notes = {}, [f"{reference} is the reference ({target:,} parameters)"]
    for model in models:
        if model == reference:
            size = config.model.hidden_size
        else:
            low, high = 1, MAX_HIDDEN  # the parameter count grows with hidden_size: bisect
            while low < high:
                middle = (low + high) // 2
                if count_for(config, kind=model, hidden_size=middle) < target:
                    low = middle + 1
                else:
                    high = middle
            size = min(
                (max(1, low - 1), low),
                key=lambda h: abs(count_for(config, kind=model, hidden_size=h) - target),
            )
            count = count_for(config, kind=model, hidden_size=size)
            if abs(count - target) > TOLERANCE * target:
                raise ConfigError(
                    f"{model} cannot match {reference}'s {target:,} parameters within 10% "
                    f"(closest: {count:,} with hidden_size={size}); change the sizes"
                )
            notes.append(f"{model} hidden_size={size} gives {count:,} ({count / target - 1:+.1%})")
        model_config = dataclasses.replace(config.model, kind=model, hidden_size=size)
        configs[model] = dataclasses.replace(config, model=model_config)
    return configs, "; ".join(notes)


def train_one(
    config_dict: dict[str, Any], run_dir: str, threads: int | None, progress: bool
) -> dict:
    """Train (or resume, or reuse) one run; returns its summary with a test evaluation."""
    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_memory()  # as in ``relational-rnn train``
    if (Path(run_dir) / CONFIG).exists():
        run = Run.resume(Path(run_dir))
    else:
        run = Run.create(config_from_dict(config_dict), Path(run_dir))
    summary = run.train(progress=progress)
    summary["test"] = evaluate_run(run_dir, size=TEST_SIZE)
    return summary


def compare(
    config: TrainConfig,
    models: list[str],
    seeds: int,
    out: Path,
    jobs: int = 1,
    threads: int | None = None,
    command: str = "",
) -> str:
    """Train every model with every seed 0..seeds-1 under ``out``; write ``compare.md``
    and ``compare.png`` there and return the markdown (which quotes ``command``)."""
    from .plots import plot_comparison

    configs, matching = matched_configs(config, models)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {(m, s): out / f"{m}-seed{s}" for m in models for s in range(seeds)}
    for (model, seed), path in runs.items():
        wanted = dataclasses.replace(configs[model], seed=seed)
        if (path / CONFIG).exists() and read_config(path) != wanted:
            raise ConfigError(f"{path} holds a run with another config; choose another --out")
    print(f"parameter matching: {matching}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summaries = train_all(configs, runs, jobs, threads)
    check_statuses(summaries, runs)
    total = time.perf_counter() - started
    machine = (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {jobs} run(s) at a time, load average {load_before:.1f} before "
        f"and {os.getloadavg()[0]:.1f} after"
    )
    table = markdown(config, models, seeds, summaries, matching, machine, total, command)
    (out / "compare.md").write_text(table)
    plot_comparison(runs, out / "compare.png")
    return table


def check_statuses(
    summaries: dict[tuple[str, int], dict], runs: dict[tuple[str, int], Path]
) -> None:
    """Raise ``ConfigError`` if a run diverged (re-running would not help), or
    ``KeyboardInterrupt`` if one stopped early otherwise (re-running continues it)."""
    diverged = [runs[key] for key, summary in summaries.items() if summary["status"] == "diverged"]
    if diverged:
        names = ", ".join(str(path) for path in diverged)
        raise ConfigError(
            f"run {names} diverged (NaN or Inf in the loss or the gradients); "
            "try a lower --lr or --clip-norm with another --out"
        )
    if any(summary["status"] != "finished" for summary in summaries.values()):
        raise KeyboardInterrupt


def train_all(
    configs: dict[str, TrainConfig],
    runs: dict[tuple[str, int], Path],
    jobs: int,
    threads: int | None,
) -> dict[tuple[str, int], dict]:
    """Train every (model, seed) run, ``jobs`` at a time; returns their summaries."""
    summaries = {}

    def report(key: tuple[str, int], summary: dict) -> None:
        summaries[key] = summary
        print(
            f"{key[0]} seed {key[1]}: {summary['status']}, test "
            f"{format_metrics(summary['test']['metrics'])} in {summary['wall_time_s']:.0f} s",
            file=sys.stderr,
        )

    if jobs == 1:
        for key, path in runs.items():
            report(key, train_one(run_config(configs, *key), str(path), threads, progress=None))
            if summaries[key]["status"] != "finished":
                break
        return summaries
    if threads is None:  # one share of the cores per run, not torch's default of all
        threads = max(1, (os.cpu_count() or 1) // jobs)
    # The memory models take longest: start them first, so that the LSTM runs fill gaps.
    order = sorted(runs, key=lambda key: key[0] == "lstm")
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(train_one, run_config(configs, *key), str(runs[key]), threads, False): key
            for key in order
        }
        try:
            for future in as_completed(futures):
                report(futures[future], future.result())
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)
            raise
    return summaries


def run_config(configs: dict[str, TrainConfig], model: str, seed: int) -> dict[str, Any]:
    """The JSON config of one run (configs cross process boundaries as JSON)."""
    return dataclasses.replace(configs[model], seed=seed).to_dict()


def mean_std(values: list[float]) -> tuple[float, float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    std = float(tensor.std()) if len(values) > 1 else 0.0
    return float(tensor.mean()), std


def markdown(
    config: TrainConfig,
    models: list[str],
    seeds: int,
    summaries: dict[tuple[str, int], dict],
    matching: str,
    machine: str,
    total: float,
    command: str,
) -> str:
    """The comparison table with its setting, as markdown."""
    task = config.task.build()
    lines = [
        f"# {task.describe()}: {', '.join(models)}",
        "",
        *([f"Command: `{command}`", ""] if command else []),
        f"{seeds} seeds per model; {config.steps} steps of batch {config.batch_size}, "
        f"Adam lr {config.optim.lr} ({config.optim.schedule})"
        + (", bfloat16 autocast" if config.optim.precision == "bf16" else "")
        + f". Accuracy on a fresh test set of "
        f"{TEST_SIZE} examples (mean ± standard deviation over seeds, min–max).",
        f"Parameter counts: {matching}.",
        f"Machine: {machine}. Total wall time {total:.0f} s.",
        "",
        "| model | parameters | test accuracy | min–max | samples/s | wall time per run (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    means = {}
    for model in models:
        runs = [summaries[(model, seed)] for seed in range(seeds)]
        accuracies = [100 * r["test"]["metrics"]["accuracy"] for r in runs]
        mean, std = mean_std(accuracies)
        means[model] = mean
        speed, _ = mean_std([r["samples_per_s"] for r in runs])
        wall, _ = mean_std([r["wall_time_s"] for r in runs])
        lines.append(
            f"| {model} | {runs[0]['parameters']:,} | {mean:.1f}% ± {std:.1f} | "
            f"{min(accuracies):.1f}–{max(accuracies):.1f}% | {speed:,.0f} | {wall:.0f} |"
        )
    baseline = 100 * summaries[(models[0], 0)]["test"]["baseline"]["accuracy"]
    lines.append(f"| majority-class baseline | 0 | {baseline:.1f}% | | | |")
    if task.partial_solution is not None:
        what, accuracy = task.partial_solution
        lines.append(f"| partial solution: {what} | | {100 * accuracy:.1f}% | | | |")
    lines.append("")
    for model in models[1:]:
        lines.append(f"{model} − {models[0]}: {means[model] - means[models[0]]:+.1f} points.")
    return "\n".join(lines) + "\n"
