"""Key-value recall: a few (key, value) pairs are shown, then a key; answer its value.

Each of the first ``num_pairs`` steps shows ``[one_hot(key) ; one_hot(value) ; 0]``
with distinct keys; the last step shows ``[one_hot(query key) ; 0 ; 1]``. The target
is the value paired with the query key, so the answer is determined by the input.
Chance accuracy is ``1 / num_values``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import ClassificationTask


@dataclass(frozen=True)
class RecallTask(ClassificationTask):
    """Options: ``num_pairs``, ``num_keys`` (at least num_pairs) and ``num_values``."""

    name = "recall"
    num_pairs: int = 4
    num_keys: int = 8
    num_values: int = 8

    def __post_init__(self) -> None:
        check_positive_int("num_pairs", self.num_pairs)
        check_positive_int("num_keys", self.num_keys)
        check_positive_int("num_values", self.num_values)
        if self.num_pairs > self.num_keys:
            raise ValueError(
                f"num_pairs ({self.num_pairs}) must be <= num_keys ({self.num_keys}): "
                "keys are distinct within a sequence"
            )

    @property
    def input_size(self) -> int:
        return self.num_keys + self.num_values + 1

    @property
    def steps(self) -> int:
        return self.num_pairs + 1

    @property
    def num_classes(self) -> int:
        return self.num_values

    @property
    def chance_loss(self) -> float:
        """Cross-entropy of predicting every value with equal probability."""
        return math.log(self.num_values)

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """inputs (B, num_pairs + 1, input_size) float32 and targets (B,) int64."""
        batch = torch.arange(batch_size)
        keys = torch.rand(batch_size, self.num_keys, generator=generator).argsort(dim=1)
        keys = keys[:, : self.num_pairs]  # (B, P) distinct per row
        values = torch.randint(self.num_values, (batch_size, self.num_pairs), generator=generator)
        query = torch.randint(self.num_pairs, (batch_size,), generator=generator)  # (B,)
        inputs = torch.zeros(batch_size, self.steps, self.input_size)
        for t in range(self.num_pairs):
            inputs[batch, t, keys[:, t]] = 1.0
            inputs[batch, t, self.num_keys + values[:, t]] = 1.0
        inputs[batch, -1, keys[batch, query]] = 1.0
        inputs[:, -1, -1] = 1.0
        return inputs, values[batch, query]
