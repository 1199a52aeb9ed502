"""Object tracking: objects start somewhere on a grid, then move; where is one of them now?

``num_objects`` objects are placed on a ``grid_size`` x ``grid_size`` torus. The first
``num_objects`` steps show object i at its start, ``[one_hot(i) ; one_hot(x) ;
one_hot(y) ; 0 ; 0]``. The next ``num_moves`` steps each move a random object by one
cell in one of four directions (east, north, west, south), wrapping around the edges:
``[one_hot(object) ; 0 ; 0 ; one_hot(direction) ; 0]``. The last step asks for an
object, ``[one_hot(object) ; 0 ; 0 ; 0 ; 1]``. The target is its final cell,
``x * grid_size + y``: starts and moves determine it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import ClassificationTask

#: (dx, dy) of the four directions, in the order of their one-hot codes
MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))


@dataclass(frozen=True)
class ObjectTracking(ClassificationTask):
    """Options: ``num_objects``, ``grid_size`` (cells per side) and ``num_moves``."""

    name = "object-tracking"
    num_objects: int = 3
    grid_size: int = 4
    num_moves: int = 6

    def __post_init__(self) -> None:
        check_positive_int("num_objects", self.num_objects)
        check_positive_int("grid_size", self.grid_size)
        check_positive_int("num_moves", self.num_moves)

    @property
    def input_size(self) -> int:
        return self.num_objects + 2 * self.grid_size + len(MOVES) + 1

    @property
    def steps(self) -> int:
        return self.num_objects + self.num_moves + 1

    @property
    def num_classes(self) -> int:
        return self.grid_size**2

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        objects, grid = self.num_objects, self.grid_size
        batch = torch.arange(batch_size)
        start = torch.randint(grid, (batch_size, objects, 2), generator=generator)  # (B, O, 2)
        movers = torch.randint(objects, (batch_size, self.num_moves), generator=generator)
        directions = torch.randint(len(MOVES), (batch_size, self.num_moves), generator=generator)
        query = torch.randint(objects, (batch_size,), generator=generator)  # (B,)

        steps = torch.tensor(MOVES)[directions]  # (B, moves, 2)
        moved = (movers.unsqueeze(-1) == torch.arange(objects)).long()  # (B, moves, O)
        final = (start + torch.einsum("bmo,bmc->boc", moved, steps)) % grid  # (B, O, 2)
        cell = final[batch, query]  # (B, 2)

        rows = batch.unsqueeze(1)  # (B, 1)
        shown = torch.arange(objects)  # the start steps, object i at step i
        move_steps = objects + torch.arange(self.num_moves)
        inputs = torch.zeros(batch_size, self.steps, self.input_size)
        inputs[:, shown, shown] = 1.0
        inputs[rows, shown, objects + start[..., 0]] = 1.0
        inputs[rows, shown, objects + grid + start[..., 1]] = 1.0
        inputs[rows, move_steps, movers] = 1.0
        inputs[rows, move_steps, objects + 2 * grid + directions] = 1.0
        inputs[batch, -1, query] = 1.0
        inputs[:, -1, -1] = 1.0
        return inputs, cell[:, 0] * grid + cell[:, 1]
