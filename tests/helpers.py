"""Helpers shared by the model tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def randomize(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Give every parameter random values (LayerNorm's ones and zeros would hide bugs)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-scale, scale)
    return module


def gradcheck_module(module: nn.Module, *inputs: torch.Tensor, pack=None) -> bool:
    """torch.autograd.gradcheck of the module's first output with respect to every
    parameter and every input, in float64. ``pack(*inputs)`` builds the call's
    arguments (e.g. a state tuple) from the loose input tensors; by default they are
    passed as they are."""
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().double().requires_grad_() for _, p in module.named_parameters()]
    inputs = [x.detach().double().requires_grad_() for x in inputs]

    def run(*tensors):
        weights = dict(zip(names, tensors[: len(names)], strict=True))
        loose = tensors[len(names) :]
        args = tuple(loose) if pack is None else pack(*loose)
        return functional_call(module, weights, args)[0]

    return torch.autograd.gradcheck(run, (*params, *inputs), eps=1e-6, atol=1e-5)
