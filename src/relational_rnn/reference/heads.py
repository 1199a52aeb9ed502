"""Prediction heads: the MLP head and a sequence classifier read at the last step."""

from __future__ import annotations

from collections.abc import Sequence as Sizes

import numpy as np

from .layers import MLP
from .module import Module, Params
from .recurrent import Sequence


class MLPHead(MLP):
    """``relational_rnn.heads.MLPHead``: (..., in) -> logits (..., out), ReLU between layers."""

    def __init__(
        self, in_size: int, out_size: int, hidden_sizes: Sizes[int] = (), prefix: str = ""
    ) -> None:
        super().__init__([in_size, *hidden_sizes, out_size], prefix)


class SequenceClassifier(Module):
    """``relational_rnn.heads.SequenceClassifier``: x (B, T, I) -> logits.

    Logits (B, num_classes) read at the last step, or with ``output_steps=L`` logits
    (B, L, num_classes) read at each of the last L steps. The core is any reference
    sequence model built with ``prefix="core."`` (so that its names match the PyTorch
    module's ``core.*``); the MLP ``head`` reads its output.
    """

    def __init__(
        self,
        core: Sequence,
        num_classes: int,
        hidden_sizes: Sizes[int] = (),
        output_steps: int | None = None,
        prefix: str = "",
    ) -> None:
        if core.prefix != prefix + "core.":
            raise ValueError(
                f"build the core with prefix={prefix + 'core.'!r} (got {core.prefix!r}) so "
                "that its parameter names match the PyTorch SequenceClassifier's"
            )
        self.core = core
        self.head = MLPHead(core.output_size, num_classes, hidden_sizes, prefix=prefix + "head.")
        # the steps read: the last one (its axis dropped), or the last L
        self.read = -1 if output_steps is None else slice(-output_steps, None)

    def children(self) -> tuple[Module, ...]:
        return (self.core, self.head)

    def forward(self, params: Params, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """x (B, T, I) -> logits (B, [L,] num_classes), cache."""
        output, _, core_cache = self.core.forward(params, x)  # (B, T, core.output_size)
        logits, head_cache = self.head.forward(params, output[:, self.read])
        return logits, (core_cache, head_cache, output.shape)

    def backward(
        self, params: Params, cache: tuple, d_logits: np.ndarray, grads: Params
    ) -> np.ndarray:
        """d_logits (B, [L,] num_classes) -> dx (B, T, I)."""
        core_cache, head_cache, output_shape = cache
        d_output = np.zeros(output_shape, d_logits.dtype)  # only the steps read get gradient
        d_output[:, self.read] = self.head.backward(params, head_cache, d_logits, grads)
        dx, _ = self.core.backward(params, core_cache, d_output, None, grads)
        return dx
