"""Run configuration: dataclasses, their JSON form, and checks with clear messages.

A run's ``config.json`` is ``TrainConfig`` as JSON with a format marker::

    {"format": "relational-rnn-run", "version": 1,
     "task": {"name": "nth-farthest", "options": {"num_vectors": 4}},
     "model": {...}, "optim": {...}, "batch_size": 64, ...}

A ``--config FILE`` holds the same keys, any of them left out (defaults fill in).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from ._checks import check_choice, check_divisible, check_positive_int
from .tasks import ClassificationTask, make_task

FORMAT = "relational-rnn-run"
VERSION = 1
MODELS = ("lstm", "relational-rnn", "rmc")
SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A configuration that cannot be used: the message says which value and why."""


def check_run_end(steps: int | None, time_budget: float | None, seed: int) -> None:
    """A run needs an end (``steps``, ``time_budget`` or both, positive) and a seed >= 0."""
    if steps is None and time_budget is None:
        raise ConfigError("set steps or time_budget (or both): a run needs an end")
    if steps is not None:
        check_positive_int("steps", steps)
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"time_budget must be > 0 seconds, got {time_budget}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")


@dataclass
class TaskConfig:
    """The task's name (see ``relational_rnn.tasks.TASKS``) and its options."""

    name: str = "nth-farthest"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.build()  # checks the name and the options

    def build(self) -> ClassificationTask:
        """The task object."""
        return make_task(self.name, **self.options)


@dataclass
class ModelConfig:
    """The recurrent core and the MLP head on top of it.

    ``lstm`` uses hidden_size and num_layers; ``rmc`` uses mem_slots, slot_size,
    num_heads (head_size = slot_size / num_heads), num_blocks and gate_style;
    ``relational-rnn`` uses hidden_size, mem_slots, slot_size, num_heads and memory.
    """

    kind: str = "rmc"
    hidden_size: int = 128
    num_layers: int = 1
    mem_slots: int = 4
    slot_size: int = 64
    num_heads: int = 2
    num_blocks: int = 1
    gate_style: str | None = "unit"
    memory: str = "rmc"
    head_hidden: list[int] = field(default_factory=lambda: [128])

    def __post_init__(self) -> None:
        check_choice("model", self.kind, MODELS)
        for name in ("hidden_size", "num_layers", "mem_slots", "slot_size", "num_heads"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("num_blocks", self.num_blocks)
        check_divisible("slot_size", self.slot_size, "num_heads", self.num_heads)
        check_choice("gate_style", self.gate_style, ("unit", "memory", None))
        check_choice("memory", self.memory, ("rmc", "gated_slot"))
        for size in self.head_hidden:
            check_positive_int("head_hidden size", size)


@dataclass
class OptimConfig:
    """How the training steps are taken: Adam with an optional warm-up, a decay schedule
    and gradient-norm clipping, and the precision of their forward pass.

    ``precision="bf16"`` runs the training steps' forward pass under bfloat16 autocast;
    the loss (from float32 logits), the weights, their gradients, Adam's state, the
    recurrent state and the evaluations stay float32.
    """

    lr: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    clip_norm: float = 0.0
    weight_decay: float = 0.0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be > 0 and finite, got {self.lr}")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("warmup_steps", "clip_norm", "weight_decay"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be >= 0 (0 turns it off) and finite, got {value}")


@dataclass
class TrainConfig:
    """Everything that determines a run's results (given the seed, bitwise on CPU).

    Training stops after ``steps`` steps or ``time_budget`` seconds, whichever comes
    first (at least one must be set). ``eval_every``, ``checkpoint_every`` and
    ``log_every`` count steps; the held-out set has ``eval_size`` examples. A step
    with a NaN or infinite loss or gradient is skipped; ``max_nonfinite_steps`` such
    steps in a row stop the run (see ``relational_rnn.guard``).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 64
    steps: int | None = 1000
    time_budget: float | None = None
    seed: int = 0
    eval_every: int = 100
    eval_size: int = 1000
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    max_nonfinite_steps: int = 10

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_every", "eval_size", "log_every"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("checkpoint_every", self.checkpoint_every)
        check_positive_int("keep_checkpoints", self.keep_checkpoints)
        check_positive_int("max_nonfinite_steps", self.max_nonfinite_steps)
        check_run_end(self.steps, self.time_budget, self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with the format marker."""
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` if it matches the field's type annotation, else raise."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for option in get_args(annotation):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} has the wrong type: got {json.dumps(value)}")
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be null, got {json.dumps(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {json.dumps(value)}")
        (item,) = get_args(annotation)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object, got {json.dumps(value)}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be of type {annotation.__name__}, got {json.dumps(value)}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a JSON object, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {json.dumps(data)[:60]}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}; valid keys are {', '.join(names)}"
        )
    values = {}
    for name, value in data.items():
        hint = hints[name]
        inner = f"{where}.{name}" if where != "config" else name
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, inner)
        else:
            values[name] = _check_type(value, hint, inner)
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        message = str(error)
        if where != "config" and not message.startswith(where.split(".")[-1]):
            message = f"{where}: {message}"
        raise ConfigError(message) from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied, nested objects merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(data: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A ``TrainConfig`` from (part of) its JSON form, over ``base`` (or the defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a JSON object, got {json.dumps(data)[:60]}")
    full = (base or TrainConfig()).to_dict()
    del full["format"], full["version"]
    task = data.get("task")
    if isinstance(task, dict) and task.get("name", full["task"]["name"]) != full["task"]["name"]:
        full["task"] = {"name": task["name"], "options": {}}  # options belong to one task
    data = {key: value for key, value in data.items() if key not in ("format", "version")}
    return _build(TrainConfig, merge(full, data), "config")


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, raising ``ConfigError`` naming the file when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{what} {path} is not valid JSON: {error}") from None


def load_config(path: Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a ``--config FILE`` over ``base``."""
    data = read_json(path, "config file")
    try:
        return config_from_dict(data, base)
    except ConfigError as error:
        raise ConfigError(f"config file {path}: {error}") from None
