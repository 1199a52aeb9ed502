"""The training loop: a run directory, periodic evaluation, checkpoints and resuming.

A run directory holds

    config.json      the ``TrainConfig`` (see ``relational_rnn.config``)
    metrics.jsonl    one JSON object per line: the baseline, train and eval records
    checkpoints/     safetensors + JSON checkpoints (see ``relational_rnn.checkpoint``)
    summary.json     the final (or interrupted) state of the run

Everything random comes from the config's seed through named streams (model
initialisation, training data, held-out data), and a checkpoint holds the RNG states,
so a run interrupted and resumed ends bitwise equal to an uninterrupted one on CPU
(with the same number of threads).

Under ``torchrun`` (see ``relational_rnn.distributed``) each rank trains on its own
share of every batch, drawn from its own stream, with DDP averaging the gradients;
rank 0 alone writes files, and the held-out metrics are combined over the ranks.
A step with a non-finite loss or gradient is skipped (see ``relational_rnn.guard``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ._checks import check_positive_int
from .cell import RelationalRNN
from .checkpoint import (
    CHECKPOINTS,
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    load_latest,
    remove_incomplete,
    save_checkpoint,
    write_atomic,
)
from .config import FORMAT, ConfigError, ModelConfig, OptimConfig, TrainConfig, config_from_dict
from .config import read_json as read_json_file
from .distributed import World
from .guard import NonFiniteWarning, gradient_norm, is_finite
from .lstm import LSTMBaseline
from .memory import RelationalMemory
from .precision import native_on_cpu
from .preflight import (
    check_disk_space,
    check_no_other_run,
    check_same_run,
    check_writable,
    checkpoint_bytes,
    run_identity,
)
from .tasks import ClassificationTask
from .utils import count_parameters

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
EVAL_BATCH = 1000


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for the named random ``stream`` of run ``seed``."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator seeded for ``stream``."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))


def build_core(config: ModelConfig, input_size: int) -> nn.Module:
    """The recurrent core that ``config`` describes, for inputs of ``input_size``."""
    if config.kind == "lstm":
        return LSTMBaseline(input_size, config.hidden_size, num_layers=config.num_layers)
    if config.kind == "rmc":
        return RelationalMemory(
            input_size,
            config.mem_slots,
            config.slot_size // config.num_heads,
            num_heads=config.num_heads,
            num_blocks=config.num_blocks,
            gate_style=config.gate_style,
        )
    return RelationalRNN(
        input_size,
        config.hidden_size,
        num_slots=config.mem_slots,
        slot_size=config.slot_size,
        num_heads=config.num_heads,
        memory=config.memory,
    )


def build_model(config: TrainConfig, task: ClassificationTask) -> nn.Module:
    """The core and the task's head, initialised from the run's ``init`` stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        core = build_core(config.model, task.input_size)
        return task.make_model(core, config.model.head_hidden)


def finished(config: Any, counters: Any) -> bool:
    """Whether a run (``config.steps``/``time_budget``, ``counters.step``/``elapsed_s``;
    task and language-model runs alike) has reached its step limit or time budget."""
    if config.steps is not None and counters.step >= config.steps:
        return True
    return config.time_budget is not None and counters.elapsed_s >= config.time_budget


def progress_fraction(config: Any, counters: Any) -> float:
    """How far a run is in [0, 1], by steps if set, else by time."""
    if config.steps is not None:
        return counters.step / config.steps
    return min(1.0, counters.elapsed_s / config.time_budget)


EMULATED_BF16 = (
    "this CPU has no native bfloat16 matrix products (no AVX-512 BF16 or AMX): "
    "precision bf16 runs them emulated, many times slower than fp32"
)


def training_autocast(optim: OptimConfig, device: torch.device) -> torch.autocast:
    """The context of a training step's forward pass: bfloat16 autocast on ``device`` when
    ``optim.precision`` is "bf16", a disabled one (float32) otherwise. Warns (once) on a
    CPU without native bfloat16 products, where autocast trains slower than float32."""
    bf16 = optim.precision == "bf16"
    if bf16 and device.type == "cpu" and not native_on_cpu(torch.bfloat16):
        warn_emulated_bf16()
    return torch.autocast(device.type, torch.bfloat16, enabled=bf16)


@functools.cache
def warn_emulated_bf16() -> None:
    """Warn that bfloat16 is emulated on this CPU: once per process, not once per step,
    whatever the warning filters."""
    warnings.warn(EMULATED_BF16, stacklevel=3)


def learning_rate(optim: OptimConfig, step: int, progress: float) -> float:
    """The learning rate for ``step`` (0-based) at ``progress`` in [0, 1] of the run."""
    scale = 1.0
    if optim.warmup_steps and step < optim.warmup_steps:
        scale = (step + 1) / optim.warmup_steps
    elif optim.schedule == "linear":
        scale = 1.0 - progress
    elif optim.schedule == "cosine":
        scale = 0.5 * (1.0 + math.cos(math.pi * progress))
    return optim.lr * scale


@torch.no_grad()
def evaluate(
    model: nn.Module, task: ClassificationTask, inputs: Tensor, targets: Tensor
) -> dict[str, float]:
    """The task's metrics of ``model`` on a fixed set, in batches, in eval mode."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(batch) for batch in inputs.split(EVAL_BATCH)])  # (E, [L,] C)
    model.train(was_training)
    return task.metrics(logits, targets)


def read_run_config(run_dir: Path, fmt: str, parse: Callable[[dict], Any], kind: str) -> Any:
    """``parse`` of a run's config.json whose ``format`` is ``fmt``; ``ConfigError`` for a
    missing directory or one that holds no ``kind`` (named in the message)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory: it has no {CONFIG}")
    data = read_json_file(path, "run config")
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ConfigError(f"{path} is not a {kind} (no format {fmt!r})")
    try:
        return parse(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def read_config(run_dir: Path) -> TrainConfig:
    """The config of an existing run; ``ConfigError`` for a missing or foreign directory."""
    return read_run_config(run_dir, FORMAT, config_from_dict, "relational-rnn run config")


def model_weights(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The model's state dict from a checkpoint's tensors (stored as ``model.<name>``)."""
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}


def check_more_steps(changes: dict[str, Any], step: int, run_dir: Path) -> None:
    """Raise if ``changes`` set ``steps`` to no more than the run's current ``step``."""
    steps = changes.get("steps")
    if steps is not None and steps <= step:
        raise ConfigError(
            f"{run_dir} is already at step {step}; --steps {steps} would not train it "
            f"further; give --steps greater than {step}"
        )


def check_new_run_directory(
    run_dir: Path, keep_checkpoints: int, model: nn.Module, leftovers: tuple[str, ...] = ()
) -> None:
    """Check, before any training, that ``run_dir`` can take a new run of ``model``: it
    holds no run (nor files of one, nor ``leftovers``), can be written, and has room for
    ``keep_checkpoints`` + 1 checkpoints. Creates the directory."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG).exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} "
            "or choose another --out"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a directory")
    check_no_other_run(run_dir, (CHECKPOINTS, METRICS, SUMMARY, *leftovers))
    check_writable(run_dir)
    check_disk_space(run_dir, keep_checkpoints + 1, checkpoint_bytes(model))


def load_weights(
    model: nn.Module, tensors: dict[str, Tensor], meta: dict[str, Any], run_dir: Path
) -> None:
    """Load a checkpoint's weights into ``model``; ``CheckpointError`` naming the file if
    they do not fit it."""
    try:
        model.load_state_dict(model_weights(tensors))
    except RuntimeError as error:
        path = checkpoint_paths(run_dir, meta["step"])[0]
        first = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit the run's model: {first}") from None


def load_trained(run_dir: Path) -> tuple[TrainConfig, ClassificationTask, nn.Module, int]:
    """A run's config, task and model (in eval mode) with the newest checkpoint's weights,
    and that checkpoint's step."""
    config = read_config(run_dir)
    task = config.task.build()
    model = build_model(config, task)
    tensors, meta = load_latest(run_dir)
    check_same_run(config, meta, checkpoint_paths(run_dir, meta["step"])[1])
    load_weights(model, tensors, meta, run_dir)
    return config, task, model.eval(), meta["step"]


def evaluate_run(run_dir: Path, seed: int = 0, size: int = 10000) -> dict[str, Any]:
    """Metrics of a run's newest checkpoint on a fresh test set drawn from ``seed``.

    The test set depends on ``seed`` and the task only, so runs of one task with
    different training seeds are tested on the same examples.
    """
    check_positive_int("size", size)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    config, task, model, step = load_trained(run_dir)
    inputs, targets = task.sample(size, torch.Generator().manual_seed(derive_seed(seed, "test")))
    _, train_targets = task.sample(size, generator(config.seed, "baseline"))
    return {
        "step": step,
        "seed": seed,
        "size": size,
        "metrics": evaluate(model, task, inputs, targets),
        "baseline": task.baseline(train_targets, targets),
    }


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (an empty list if there is none yet)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split the optimizer's state into tensors (for safetensors) and JSON values."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict
) -> None:
    """The inverse of ``optimizer_state``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            index, key = name.removeprefix("optimizer.").split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


@dataclass
class Counters:
    """How far a run got; saved in every checkpoint."""

    step: int = 0
    samples: int = 0
    elapsed_s: float = 0.0  # wall time of the whole run, evaluations included
    train_time_s: float = 0.0  # wall time of the training steps alone
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    nonfinite_in_a_row: int = 0  # of them, the latest without a good step between


@dataclass
class Interval:
    """Training statistics since the last ``train`` record; loss and correct count
    only the steps taken (not skipped for a non-finite loss or gradient)."""

    loss: float = 0.0
    correct: int = 0
    steps: int = 0
    taken: int = 0
    time_s: float = 0.0

    def add(self, loss: float, correct: int, time_s: float, taken: bool = True) -> None:
        if taken:
            self.loss += loss
            self.correct += correct
            self.taken += 1
        self.steps += 1
        self.time_s += time_s


class StopRequest:
    """Turns SIGINT and SIGTERM into a request to stop after the current step."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle the signals inside the block (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class TrainingLoop:
    """The training loop shared by task runs (``Run``) and language-model runs.

    A subclass sets ``config`` (``steps``, ``time_budget``, ``log_every``, ``eval_every``,
    ``checkpoint_every``, ``max_nonfinite_steps``), ``counters`` (``step``, ``elapsed_s``,
    ``train_time_s``, ``nonfinite_in_a_row``, ``skipped_steps``) and ``stop``, and
    provides the steps of the loop: ``train_step``, ``count``, ``log_train``,
    ``evaluate`` and ``describe_eval``, ``log``, ``checkpoint`` and ``write_summary``.
    """

    config: Any
    counters: Any
    stop: StopRequest
    stopping = False  # the stop request, as every rank sees it

    @property
    def is_main(self) -> bool:
        """Whether this process reports and writes (rank 0 of a DDP run)."""
        return True

    def train_step(self) -> tuple[float, int, bool]:
        """One optimizer step: its loss, what it counts (correct answers or tokens) and
        whether it was taken (not skipped for a non-finite loss or gradient)."""
        raise NotImplementedError

    def count(self, loss: float, amount: int, taken: bool, time_s: float) -> None:
        """Add a step's ``train_step`` result and time to the counters and statistics."""
        raise NotImplementedError

    def log_train(self) -> dict[str, str]:
        """Log the statistics since the last call; the progress bar's figures."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError

    def describe_eval(self, metrics: dict[str, float]) -> str:
        """``evaluate``'s metrics as printed, e.g. ``held-out loss 0.5 accuracy 80%``."""
        raise NotImplementedError

    def log(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_eval(self) -> str:
        """Evaluate and log; the line to print."""
        metrics, counters = self.evaluate(), self.counters
        self.log(
            {"kind": "eval", "step": counters.step, "elapsed_s": counters.elapsed_s, **metrics}
        )
        return f"step {counters.step}: {self.describe_eval(metrics)}"

    def checkpoint(self) -> None:
        raise NotImplementedError

    def write_summary(self) -> dict[str, Any]:
        raise NotImplementedError

    def diverged(self) -> bool:
        """Whether the latest ``max_nonfinite_steps`` steps were all skipped."""
        return self.counters.nonfinite_in_a_row >= self.config.max_nonfinite_steps

    def done(self) -> bool:
        """Whether the loop ends: the run finished, was asked to stop or diverged."""
        return finished(self.config, self.counters) or self.stopping or self.diverged()

    def status(self) -> str:
        if self.diverged():
            return "diverged"
        return "finished" if finished(self.config, self.counters) else "interrupted"

    def synchronize(self, started: float) -> None:
        """Take in the elapsed time and a stop request (every rank must see the same)."""
        self.counters.elapsed_s = time.perf_counter() - started
        self.stopping = self.stop.requested

    def skip_step(self) -> None:
        """Count a step skipped for a non-finite loss or gradient, and warn (rank 0)."""
        counters = self.counters
        counters.skipped_steps += 1
        counters.nonfinite_in_a_row += 1
        if self.is_main:
            warnings.warn(
                f"step {counters.step}: non-finite loss or gradient, step skipped "
                f"({counters.nonfinite_in_a_row} in a row, at most "
                f"{self.config.max_nonfinite_steps}; {counters.skipped_steps} in all)",
                NonFiniteWarning,
                stacklevel=3,
            )

    def train(self, progress: bool | None = None) -> dict[str, Any]:
        """Train until the end of the run, a stop request or divergence; the summary.

        ``progress``: show a progress bar and print each evaluation (None: the bar only
        on a terminal; False: neither).
        """
        config, counters = self.config, self.counters
        bar = tqdm(
            total=config.steps,
            initial=counters.step,
            disable=not self.is_main or (None if progress is None else not progress),
            unit="step",
            dynamic_ncols=True,
            leave=False,
        )
        started = time.perf_counter() - counters.elapsed_s
        self.stopping = False
        last = self.done()  # decided once per step, after the ranks agree on time and stop
        with self.stop.installed(), bar:
            while not last:
                step_start = time.perf_counter()
                loss, amount, taken = self.train_step()
                step_time = time.perf_counter() - step_start
                counters.step += 1
                counters.train_time_s += step_time
                self.count(loss, amount, taken, step_time)
                if taken:
                    counters.nonfinite_in_a_row = 0
                else:
                    self.skip_step()
                self.synchronize(started)
                bar.update(1)
                last = self.done()
                if counters.step % config.log_every == 0 or last:
                    figures = self.log_train()
                    if figures:  # none when every step of the interval was skipped
                        bar.set_postfix(figures)
                if counters.step % config.eval_every == 0 or last:
                    message = self.log_eval()
                    if self.is_main and progress is not False:
                        bar.write(message, file=sys.stderr)
                if counters.step % config.checkpoint_every == 0 or last:
                    self.synchronize(started)  # the checkpoint's time includes the evaluation
                    self.checkpoint()
        return self.write_summary()


class Run(TrainingLoop):
    """A training run bound to its directory: build with ``create`` or ``resume``.

    ``world`` places the process among the ranks of a DDP run (default: alone).
    """

    def __init__(self, config: TrainConfig, run_dir: Path, world: World | None = None) -> None:
        self.world = world = world or World()
        if config.batch_size % world.size:
            raise ConfigError(
                f"batch_size ({config.batch_size}) must be a multiple of the number of "
                f"processes ({world.size}): each trains on an equal share of every batch"
            )
        if config.eval_size < world.size:
            raise ConfigError(
                f"eval_size ({config.eval_size}) must be at least the number of processes "
                f"({world.size}): each evaluates a share of the held-out set"
            )
        self.config = config
        self.run_dir = Path(run_dir)
        self.task = config.task.build()
        self.model = build_model(config, self.task).to(world.device)
        self.trained = self.model  # what the training steps call: the model, or DDP around it
        if world.distributed:
            cuda = world.device.type == "cuda"
            self.trained = DistributedDataParallel(
                self.model, device_ids=[world.device] if cuda else None
            )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
        )
        self.data = generator(config.seed, world.stream("train"))
        self.valid = self.task.sample(config.eval_size, generator(config.seed, "valid"))
        self.counters = Counters()
        self.interval = Interval()  # statistics since the last train record
        self.stop = StopRequest()

    @classmethod
    def create(cls, config: TrainConfig, run_dir: Path, world: World | None = None) -> Run:
        """A fresh run; ``run_dir`` must not hold a run already."""
        run = cls(config, run_dir, world)
        run.world.on_main(run.prepare_directory)
        run.log({"kind": "baseline", "step": 0, **run.baseline()})
        run.log({"kind": "eval", "step": 0, **run.evaluate()})
        run.checkpoint()  # so that a run killed before its first interval can resume
        return run

    @classmethod
    def resume(
        cls, run_dir: Path, changes: dict[str, Any] | None = None, world: World | None = None
    ) -> Run:
        """Continue the run in ``run_dir`` from its newest good checkpoint.

        ``changes`` may set ``steps`` or ``time_budget`` to extend the run.
        """
        config = read_config(run_dir)
        changes = changes or {}
        if set(changes) - {"steps", "time_budget"}:
            names = ", ".join(sorted(set(changes) - {"steps", "time_budget"}))
            raise ConfigError(f"a resumed run keeps its config; cannot change {names}")
        run = cls(config_from_dict(changes, config), run_dir, world)
        run.load()
        check_more_steps(changes, run.counters.step, run_dir)
        if changes and run.world.is_main:
            write_atomic(run.run_dir / CONFIG, json.dumps(run.config.to_dict(), indent=2).encode())
        return run

    def prepare_directory(self) -> None:
        """Check, before any training, that the run directory can take this new run,
        then create it with the run's config."""
        run_dir = self.run_dir
        check_new_run_directory(run_dir, self.config.keep_checkpoints, self.model)
        write_atomic(run_dir / CONFIG, json.dumps(self.config.to_dict(), indent=2).encode())

    def newest_checkpoint(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Rank 0's part of resuming: check the directory, clear what a killed writer
        left, load the newest good checkpoint, check that it belongs to this run, and
        drop the metrics logged after it."""
        check_writable(self.run_dir)
        remove_incomplete(self.run_dir)
        check_disk_space(self.run_dir, 1, checkpoint_bytes(self.model))
        tensors, meta = load_latest(self.run_dir)
        check_same_run(self.config, meta, checkpoint_paths(self.run_dir, meta["step"])[1])
        if meta.get("world_size", 1) != self.world.size:
            raise ConfigError(
                f"{self.run_dir} was trained by {meta.get('world_size', 1)} process(es); "
                f"resume it with as many, not {self.world.size}"
            )
        kept = [r for r in read_metrics(self.run_dir) if r["step"] <= meta["step"]]
        write_atomic(self.run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())
        return tensors, meta

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    @property
    def device(self) -> torch.device:
        return self.world.device

    def baseline(self) -> dict[str, float]:
        """The input-blind baseline's metrics on the held-out set."""
        _, train_targets = self.task.sample(
            self.config.eval_size, generator(self.config.seed, "baseline")
        )
        return self.task.baseline(train_targets, self.valid[1])

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics; under DDP each rank evaluates its share of the held-out set
        and the per-example means are combined."""
        inputs, targets = (self.world.shard(t).to(self.device) for t in self.valid)
        metrics = evaluate(self.model, self.task, inputs, targets)
        if not self.world.distributed:
            return metrics
        count = len(targets)
        totals = self.world.sum([value * count for value in metrics.values()] + [count])
        return {name: total / totals[-1] for name, total in zip(metrics, totals[:-1], strict=True)}

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (rank 0 only)."""
        if self.world.is_main:
            with open(self.run_dir / METRICS, "a") as file:
                file.write(json.dumps(record) + "\n")

    def checkpoint(self) -> None:
        """Save a checkpoint with every rank's RNG states; rank 0 writes it."""
        tensors = {}
        states = {"rng.train": self.data.get_state(), "rng.torch": torch.get_rng_state()}
        for name, state in states.items():
            for rank, part in enumerate(self.world.gather(state)):
                tensors[self.world.stream(name, rank)] = part
        optimizer_tensors, optimizer_meta = optimizer_state(self.optimizer)
        tensors.update(optimizer_tensors)
        tensors.update({f"model.{k}": v for k, v in self.model.state_dict().items()})
        meta = {
            "counters": asdict(self.counters),
            "optimizer": optimizer_meta,
            "run": run_identity(self.config),
            "world_size": self.world.size,
        }
        self.world.on_main(
            lambda: save_checkpoint(
                self.run_dir, self.counters.step, tensors, meta, self.config.keep_checkpoints
            )
        )

    def load(self) -> None:
        """Restore the newest good checkpoint (rank 0 chooses it for all ranks)."""
        loaded = self.world.on_main(self.newest_checkpoint)
        step = self.world.broadcast(loaded[1]["step"] if loaded is not None else 0)
        tensors, meta = loaded if loaded is not None else load_checkpoint(self.run_dir, step)
        load_weights(self.model, tensors, meta, self.run_dir)
        restore_optimizer(self.optimizer, tensors, meta["optimizer"])
        self.data.set_state(tensors[self.world.stream("rng.train")])
        torch.set_rng_state(tensors[self.world.stream("rng.torch")])
        self.counters = Counters(**meta["counters"])

    def train_step(self) -> tuple[float, int, bool]:
        """One optimizer step on a fresh batch (under DDP, this rank's share of it).

        Returns the loss (mean over the ranks), the correct count (summed over them) and
        whether the step was taken: a step with a non-finite loss or gradient on any
        rank is skipped by all.
        """
        config, world = self.config, self.world
        inputs, targets = self.task.sample(config.batch_size // world.size, self.data)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        lr = learning_rate(
            config.optim, self.counters.step, progress_fraction(config, self.counters)
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with training_autocast(config.optim, self.device):
            logits = self.trained(inputs).float()  # (B, [L,] C)
        loss = self.task.loss(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = gradient_norm(self.model.parameters(), config.optim.clip_norm)
        correct = int((logits.detach().argmax(dim=-1) == targets).sum())
        local = loss.item()
        total, correct, bad = world.sum([local, correct, not is_finite(local, norm)])
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        return total / world.size, int(correct), not bad

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def synchronize(self, started: float) -> None:
        """Agree on the elapsed time (the ranks' mean) and on the stop request (any rank's),
        so that every rank takes the same decisions."""
        elapsed, stops = self.world.sum([time.perf_counter() - started, self.stop.requested])
        self.counters.elapsed_s = elapsed / self.world.size
        self.stopping = stops > 0

    def count(self, loss: float, amount: int, taken: bool, time_s: float) -> None:
        """``amount``: the correct answers of the step."""
        self.interval.add(loss, amount, time_s, taken)
        self.counters.samples += self.config.batch_size

    def log_train(self) -> dict[str, str]:
        """Log the ``train`` record of the steps since the last one; loss and accuracy cover
        the steps taken (null if every step was skipped)."""
        interval, batch = self.interval, self.config.batch_size
        taken = interval.taken
        answers = taken * batch * self.valid[1][0].numel()  # answers per example: 1 or L
        record = {
            "kind": "train",
            "step": self.counters.step,
            "elapsed_s": self.counters.elapsed_s,
            "loss": interval.loss / taken if taken else None,
            "accuracy": interval.correct / answers if taken else None,
            "samples_per_s": interval.steps * batch / max(interval.time_s, 1e-9),
            "lr": self.optimizer.param_groups[0]["lr"],
            "skipped": interval.steps - taken,
        }
        self.log(record)
        self.interval = Interval()
        if record["loss"] is None:
            return {}
        return {
            "loss": f"{record['loss']:.3f}",
            "acc": f"{record['accuracy']:.1%}",
            "samples_s": f"{record['samples_per_s']:.0f}",
        }

    def describe_eval(self, metrics: dict[str, float]) -> str:
        return "held-out " + format_metrics(metrics)

    def write_summary(self) -> dict[str, Any]:
        """Write and return ``summary.json`` from the metrics and the counters (rank 0;
        the other ranks return only the status and the steps)."""
        if not self.world.is_main:
            return {"status": self.status(), "steps": self.counters.step}
        records = read_metrics(self.run_dir)
        evals = [r for r in records if r["kind"] == "eval"]
        baseline = next(r for r in records if r["kind"] == "baseline")
        counters = self.counters
        summary = {
            "status": self.status(),
            "task": self.config.task.name,
            "model": self.config.model.kind,
            "parameters": self.parameters,
            "steps": counters.step,
            "samples": counters.samples,
            "wall_time_s": counters.elapsed_s,
            "samples_per_s": counters.samples / max(counters.train_time_s, 1e-9),
            "skipped_steps": counters.skipped_steps,
            "final": strip(evals[-1]),
            "best_accuracy": max(r["accuracy"] for r in evals),
            "baseline": strip(baseline),
        }
        write_atomic(self.run_dir / SUMMARY, json.dumps(summary, indent=2).encode())
        return summary


def strip(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record without its bookkeeping keys."""
    return {k: v for k, v in record.items() if k not in ("kind", "step", "elapsed_s")}


def format_metrics(metrics: dict[str, float]) -> str:
    """``loss 1.234 accuracy 56.7%`` and so on, for printing."""
    return " ".join(
        f"{name} {value:.3f}" if name == "loss" else f"{name} {value:.1%}"
        for name, value in metrics.items()
    )
