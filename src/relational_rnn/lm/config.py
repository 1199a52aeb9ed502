"""The configuration of a language-model run and its JSON form.

A language-model run's ``config.json`` is ``LMConfig`` as JSON with its own format
marker (``relational-rnn-lm-run``); ``model`` and ``optim`` are the same sections as
a task run's (``relational_rnn.config``), except that ``model.head_hidden`` is unused
(the logits come from one linear layer, see ``relational_rnn.lm.model``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._checks import check_choice, check_positive_int
from ..config import ConfigError, ModelConfig, OptimConfig, _build, check_run_end, merge
from .corpus import LEVELS

FORMAT = "relational-rnn-lm-run"
VERSION = 1
TASKS = {"lm-char": "char", "lm-word": "word"}  # command-line task name -> level


@dataclass
class LMConfig:
    """Everything that determines a language-model run (given the seed, bitwise on CPU).

    Training reads ``batch_size`` contiguous columns of the training split in chunks
    of ``bptt`` tokens, carrying the state from chunk to chunk (detached between them)
    and resetting it at the end of every pass. Evaluation reads the whole validation
    (or test) split as ``eval_columns`` contiguous columns, carrying the state across
    the whole split. It stops after ``steps`` or ``time_budget`` seconds (wall time,
    evaluations included), whichever comes first. A step with a NaN or infinite loss or
    gradient is skipped; ``max_nonfinite_steps`` such steps in a row stop the run.
    """

    level: str = "char"
    data: str = ""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(kind="lstm", head_hidden=[]))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, clip_norm=1.0))
    embed_size: int = 64
    dropout: float = 0.0
    tie_weights: bool = False
    batch_size: int = 32
    bptt: int = 64
    eval_columns: int = 16
    steps: int | None = 1000
    time_budget: float | None = None
    seed: int = 0
    eval_every: int = 200
    log_every: int = 20
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    max_nonfinite_steps: int = 10

    def __post_init__(self) -> None:
        check_choice("level", self.level, LEVELS)
        for name in ("embed_size", "batch_size", "bptt", "eval_columns", "eval_every"):
            check_positive_int(name, getattr(self, name))
        for name in ("log_every", "checkpoint_every", "keep_checkpoints", "max_nonfinite_steps"):
            check_positive_int(name, getattr(self, name))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        check_run_end(self.steps, self.time_budget, self.seed)

    @property
    def task(self) -> str:
        """The command-line task name: ``lm-char`` or ``lm-word``."""
        return f"lm-{self.level}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with the format marker."""
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}


def lm_config_from_dict(data: dict[str, Any], base: LMConfig | None = None) -> LMConfig:
    """An ``LMConfig`` from (part of) its JSON form over ``base``; ``ConfigError`` if bad."""
    if not isinstance(data, dict):
        raise ConfigError("a language-model config must be a JSON object")
    full = dataclasses.asdict(base or LMConfig())
    data = {key: value for key, value in data.items() if key not in ("format", "version")}
    return _build(LMConfig, merge(full, data), "config")
