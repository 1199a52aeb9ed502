"""The ``relational-rnn`` command: train, eval, compare, plot and attention.

Every error that comes from the user's input (a bad flag, config file or run
directory) is printed as one line, ``relational-rnn: error: ...``, and the command
exits with status 2; a run stopped by Ctrl-C exits with status 130 after saving a
checkpoint it can be resumed from, and one stopped by repeated non-finite steps with
status 1. Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from .allocator import keep_freed_memory
from .checkpoint import CheckpointError
from .compare import DEFAULT_COMPARISON, DEFAULT_MODELS, compare, parse_models
from .config import MODELS, SCHEDULES, ConfigError, TrainConfig, config_from_dict, load_config
from .distributed import World, launched
from .tasks import TASKS, task_options
from .train import Run, evaluate_run, format_metrics

INTERRUPTED = 130
DIVERGED = 1


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors that bad input causes into ``ConfigError``: one line, status 2."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, CheckpointError, OSError) as error:
        raise ConfigError(str(error)) from None


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one value of ``TrainConfig``."""

    flag: str
    path: tuple[str, ...]
    type: Callable[[str], Any]
    help: str


def int_list(text: str) -> list[int]:
    """``"128,128"`` -> [128, 128]; ``""`` -> []."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def optional_str(text: str) -> str | None:
    """``"none"`` -> None, anything else unchanged."""
    return None if text.lower() == "none" else text


FLAGS = (
    Flag("--task", ("task", "name"), str, f"the task: {', '.join(TASKS)}, lm-char, lm-word"),
    Flag("--model", ("model", "kind"), str, f"the recurrent core: {', '.join(MODELS)}"),
    Flag("--hidden-size", ("model", "hidden_size"), int, "LSTM units (lstm, relational-rnn)"),
    Flag("--num-layers", ("model", "num_layers"), int, "stacked LSTM layers (lstm)"),
    Flag("--mem-slots", ("model", "mem_slots"), int, "memory slots N (rmc, relational-rnn)"),
    Flag(
        "--slot-size",
        ("model", "slot_size"),
        int,
        "slot size S, a multiple of --num-heads (rmc, relational-rnn)",
    ),
    Flag("--num-heads", ("model", "num_heads"), int, "attention heads (rmc, relational-rnn)"),
    Flag("--num-blocks", ("model", "num_blocks"), int, "attention blocks per step (rmc)"),
    Flag("--gate-style", ("model", "gate_style"), optional_str, "unit, memory or none (rmc)"),
    Flag("--memory", ("model", "memory"), str, "rmc or gated_slot (relational-rnn)"),
    Flag(
        "--head-hidden",
        ("model", "head_hidden"),
        int_list,
        'hidden sizes of the MLP head, comma-separated ("" for a linear head)',
    ),
    Flag("--lr", ("optim", "lr"), float, "Adam learning rate"),
    Flag("--schedule", ("optim", "schedule"), str, f"learning-rate decay: {', '.join(SCHEDULES)}"),
    Flag("--warmup-steps", ("optim", "warmup_steps"), int, "linear learning-rate warm-up steps"),
    Flag("--clip-norm", ("optim", "clip_norm"), float, "clip the gradient norm to this (0: off)"),
    Flag("--weight-decay", ("optim", "weight_decay"), float, "Adam weight decay"),
    Flag(
        "--precision",
        ("optim", "precision"),
        str,
        "fp32, or bf16: the training steps' forward pass under bfloat16 autocast (weights, "
        "Adam and evaluation stay float32); on CPUs with AVX-512 BF16 1.6 to 1.7x faster "
        "at the paper's sizes, slower for small models; without native bfloat16 emulated "
        "and many times slower, with a warning (docs/performance.md)",
    ),
    Flag("--batch-size", ("batch_size",), int, "training examples per step"),
    Flag("--steps", ("steps",), int, "training steps"),
    Flag(
        "--time-budget",
        ("time_budget",),
        float,
        "stop after this many seconds of wall-clock time (alone it lifts the step limit)",
    ),
    Flag("--seed", ("seed",), int, "seed of every random stream of the run"),
    Flag("--eval-every", ("eval_every",), int, "evaluate on the held-out set every N steps"),
    Flag("--eval-size", ("eval_size",), int, "examples in the fixed held-out set"),
    Flag("--log-every", ("log_every",), int, "write a training record every N steps"),
    Flag("--checkpoint-every", ("checkpoint_every",), int, "save a checkpoint every N steps"),
    Flag("--keep-checkpoints", ("keep_checkpoints",), int, "checkpoints kept on disk"),
    Flag(
        "--max-nonfinite-steps",
        ("max_nonfinite_steps",),
        int,
        "stop after this many steps in a row with a NaN or infinite loss or gradient "
        "(each such step is skipped)",
    ),
)


def default_of(path: Sequence[str], defaults: Any) -> Any:
    """The value at ``path`` of a config's ``to_dict()``, as a flag's help shows it."""
    value: Any = defaults.to_dict()
    for key in path:
        value = value[key]
    if value is None or value == "":
        return "none"
    return ",".join(map(str, value)) if isinstance(value, list) else value


def add_flags(group: Any, flags: Sequence[Flag], defaults: Any) -> None:
    """Add ``flags`` to an argument group; ``defaults`` (a config) gives the shown defaults.

    A flag's value lands in the namespace under ``config.<path>`` only when it is given,
    so that a flag left out does not override ``--config`` or a resumed run.
    """
    for flag in flags:
        group.add_argument(
            flag.flag,
            type=flag.type,
            default=argparse.SUPPRESS,
            dest="config." + ".".join(flag.path),
            metavar=flag.flag.removeprefix("--").replace("-", "_").upper(),
            help=f"{flag.help} (default: {default_of(flag.path, defaults)})",
        )


def add_config_flags(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """The flags that set the run's config; only the flags given end up in the namespace."""
    group = parser.add_argument_group("run configuration (flags override --config)")
    group.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="JSON file with (part of) a run config, as in a run's config.json",
    )
    options = "; ".join(
        f"{name}: " + ", ".join(f"{key}={value}" for key, value in task_options(name).items())
        for name in TASKS
    )
    group.add_argument(
        "--task-option",
        action="append",
        default=argparse.SUPPRESS,
        metavar="KEY=VALUE",
        help=f"a task option, repeatable; the options and defaults are {options}",
    )
    add_flags(group, FLAGS, defaults)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config values set by flags, as a nested dict."""
    overrides: dict[str, Any] = {}
    for name, value in vars(args).items():
        if not name.startswith("config."):
            continue
        *sections, key = name.removeprefix("config.").split(".")
        target = overrides
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    if "time_budget" in overrides and "steps" not in overrides:
        overrides["steps"] = None
    for option in getattr(args, "task_option", []):
        key, sep, text = option.partition("=")
        if not sep or not key:
            raise ConfigError(f"--task-option expects KEY=VALUE, got {option!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides.setdefault("task", {}).setdefault("options", {})[key.strip()] = value
    return overrides


def build_config(args: argparse.Namespace, defaults: TrainConfig) -> TrainConfig:
    """defaults <- --config FILE <- flags."""
    config = defaults
    if hasattr(args, "config"):
        config = load_config(args.config, config)
    return config_from_dict(config_overrides(args), config)


def add_threads(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads (default: {default}); results are bitwise "
        "reproducible for a fixed thread count",
    )


def command_train(args: argparse.Namespace) -> int:
    from .lm.cli import train_lm, wants_lm

    keep_freed_memory()  # a training loop reuses the same large blocks every step
    with user_errors():
        lm = wants_lm(args)
    if lm:
        return train_lm(args)
    with launched() as world:  # one process, or one rank under torchrun
        return train_in(world, args)


def train_in(world: World, args: argparse.Namespace) -> int:
    """The train command in this process; only rank 0 prints."""
    with user_errors():
        if args.resume is not None:
            if args.out is not None:
                raise ConfigError("--resume continues a run in place; leave out --out")
            if hasattr(args, "config"):
                raise ConfigError("--resume uses the run's own config.json; leave out --config")
            changes = config_overrides(args)
            run = Run.resume(args.resume, changes, world)
        else:
            config = build_config(args, TrainConfig())
            out = args.out or Path("runs") / (
                f"{config.task.name}-{config.model.kind}-seed{config.seed}"
            )
            run = Run.create(config, out, world)
    if world.is_main:
        print(
            f"run {run.run_dir}: {run.config.model.kind} with {run.parameters:,} parameters "
            f"on {run.config.task.name}, step {run.counters.step}"
            + (f", {world.size} processes" if world.distributed else ""),
            file=sys.stderr,
        )
    summary = run.train(progress=args.progress)
    if world.is_main:
        print(
            f"{summary['status']} at step {summary['steps']} after "
            f"{summary['wall_time_s']:.1f} s: held-out {format_metrics(summary['final'])}; "
            f"baseline {format_metrics(summary['baseline'])}"
        )
    if summary["status"] == "interrupted":
        if world.is_main:
            print(f"continue with: relational-rnn train --resume {run.run_dir}", file=sys.stderr)
        return INTERRUPTED
    if summary["status"] == "diverged":
        if world.is_main:
            report_divergence(run.config.max_nonfinite_steps)
        return DIVERGED
    return 0


def report_divergence(max_nonfinite_steps: int) -> None:
    """The one line that says a run stopped as ``diverged``."""
    print(
        f"relational-rnn: stopped: {max_nonfinite_steps} non-finite steps "
        "in a row (NaN or Inf in the loss or the gradients); the checkpoints hold the "
        "last finite weights; try a lower --lr or --clip-norm",
        file=sys.stderr,
    )


def write_eval(result: dict[str, Any], args: argparse.Namespace) -> Path:
    """Write ``eval``'s result to ``--out`` (default RUN_DIR/eval.json); the path written."""
    out = args.out or Path(args.run_dir) / "eval.json"
    try:
        out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"cannot write {out}: {error.strerror or error}") from None
    return out


def command_eval(args: argparse.Namespace) -> int:
    from .lm.cli import eval_lm, is_lm_run

    if is_lm_run(args.run_dir):
        return eval_lm(args)
    given = {name: getattr(args, name) for name in ("seed", "size")}
    with user_errors():
        # Flags left out keep evaluate_run's defaults; the result says what was used.
        result = evaluate_run(args.run_dir, **{k: v for k, v in given.items() if v is not None})
        out = write_eval(result, args)
    print(
        f"test set (seed {result['seed']}, {result['size']} examples) at step {result['step']}: "
        f"{format_metrics(result['metrics'])}; baseline {format_metrics(result['baseline'])}"
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


def command_compare(args: argparse.Namespace) -> int:
    with user_errors():
        config = build_config(args, DEFAULT_COMPARISON)
        models = parse_models(args.models)
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
        if args.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    try:
        table = compare(
            config,
            models,
            args.seeds,
            args.out,
            jobs=args.jobs,
            threads=args.threads,
            command=shlex.join(["relational-rnn", *args.argv]),
        )
    except KeyboardInterrupt:
        print(
            f"interrupted; run the same command again to continue the runs in {args.out}",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(table)
    return 0


def command_plot(args: argparse.Namespace) -> int:
    from .plots import plot_runs  # matplotlib loads only when a figure is drawn

    with user_errors():
        out = plot_runs(args.run_dirs, args.out)
    print(f"wrote {out}")
    return 0


def command_attention(args: argparse.Namespace) -> int:
    from .plots import plot_attention  # matplotlib loads only when a figure is drawn

    with user_errors():
        if args.steps == []:
            raise ConfigError("--steps lists no time step; give comma-separated steps, e.g. 0,5")
        paths = plot_attention(args.run_dir, args.out, seed=args.seed, steps=args.steps)
    for path in paths:
        print(f"wrote {path}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The ``relational-rnn`` argument parser with its subcommands."""
    from .lm.cli import add_lm_flags, add_sample_parser  # lm.cli imports this module

    parser = Parser(
        prog="relational-rnn",
        description="Train and compare relational recurrent networks (RMC, Relational RNN) "
        "and LSTM baselines on relational reasoning tasks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train one model on one task",
        description="Train one model on one task into a run directory.",
    )
    add_config_flags(train, TrainConfig())
    train.add_argument("--out", type=Path, help="run directory (default: runs/TASK-MODEL-seedSEED)")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest checkpoint (only --steps and "
        "--time-budget may change)",
    )
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: only on a terminal); --no-progress also "
        "leaves out the line printed at each evaluation",
    )
    add_lm_flags(train)
    add_threads(train, "torch's choice")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser(
        "eval",
        help="test metrics of a run's newest checkpoint",
        description="Evaluate a run's newest checkpoint: a task run on a fresh test set drawn "
        "from --seed, a language-model run on the whole validation and test splits of its data.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    evaluate.add_argument("--seed", type=int, help="test-set seed of a task run (default: 0)")
    evaluate.add_argument("--size", type=int, help="test examples of a task run (default: 10000)")
    evaluate.add_argument(
        "--out", type=Path, help="JSON file to write (default: RUN_DIR/eval.json)"
    )
    add_threads(evaluate, "torch's choice")
    evaluate.set_defaults(handler=command_eval)

    comparison = commands.add_parser(
        "compare",
        help="train several models with matched parameter counts over several seeds",
        description="Train several models on one task with parameter counts matched within "
        "10% (the others' hidden_size is chosen to match the RMC when it is listed, else "
        "the first model with a memory), over several seeds; write a markdown table and a PNG of "
        "learning curves. With no arguments it runs the default comparison: the RMC "
        "against the LSTM on a reduced Nth-farthest task.",
    )
    add_config_flags(comparison, DEFAULT_COMPARISON)
    comparison.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated models among {', '.join(MODELS)} "
        f"(default: {','.join(DEFAULT_MODELS)})",
    )
    comparison.add_argument(
        "--seeds", type=int, default=3, help="seeds per model, 0..N-1 (default: 3)"
    )
    comparison.add_argument(
        "--jobs", type=int, default=2, help="runs trained at the same time (default: 2)"
    )
    comparison.add_argument(
        "--out",
        type=Path,
        default=Path("runs/compare"),
        help="directory for the runs, compare.md and compare.png; finished runs in it are "
        "reused and interrupted ones resumed (default: runs/compare)",
    )
    add_threads(comparison, "per run, the CPUs divided by --jobs")
    comparison.set_defaults(handler=command_compare)

    plot = commands.add_parser(
        "plot", help="learning curves of runs", description="Plot the learning curves of runs."
    )
    plot.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run directories")
    plot.add_argument("--out", type=Path, help="PNG to write (default: FIRST_RUN_DIR/curves.png)")
    plot.set_defaults(handler=command_plot)

    attention = commands.add_parser(
        "attention",
        help="attention maps and slot changes of a memory model on one example",
        description="For one held-out example, plot each head's attention weights (rows: "
        "memory slots, columns: slots and the input) at chosen steps, and how much each "
        "memory slot changes at each step.",
    )
    attention.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a rmc or relational-rnn run"
    )
    attention.add_argument("--seed", type=int, default=0, help="seed of the example (default: 0)")
    attention.add_argument(
        "--steps",
        type=int_list,
        default=None,
        help="comma-separated time steps to show, 0-based (default: up to 8 spread over "
        "the sequence)",
    )
    attention.add_argument(
        "--out", type=Path, help="directory for the PNGs (default: RUN_DIR/attention)"
    )
    attention.set_defaults(handler=command_attention)
    add_sample_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.exit(2, f"relational-rnn: error: --threads must be >= 1, got {args.threads}\n")
        torch.set_num_threads(args.threads)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"relational-rnn: error: {error}", file=sys.stderr)
        return 2
