"""The Relational RNN: an LSTM whose hidden state is written into a relational memory.

Per step, x (B, I), state (h, c, M) with M (B, N, S):

    h_t, c_t = LSTMCell(x_t, (h_{t-1}, c_{t-1}))
    M_t      = Memory(M_{t-1}, h_t)                   # gated slot memory or RMC
    r_t      = W_r mean_over_slots(M_t) + b_r         # (B, H)
    o_t      = tanh(W_c [h_t ; r_t] + b_c)            # (B, H)
    y_t      = W_o o_t + b_o                          # only when output_size is given

The memory does not feed back into the LSTM, so the LSTM runs over the whole sequence
first, then the memory, then the readout for all steps at once; the backward pass goes
through the same three stages in reverse.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .gated_slot import GatedSlotMemoryCell
from .layers import Linear
from .lstm import LSTMCell, LSTMState
from .memory import initial_memory
from .module import Module, Params
from .recurrent import Cell, Sequence
from .rmc import RelationalMemoryCell

MEMORIES = ("gated_slot", "rmc")


class RelationalRNNState(NamedTuple):
    """h (B, H), c (B, H), memory (B, N, S)."""

    h: np.ndarray
    c: np.ndarray
    memory: np.ndarray


class RelationalRNNCell(Cell):
    """``relational_rnn.RelationalRNNCell`` (same arguments, same parameter names)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_slots: int = 4,
        slot_size: int = 64,
        num_heads: int = 2,
        memory: str = "gated_slot",
        memory_init: str = "identity",
        output_size: int | None = None,
        prefix: str = "",
    ) -> None:
        if memory not in MEMORIES:
            raise ValueError(f"memory must be one of {MEMORIES}, got {memory!r}")
        self.hidden_size = hidden_size
        self.num_slots = num_slots
        self.slot_size = slot_size
        self.memory_init = memory_init
        self.lstm = LSTMCell(input_size, hidden_size, prefix=prefix + "lstm.")
        if memory == "gated_slot":
            self.memory: GatedSlotMemoryCell | RelationalMemoryCell = GatedSlotMemoryCell(
                hidden_size, num_slots, slot_size, num_heads, prefix=prefix + "memory."
            )
        else:
            self.memory = RelationalMemoryCell(
                hidden_size,
                num_slots,
                slot_size // num_heads,
                num_heads=num_heads,
                prefix=prefix + "memory.",
            )
        self.read = Linear(slot_size, hidden_size, prefix=prefix + "read.")
        self.combine = Linear(2 * hidden_size, hidden_size, prefix=prefix + "combine.")
        self.head = (
            Linear(hidden_size, output_size, prefix=prefix + "head.")
            if output_size is not None
            else None
        )

    def children(self) -> tuple[Module, ...]:
        head = () if self.head is None else (self.head,)
        return (self.lstm, self.memory, self.read, self.combine, *head)

    def initial_state(self, batch_size: int, dtype=np.float64) -> RelationalRNNState:
        """Zero h and c (B, H) and the initial memory (B, N, S) chosen by ``memory_init``."""
        h, c = self.lstm.initial_state(batch_size, dtype)
        memory = initial_memory(batch_size, self.num_slots, self.slot_size, self.memory_init, dtype)
        return RelationalRNNState(h, c, memory)

    def forward_sequence(
        self, params: Params, x: np.ndarray, state: RelationalRNNState
    ) -> tuple[np.ndarray, RelationalRNNState, tuple]:
        """x (T, B, I) -> output (T, B, output_size or H), final state, cache."""
        steps, batch_size, _ = x.shape
        hidden, (h, c), lstm_cache = self.lstm.forward_sequence(
            params, x, LSTMState(state.h, state.c)
        )  # hidden (T, B, H)
        memories, memory, memory_cache = self.memory.forward_sequence(params, hidden, state.memory)
        means = memories.reshape(steps, batch_size, self.num_slots, -1).mean(axis=2)  # (T, B, S)
        joined = np.concatenate([hidden, self.read.forward(params, means)], axis=-1)  # (T, B, 2H)
        combined = np.tanh(self.combine.forward(params, joined))  # o (T, B, H)
        output = combined if self.head is None else self.head.forward(params, combined)
        cache = (lstm_cache, memory_cache, means, joined, combined)
        return output, RelationalRNNState(h, c, memory), cache

    def backward_sequence(
        self,
        params: Params,
        cache: tuple,
        d_output: np.ndarray,
        d_state: RelationalRNNState | None,
        grads: Params,
    ) -> tuple[np.ndarray, RelationalRNNState]:
        """d_output (T, B, output) -> dx (T, B, I), RelationalRNNState of the initial state."""
        lstm_cache, memory_cache, means, joined, combined = cache
        steps, batch_size, _ = means.shape
        d_combined = (
            d_output if self.head is None else self.head.backward(params, combined, d_output, grads)
        )
        d_joined = self.combine.backward(params, joined, d_combined * (1.0 - combined**2), grads)
        d_hidden, d_read = np.split(d_joined, 2, axis=-1)  # (T, B, H) each
        d_means = self.read.backward(params, means, d_read, grads)  # (T, B, S)
        d_memories = np.broadcast_to(
            d_means[:, :, None] / self.num_slots,
            (steps, batch_size, self.num_slots, means.shape[-1]),
        )  # the mean spreads its gradient evenly over the slots
        d_hidden_from_memory, d_memory = self.memory.backward_sequence(
            params,
            memory_cache,
            d_memories.reshape(steps, batch_size, -1),
            None if d_state is None else d_state.memory,
            grads,
        )
        d_lstm_state = None if d_state is None else LSTMState(d_state.h, d_state.c)
        dx, (d_h, d_c) = self.lstm.backward_sequence(
            params, lstm_cache, d_hidden + d_hidden_from_memory, d_lstm_state, grads
        )
        return dx, RelationalRNNState(d_h, d_c, d_memory)


class RelationalRNN(Sequence):
    """``relational_rnn.RelationalRNN``: x (B, T, I) -> output (B, T, output_size or H), state."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_slots: int = 4,
        slot_size: int = 64,
        num_heads: int = 2,
        memory: str = "gated_slot",
        memory_init: str = "identity",
        output_size: int | None = None,
        batch_first: bool = True,
        prefix: str = "",
    ) -> None:
        cell = RelationalRNNCell(
            input_size,
            hidden_size,
            num_slots=num_slots,
            slot_size=slot_size,
            num_heads=num_heads,
            memory=memory,
            memory_init=memory_init,
            output_size=output_size,
            prefix=prefix + "cell.",
        )
        super().__init__(cell, batch_first, prefix)
        self.output_size = output_size if output_size is not None else hidden_size
