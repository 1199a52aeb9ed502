"""Tasks: seeded data generators with their metric, a trivial baseline and a head.

``TASKS`` maps each task's command-line name to its class; ``make_task(name,
**options)`` builds one and ``task_options(name)`` lists the options it takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._checks import check_choice
from .babi import BabiFacts
from .base import ClassificationTask
from .nth_farthest import NthFarthest
from .object_tracking import ObjectTracking
from .pair_matching import PairMatching
from .recall import RecallTask
from .sorting import Sorting

TASKS: dict[str, type[ClassificationTask]] = {
    task.name: task
    for task in (NthFarthest, ObjectTracking, PairMatching, BabiFacts, Sorting, RecallTask)
}


def task_options(name: str) -> dict[str, Any]:
    """The options of task ``name`` with their defaults."""
    check_choice("task", name, list(TASKS))
    return {field.name: field.default for field in dataclasses.fields(TASKS[name])}


def make_task(name: str, **options: Any) -> ClassificationTask:
    """Build task ``name``; unknown options raise ``ValueError`` listing the valid ones."""
    known = task_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"task {name!r} has no option {unknown[0]!r}; its options are "
            + ", ".join(f"{key} (default {value})" for key, value in known.items())
        )
    return TASKS[name](**options)


__all__ = [
    "TASKS",
    "BabiFacts",
    "ClassificationTask",
    "NthFarthest",
    "ObjectTracking",
    "PairMatching",
    "RecallTask",
    "Sorting",
    "make_task",
    "task_options",
]
