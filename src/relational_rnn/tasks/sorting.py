"""Sorting: read a sequence of numbers, then emit it sorted over the following steps.

The first ``length`` steps show ``one_hot(v_t)`` with values v_t drawn uniformly from
0..num_values-1 (repeats allowed); the next ``length`` steps have zero input. The
targets are the values in ascending order, one per output step, read at the last
``length`` steps. Metrics: accuracy per output value and ``sequence_accuracy`` (all
values of a sequence right).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import ClassificationTask, one_hot


@dataclass(frozen=True)
class Sorting(ClassificationTask):
    """Options: ``length`` (numbers to sort) and ``num_values``."""

    name = "sorting"
    length: int = 5
    num_values: int = 10

    def __post_init__(self) -> None:
        check_positive_int("length", self.length)
        check_positive_int("num_values", self.num_values)

    @property
    def input_size(self) -> int:
        return self.num_values

    @property
    def steps(self) -> int:
        return 2 * self.length

    @property
    def num_classes(self) -> int:
        return self.num_values

    @property
    def output_steps(self) -> int:
        return self.length

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        values = torch.randint(self.num_values, (batch_size, self.length), generator=generator)
        shown = one_hot(values, self.num_values)  # (B, L, V)
        inputs = torch.cat([shown, torch.zeros_like(shown)], dim=1)  # (B, 2L, V)
        return inputs, values.sort(dim=1).values  # (B, L)
