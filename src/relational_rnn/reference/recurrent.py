"""What every recurrent reference model shares: one step from the sequence pass, batch_first.

A ``Cell`` implements ``forward_sequence`` / ``backward_sequence`` over a time-major
sequence (T, B, I), which lets it do the input-only work for all steps at once, keep
the Python loop to the time axis, and read each step x[t] from contiguous memory.
Its one-step ``forward`` / ``backward`` (what the PyTorch cells compute) are the
sequence pass with T = 1.

A ``Sequence`` is a cell run over a whole sequence, batch first by default, as the
PyTorch sequence models wrap their cells.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .module import Module, Params

State = Any  # an array or a NamedTuple of arrays, as the cell defines


class Cell(Module):
    """A recurrent cell. Subclasses define ``initial_state`` and the two sequence passes."""

    def initial_state(self, batch_size: int, dtype=np.float64) -> State:
        raise NotImplementedError

    def forward_sequence(
        self, params: Params, x: np.ndarray, state: State
    ) -> tuple[np.ndarray, State, Any]:
        """x (T, B, I), state -> outputs (T, B, O), final state, cache."""
        raise NotImplementedError

    def backward_sequence(
        self,
        params: Params,
        cache: Any,
        d_outputs: np.ndarray,
        d_state: State | None,
        grads: Params,
    ) -> tuple[np.ndarray, State]:
        """d_outputs (T, B, O) and d_state of the final state (None: zero) -> dx, d_state0."""
        raise NotImplementedError

    def forward(
        self, params: Params, x: np.ndarray, state: State | None = None
    ) -> tuple[np.ndarray, State, Any]:
        """One step: x (B, I) -> output (B, O), new state, cache. None: the initial state."""
        if state is None:
            state = self.initial_state(x.shape[0], params_dtype(params))
        outputs, state, cache = self.forward_sequence(params, x[None], state)
        return outputs[0], state, cache

    def backward(
        self,
        params: Params,
        cache: Any,
        d_output: np.ndarray,
        d_state: State | None,
        grads: Params,
    ) -> tuple[np.ndarray, State]:
        """One step's backward: d_output (B, O) -> dx (B, I), d_state (the incoming state's)."""
        dx, d_state0 = self.backward_sequence(params, cache, d_output[None], d_state, grads)
        return dx[0], d_state0


class Sequence(Module):
    """``cell`` over a sequence; x (B, T, I) or (T, B, I) when ``batch_first`` is False.

    ``prefix`` is the prefix of the model's own parameter names (the cell's are longer).
    """

    def __init__(self, cell: Cell, batch_first: bool = True, prefix: str = "") -> None:
        self.cell = cell
        self.batch_first = batch_first
        self.prefix = prefix

    def children(self) -> tuple[Module, ...]:
        return (self.cell,)

    def initial_state(self, batch_size: int, dtype=np.float64) -> State:
        return self.cell.initial_state(batch_size, dtype)

    def forward(
        self, params: Params, x: np.ndarray, state: State | None = None
    ) -> tuple[np.ndarray, State, Any]:
        """x (B, T, I) -> output (B, T, O), final state (always batch first), cache."""
        x = np.ascontiguousarray(x.swapaxes(0, 1)) if self.batch_first else x  # (T, B, I)
        if state is None:
            state = self.cell.initial_state(x.shape[1], params_dtype(params))
        output, state, cache = self.cell.forward_sequence(params, x, state)  # (T, B, O)
        return (output.swapaxes(0, 1) if self.batch_first else output), state, cache

    def backward(
        self,
        params: Params,
        cache: Any,
        d_output: np.ndarray,
        d_state: State | None,
        grads: Params,
    ) -> tuple[np.ndarray, State]:
        """d_output like the output, d_state like the final state -> dx like x, d_state0."""
        if self.batch_first:
            d_output = np.ascontiguousarray(d_output.swapaxes(0, 1))  # (T, B, O)
        dx, d_state0 = self.cell.backward_sequence(params, cache, d_output, d_state, grads)
        return (dx.swapaxes(0, 1) if self.batch_first else dx), d_state0


def params_dtype(params: Params) -> np.dtype:
    """The floating dtype of the parameters (they all share one)."""
    return next(iter(params.values())).dtype
