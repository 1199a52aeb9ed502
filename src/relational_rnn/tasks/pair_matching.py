"""Pair matching: pairs of tokens are shown, then one token; answer its partner.

Each of the first ``num_pairs`` steps shows a pair ``[one_hot(a) ; one_hot(b) ; 0]``;
all ``2 * num_pairs`` tokens of a sequence are distinct tokens of a vocabulary of
``vocab_size``. The last step shows ``[one_hot(q) ; 0 ; 1]`` where q is any shown
token, on either side of its pair; the target is q's partner. Because tokens are
distinct, the partner is determined by the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import ClassificationTask


@dataclass(frozen=True)
class PairMatching(ClassificationTask):
    """Options: ``num_pairs`` and ``vocab_size`` (at least 2 * num_pairs)."""

    name = "pair-matching"
    num_pairs: int = 4
    vocab_size: int = 16

    def __post_init__(self) -> None:
        check_positive_int("num_pairs", self.num_pairs)
        check_positive_int("vocab_size", self.vocab_size)
        if self.vocab_size < 2 * self.num_pairs:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must be >= 2 * num_pairs "
                f"({2 * self.num_pairs}): the tokens of a sequence are distinct"
            )

    @property
    def input_size(self) -> int:
        return 2 * self.vocab_size + 1

    @property
    def steps(self) -> int:
        return self.num_pairs + 1

    @property
    def num_classes(self) -> int:
        return self.vocab_size

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pairs, vocab = self.num_pairs, self.vocab_size
        batch = torch.arange(batch_size)
        tokens = torch.rand(batch_size, vocab, generator=generator).argsort(dim=1)
        tokens = tokens[:, : 2 * pairs].view(batch_size, pairs, 2)  # (B, P, 2) distinct
        which = torch.randint(pairs, (batch_size,), generator=generator)  # (B,) queried pair
        side = torch.randint(2, (batch_size,), generator=generator)  # (B,) queried side

        rows, steps = batch.unsqueeze(1), torch.arange(pairs)  # (B, 1), (P,)
        inputs = torch.zeros(batch_size, self.steps, self.input_size)
        inputs[rows, steps, tokens[..., 0]] = 1.0
        inputs[rows, steps, vocab + tokens[..., 1]] = 1.0
        inputs[batch, -1, tokens[batch, which, side]] = 1.0
        inputs[:, -1, -1] = 1.0
        return inputs, tokens[batch, which, 1 - side]
