"""Nth farthest (Santoro et al., 2018): which vector is the n-th farthest from vector m?

``num_vectors`` (K) vectors of ``dims`` (D) dimensions are drawn from U(-1, 1) and
shown one per step. Each vector carries a distinct label (a random permutation of
0..K-1, so labels do not match positions). Every step also shows the question: n,
drawn from 1..K, and the reference label m, drawn from 0..K-1. Step t's input is

    [x_t ; one_hot(label_t) ; one_hot(n - 1) ; one_hot(m)]        # D + 3K features

The target is the label of the n-th farthest vector from the vector labelled m, with
Euclidean distances ranked from the farthest (n = 1) to the nearest; the K-th farthest
is the vector m itself. Distances are continuous, so ties have probability zero and
the answer is determined by the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import ClassificationTask, one_hot


@dataclass(frozen=True)
class NthFarthest(ClassificationTask):
    """Options: ``num_vectors`` K (the paper: 8) and ``dims`` D (the paper: 16)."""

    name = "nth-farthest"
    num_vectors: int = 8
    dims: int = 16

    def __post_init__(self) -> None:
        check_positive_int("num_vectors", self.num_vectors)
        check_positive_int("dims", self.dims)

    @property
    def input_size(self) -> int:
        return self.dims + 3 * self.num_vectors

    @property
    def steps(self) -> int:
        return self.num_vectors

    @property
    def num_classes(self) -> int:
        return self.num_vectors

    @property
    def partial_solution(self) -> tuple[str, float]:
        """n = K asks for m itself; answering m then and guessing among the other K - 1
        labels otherwise is right 1/K + (K-1)/K * 1/(K-1) = 2/K of the time."""
        return "answer m when n = K, else guess", min(1.0, 2 / self.num_vectors)

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        k = self.num_vectors
        batch = torch.arange(batch_size)
        vectors = torch.rand(batch_size, k, self.dims, generator=generator) * 2 - 1  # (B, K, D)
        labels = torch.rand(batch_size, k, generator=generator).argsort(dim=1)  # (B, K)
        nth = torch.randint(k, (batch_size,), generator=generator)  # (B,) n - 1
        reference = torch.randint(k, (batch_size,), generator=generator)  # (B,) label m
        position = labels.argsort(dim=1)  # (B, K): position of each label
        exact = vectors.double()
        offsets = exact - exact[batch, position[batch, reference]].unsqueeze(1)  # (B, K, D)
        distances = offsets.square().sum(dim=-1)  # (B, K) from the reference vector
        ranked = distances.argsort(dim=1, descending=True)  # (B, K) farthest first
        targets = labels[batch, ranked[batch, nth]]  # (B,)
        question = torch.cat([one_hot(nth, k), one_hot(reference, k)], dim=-1)  # (B, 2K)
        inputs = torch.cat(
            [vectors, one_hot(labels, k), question.unsqueeze(1).expand(-1, k, -1)], dim=-1
        )  # (B, K, D + 3K)
        return inputs, targets
