"""Key-value recall: a few (key, value) pairs are shown, then a key; answer its value.

The problem, its sizes and their checks are in ``relational_rnn._recall``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._recall import RecallProblem
from .base import ClassificationTask


@dataclass(frozen=True)
class RecallTask(RecallProblem, ClassificationTask):
    """The recall problem as a task (PyTorch sampling, loss and metrics); its options
    are ``RecallProblem``'s."""

    name = "recall"

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
