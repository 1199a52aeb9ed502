"""Heads that turn a recurrent core's outputs into task predictions (logits)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int
from .memory import RelationalMemory


class MLPHead(nn.Module):
    """Linear layers with ReLU between them: (..., in) -> (..., out), logits (no softmax)."""

    def __init__(self, in_size: int, out_size: int, hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__()
        sizes = [in_size, *hidden_sizes, out_size]
        for index, size in enumerate(sizes):
            check_positive_int(f"head layer {index} size", size)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)

    def forward(self, x: Tensor) -> Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x if index == 0 else F.relu(x))
        return x

    def extra_repr(self) -> str:
        sizes = [self.layers[0].in_features] + [layer.out_features for layer in self.layers]
        return "sizes=" + " -> ".join(map(str, sizes))


class SequenceClassifier(nn.Module):
    """A recurrent core read at its last step(s) by an MLP head.

    x (B, T, I) -> logits (B, num_classes), read at the last step, or, with
    ``output_steps=L``, logits (B, L, num_classes), read at each of the last L steps.
    ``core`` is any module of this package (it has ``output_size`` and returns
    ``(output (B, T, output_size), state)``).
    """

    def __init__(
        self,
        core: nn.Module,
        num_classes: int,
        hidden_sizes: Sequence[int] = (),
        output_steps: int | None = None,
    ) -> None:
        super().__init__()
        if output_steps is not None:
            check_positive_int("output_steps", output_steps)
        self.core = core
        self.output_steps = output_steps
        self.head = MLPHead(core.output_size, num_classes, hidden_sizes)

    def forward(self, x: Tensor) -> Tensor:
        output, state = self.core(x)  # (B, T, core.output_size)
        if self.output_steps is not None:
            return self.head(output[:, -self.output_steps :])  # (B, L, num_classes)
        if isinstance(self.core, RelationalMemory):
            # Its last output is its final memory, flattened; read there, backward does
            # not zero-fill a gradient for the whole output sequence.
            return self.head(state.flatten(1))  # (B, num_classes)
        return self.head(output[:, -1])  # (B, num_classes)

    def extra_repr(self) -> str:
        return f"output_steps={self.output_steps}"
