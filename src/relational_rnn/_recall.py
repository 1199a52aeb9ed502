"""The key-value recall problem's sizes and their checks, shared by the PyTorch task
(``relational_rnn.tasks.recall``) and the NumPy reference's (``relational_rnn.reference``).

Each of the first ``num_pairs`` steps shows ``[one_hot(key) ; one_hot(value) ; 0]``
with distinct keys; the last step shows ``[one_hot(query key) ; 0 ; 1]``. The target
is the value paired with the query key, so the answer is determined by the input.
Chance accuracy is ``1 / num_values``. Imports neither PyTorch nor NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._checks import check_positive_int


@dataclass(frozen=True)
class RecallProblem:
    """Options: ``num_pairs``, ``num_keys`` (at least num_pairs) and ``num_values``."""

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
    def output_steps(self) -> None:
        """One answer per example, read at the last step."""
        return None

    @property
    def chance_loss(self) -> float:
        """Cross-entropy of predicting every value with equal probability."""
        return math.log(self.num_values)

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.num_values
