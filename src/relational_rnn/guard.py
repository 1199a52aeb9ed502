"""The guard against non-finite losses and gradients.

A step whose loss or gradient norm is NaN or infinite (on any rank) is skipped: the
optimizer does not move, the step is counted, and a ``NonFiniteWarning`` says so.
After ``max_nonfinite_steps`` such steps in a row the run stops with status
``diverged``; its checkpoints keep the last finite weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class NonFiniteWarning(RuntimeWarning):
    """A training step was skipped because its loss or gradient was NaN or infinite."""


def gradient_norm(parameters: Iterable[nn.Parameter], clip_norm: float = 0.0) -> Tensor:
    """The total L2 norm of the gradients, clipping them to ``clip_norm`` if it is > 0.

    The norm is NaN or infinite when any gradient element is.
    """
    parameters = [p for p in parameters if p.grad is not None]
    if clip_norm:
        return nn.utils.clip_grad_norm_(parameters, clip_norm)
    return nn.utils.get_total_norm([p.grad for p in parameters])


def is_finite(loss: float, norm: Tensor) -> bool:
    """Whether a step's loss and gradient norm are both finite."""
    return math.isfinite(loss) and bool(torch.isfinite(norm))
