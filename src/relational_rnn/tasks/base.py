"""What every task provides: a seeded generator, a loss and metrics, a baseline, a head.

A task is a frozen dataclass whose fields are its options. Its examples are
classification problems: an input sequence (B, T, input_size) and either one class
per example, read at the last step (targets (B,)), or one class at each of the last
``output_steps`` steps (targets (B, output_steps)).

The training loop only uses this interface (``sample``, ``loss``, ``metrics``,
``baseline``, ``make_model``), so a new task, for example a language model with its
own data and head, plugs in by providing the same methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_positive_int
from ..heads import SequenceClassifier


class ClassificationTask:
    """Base class of the tasks: cross-entropy loss, accuracy and a majority baseline."""

    name: ClassVar[str]

    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def steps(self) -> int:
        """Sequence length T."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @property
    def output_steps(self) -> int | None:
        """None: one answer read at the last step; an int L: one answer at each of the last L."""
        return None

    def describe(self) -> str:
        """The name and options, e.g. ``nth-farthest (num_vectors=3, dims=2)``."""
        options = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{self.name} ({options})"

    @property
    def partial_solution(self) -> tuple[str, float] | None:
        """An easy part of the task and the accuracy that solving only it gives, if any:
        reports show it so that a model stuck there is not mistaken for one that learned."""
        return None

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Task-specific sampling, called by ``sample`` with a checked batch size."""
        raise NotImplementedError

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """inputs (B, T, input_size) float32 and targets (B,) or (B, output_steps) int64.

        The examples are a deterministic function of the generator's state.
        """
        check_positive_int("batch_size", batch_size)
        return self.generate(batch_size, generator)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy; logits (B, [L,] C), targets (B, [L]). Logits, never softmax."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def metrics(self, logits: Tensor, targets: Tensor) -> dict[str, float]:
        """loss (nats), accuracy (per answer) and, for sequence answers, sequence_accuracy."""
        correct = logits.argmax(dim=-1) == targets  # (B,) or (B, L)
        result = {
            "loss": float(self.loss(logits, targets)),
            "accuracy": float(correct.float().mean()),
        }
        if self.output_steps is not None:
            result["sequence_accuracy"] = float(correct.all(dim=1).float().mean())
        return result

    def baseline(self, train_targets: Tensor, eval_targets: Tensor) -> dict[str, float]:
        """Metrics of the best input-blind predictor: the class frequencies of the
        training targets (per output step), so its accuracy is the majority class's."""
        counts = F.one_hot(train_targets, self.num_classes).sum(dim=0).double()  # ([L,] C)
        log_prior = torch.log((counts + 1e-3) / (counts + 1e-3).sum(dim=-1, keepdim=True))
        logits = log_prior.float().expand(*eval_targets.shape, self.num_classes)
        return self.metrics(logits, eval_targets)

    def make_model(self, core: nn.Module, head_hidden: Sequence[int] = ()) -> nn.Module:
        """The core read by an MLP head: x (B, T, I) -> logits (B, [L,] num_classes)."""
        return SequenceClassifier(core, self.num_classes, head_hidden, self.output_steps)


def one_hot(indices: Tensor, num_classes: int) -> Tensor:
    """int64 indices (...) -> float32 one-hot (..., num_classes)."""
    return F.one_hot(indices, num_classes).float()
