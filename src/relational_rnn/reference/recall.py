"""Key-value recall generated with NumPy (the same problem as ``relational_rnn.tasks.recall``).

The problem, its sizes and their checks are in ``relational_rnn._recall``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._recall import RecallProblem


@dataclass(frozen=True)
class RecallTask(RecallProblem):
    """The recall problem, sampled with NumPy; its options are ``RecallProblem``'s."""

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
