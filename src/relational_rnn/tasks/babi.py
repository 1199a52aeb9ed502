"""bAbI-style facts: people move around and one of them handles an object; where is it?

Each of the ``num_facts`` steps states one fact, ``[one_hot(kind) ; one_hot(person) ;
one_hot(location) ; 0]``, with kinds

    0  "person goes to location"      (a random person and location)
    1  "person picks up the object"   (exactly one such fact; no location shown)
    2  "person drops the object"      (in half of the stories, after the pick-up,
                                       by the same person; no location shown)

The last step asks "where is the object?", ``[0 ; 0 ; 0 ; 1]``. The object is where
its holder was when dropping it, or, if never dropped, where its holder went last.
Stories where that place is not determined (the holder had not gone anywhere yet)
are redrawn, so every question has exactly one answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import ClassificationTask

MOVE, PICK_UP, DROP = 0, 1, 2
KINDS = 3


@dataclass(frozen=True)
class BabiFacts(ClassificationTask):
    """Options: ``num_people``, ``num_locations`` and ``num_facts`` (at least 2)."""

    name = "babi"
    num_people: int = 3
    num_locations: int = 4
    num_facts: int = 8

    def __post_init__(self) -> None:
        check_positive_int("num_people", self.num_people)
        check_positive_int("num_locations", self.num_locations)
        check_positive_int("num_facts", self.num_facts)
        if self.num_facts < 2:
            raise ValueError(f"num_facts must be >= 2 (a move and a pick-up), got {self.num_facts}")

    @property
    def input_size(self) -> int:
        return KINDS + self.num_people + self.num_locations + 1

    @property
    def steps(self) -> int:
        return self.num_facts + 1

    @property
    def num_classes(self) -> int:
        return self.num_locations

    def stories(self, count: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        """``count`` candidate stories: kinds, people, locations (count, F), the answer
        (count,) and whether the answer is determined (count,)."""
        facts = self.num_facts
        rows, times = torch.arange(count), torch.arange(facts)
        people = torch.randint(self.num_people, (count, facts), generator=generator)
        locations = torch.randint(self.num_locations, (count, facts), generator=generator)
        picked = torch.randint(facts, (count,), generator=generator)  # (count,) pick-up time
        later = torch.rand(count, generator=generator) * (facts - 1 - picked)  # in [0, F-1-t)
        dropped = torch.where(
            torch.rand(count, generator=generator) < 0.5, picked + 1 + later.long(), facts
        )  # (count,) drop time; F when never dropped (always so after a last-fact pick-up)
        holder = people[rows, picked]  # (count,)

        kinds = torch.full((count, facts), MOVE)
        kinds[rows, picked] = PICK_UP
        has_drop = dropped < facts
        kinds[rows[has_drop], dropped[has_drop]] = DROP
        people[rows[has_drop], dropped[has_drop]] = holder[has_drop]

        moves = (kinds == MOVE) & (people == holder.unsqueeze(1))  # (count, F)
        moves &= times < dropped.unsqueeze(1)  # the holder's moves that place the object
        last = torch.where(moves, times, -1).amax(dim=1)  # (count,) -1 when none
        answer = locations[rows, last.clamp(min=0)]
        return kinds, people, locations, answer, last >= 0

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        kept: list[tuple[Tensor, ...]] = []
        found = 0
        while found < batch_size:  # redraw undetermined stories
            *story, determined = self.stories(batch_size, generator)
            kept.append(tuple(part[determined] for part in story))
            found += int(determined.sum())
        kinds, people, locations, answer = (
            torch.cat(parts)[:batch_size] for parts in zip(*kept, strict=True)
        )

        rows, times = torch.arange(batch_size).unsqueeze(1), torch.arange(self.num_facts)
        inputs = torch.zeros(batch_size, self.steps, self.input_size)
        inputs[rows, times, kinds] = 1.0
        inputs[rows, times, KINDS + people] = 1.0
        shown = kinds == MOVE  # only moves name a location
        location_columns = KINDS + self.num_people + locations
        inputs[rows, times, location_columns] += shown.float()
        inputs[:, -1, -1] = 1.0
        return inputs, answer
