"""Small helpers for users of the models."""

from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters (those with ``requires_grad``) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
