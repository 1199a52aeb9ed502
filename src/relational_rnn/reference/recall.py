"""Key-value recall generated with NumPy (the same problem as ``relational_rnn.tasks.recall``).

Each of the first ``num_pairs`` steps shows ``[one_hot(key) ; one_hot(value) ; 0]``
with distinct keys; the last step shows ``[one_hot(query key) ; 0 ; 1]``. The target
is the value paired with the query key. Chance accuracy is ``1 / num_values``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RecallTask:
    num_pairs: int = 4
    num_keys: int = 8
    num_values: int = 8

    def __post_init__(self) -> None:
        if min(self.num_pairs, self.num_keys, self.num_values) < 1:
            raise ValueError(f"all sizes must be >= 1, got {self}")
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

    @property
    def output_steps(self) -> None:
        """One answer per example, read at the last step."""
        return None

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.num_values

    def sample(
        self, batch_size: int, rng: np.random.Generator, dtype=np.float64
    ) -> tuple[np.ndarray, np.ndarray]:
        """inputs (B, num_pairs + 1, input_size) and targets (B,) int64."""
        batch = np.arange(batch_size)
        keys = rng.random((batch_size, self.num_keys)).argsort(axis=1)[:, : self.num_pairs]
        values = rng.integers(self.num_values, size=(batch_size, self.num_pairs))  # (B, P)
        query = rng.integers(self.num_pairs, size=batch_size)  # (B,)
        inputs = np.zeros((batch_size, self.steps, self.input_size), dtype)
        pair_steps = np.arange(self.num_pairs)
        inputs[batch[:, None], pair_steps, keys] = 1.0
        inputs[batch[:, None], pair_steps, self.num_keys + values] = 1.0
        inputs[batch, -1, keys[batch, query]] = 1.0
        inputs[:, -1, -1] = 1.0
        return inputs, values[batch, query]
