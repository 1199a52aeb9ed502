"""The Relational RNN: an LSTM whose hidden state is written into a relational memory."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import (
    check_choice,
    check_divisible,
    check_positive_int,
    check_sequence,
    check_state,
    check_step_input,
)
from ._cost import folding_pays
from .memory import (
    MEMORY_INITS,
    GatedSlotMemoryCell,
    RelationalMemoryCell,
    check_recompute,
    initial_memory,
    scan,
)
from .precision import fused_lstm_precision

MEMORIES = ("gated_slot", "rmc")


class RelationalRNNState(NamedTuple):
    """State of a Relational RNN: h (B, H), c (B, H), memory (B, N, S)."""

    h: Tensor
    c: Tensor
    memory: Tensor


def init_lstm_forget_bias(lstm: nn.Module, hidden_size: int) -> None:
    """Start the forget-gate bias at 1 (gates are ordered i, f, g, o in PyTorch's LSTMs)."""
    with torch.no_grad():
        for name, bias in lstm.named_parameters():
            if name.startswith("bias_ih"):
                bias[hidden_size : 2 * hidden_size] = 1.0
            elif name.startswith("bias_hh"):
                bias[hidden_size : 2 * hidden_size] = 0.0


class RelationalRNNCell(nn.Module):
    """One step of the Relational RNN.

    Input x (B, I), state (h, c, M) with M (B, N, S):

        h_t, c_t = LSTMCell(x_t, (h_{t-1}, c_{t-1}))     # forget-gate bias starts at 1
        M_t      = Memory(M_{t-1}, h_t)                   # gated slot memory or RMC
        r_t      = W_r mean_over_slots(M_t) + b_r         # (B, H)
        o_t      = tanh(W_c [h_t ; r_t] + b_c)            # (B, H)
        y_t      = W_o o_t + b_o                          # only when output_size is given

    ``forward(x, state=None)`` returns ``(y_t or o_t, RelationalRNNState(h_t, c_t, M_t))``.
    With ``memory="rmc"`` the memory is a ``RelationalMemoryCell`` with
    ``head_size = slot_size // num_heads``.
    """

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
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_slots = check_positive_int("num_slots", num_slots)
        self.slot_size = check_positive_int("slot_size", slot_size)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.memory_type = check_choice("memory", memory, MEMORIES)
        self.memory_init = check_choice("memory_init", memory_init, MEMORY_INITS)
        if output_size is not None:
            check_positive_int("output_size", output_size)
        self.output_size = output_size
        check_divisible("slot_size", slot_size, "num_heads", num_heads)

        self.lstm = nn.LSTMCell(input_size, hidden_size)
        init_lstm_forget_bias(self.lstm, hidden_size)
        if memory == "gated_slot":
            self.memory = GatedSlotMemoryCell(hidden_size, num_slots, slot_size, num_heads)
        else:
            self.memory = RelationalMemoryCell(
                hidden_size, num_slots, slot_size // num_heads, num_heads=num_heads
            )
        self.read = nn.Linear(slot_size, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, output_size) if output_size is not None else None

    def initial_state(self, batch_size: int) -> RelationalRNNState:
        """Zero h and c (B, H) and the initial memory (B, N, S) chosen by ``memory_init``."""
        like = self.read.weight
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=like.dtype, device=like.device)
        memory = initial_memory(
            batch_size,
            self.num_slots,
            self.slot_size,
            self.memory_init,
            dtype=like.dtype,
            device=like.device,
        )
        return RelationalRNNState(zeros, zeros.clone(), memory)

    def check_state(self, state: RelationalRNNState | None, batch_size: int) -> RelationalRNNState:
        """Return ``state`` checked against the expected shapes, or the initial state if None."""
        if state is None:
            return self.initial_state(batch_size)
        if not isinstance(state, tuple) or len(state) != 3:
            raise TypeError(
                "state must be a RelationalRNNState (h, c, memory), "
                f"got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, tuple) else "")
            )
        like = self.read.weight
        hidden = (batch_size, self.hidden_size)
        return RelationalRNNState(
            check_state("state.h", state[0], hidden, like),
            check_state("state.c", state[1], hidden, like),
            check_state(
                "state.memory", state[2], (batch_size, self.num_slots, self.slot_size), like
            ),
        )

    def readout(self, h: Tensor, memory_mean: Tensor) -> Tensor:
        """h (..., H) and the slot mean of the memory (..., S) -> y (..., output or H).

        Over more rows than S (a whole sequence), W_c [h ; W_r m + b_r] + b_c is computed
        as [W_c,h | W_c,r W_r] [h ; m] + (W_c,r b_r + b_c): one product, and H * H fewer
        multiply-adds per row for H * H * S once.
        """
        rows = memory_mean.numel() // self.slot_size
        if not folding_pays(rows, self.slot_size, self.hidden_size, self.hidden_size):
            read = self.read(memory_mean)  # (..., H)
            output = torch.tanh(self.combine(torch.cat([h, read], dim=-1)))  # (..., H)
        else:
            combine_h, combine_r = self.combine.weight.chunk(2, dim=1)  # (H, H) each
            weight = torch.cat([combine_h, combine_r @ self.read.weight], dim=1)  # (H, H + S)
            bias = F.linear(self.read.bias, combine_r, self.combine.bias)  # (H,)
            output = torch.tanh(F.linear(torch.cat([h, memory_mean], dim=-1), weight, bias))
        return output if self.head is None else self.head(output)  # from (..., H)

    def forward(
        self, x: Tensor, state: RelationalRNNState | None = None
    ) -> tuple[Tensor, RelationalRNNState]:
        x = check_step_input(x, self.input_size, self.read.weight)
        h, c, memory = self.check_state(state, x.shape[0])
        h, c = self.lstm(x, (h, c))  # (B, H) each
        memory = self.memory.step(self.memory.project_input(h), memory)  # (B, N, S)
        # Under autocast the LSTM returns bfloat16; the state keeps the parameters' dtype.
        state = RelationalRNNState(h.to(x.dtype), c.to(x.dtype), memory)
        return self.readout(h, memory.mean(dim=1)), state

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_slots={self.num_slots}, slot_size={self.slot_size}, "
            f"num_heads={self.num_heads}, memory={self.memory_type!r}, "
            f"memory_init={self.memory_init!r}, output_size={self.output_size}"
        )


class RelationalRNN(nn.Module):
    """The Relational RNN over a sequence (see ``RelationalRNNCell`` for the equations).

    ``output, state = rnn(x, state=None)`` with x (B, T, I) (or (T, B, I) when
    ``batch_first=False``), output (B, T, output_size or hidden_size) (time first
    likewise) and the final ``RelationalRNNState(h, c, memory)``, always batch first.

    The memory does not feed back into the LSTM, so the LSTM runs over the whole
    sequence in one fused call; the input terms of the memory and the readout are also
    computed for all steps at once, and only the memory update runs step by step.
    ``recompute=True`` recomputes the memory steps in backward instead of storing their
    intermediate results (see ``relational_rnn.memory.scan``); the results are the same.
    """

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
        recompute: bool = False,
    ) -> None:
        super().__init__()
        self.cell = RelationalRNNCell(
            input_size,
            hidden_size,
            num_slots=num_slots,
            slot_size=slot_size,
            num_heads=num_heads,
            memory=memory,
            memory_init=memory_init,
            output_size=output_size,
        )
        self.batch_first = bool(batch_first)
        self.recompute = check_recompute(recompute)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size if output_size is not None else hidden_size

    def initial_state(self, batch_size: int) -> RelationalRNNState:
        """Zero h and c (B, H) and the initial memory (B, N, S)."""
        return self.cell.initial_state(batch_size)

    def forward(
        self, x: Tensor, state: RelationalRNNState | None = None
    ) -> tuple[Tensor, RelationalRNNState]:
        cell = self.cell
        like = cell.read.weight
        x, batch_size, _ = check_sequence(x, self.input_size, self.batch_first, like)
        h, c, memory = cell.check_state(state, batch_size)
        lstm = cell.lstm
        weights = [lstm.weight_ih, lstm.weight_hh, lstm.bias_ih, lstm.bias_hh]
        # One fused LSTM call over all steps, the same maths as stepping cell.lstm; time
        # first, so that every step's slice of what follows is contiguous. The flags:
        # has_biases, num_layers, dropout, train, bidirectional, batch_first.
        flags = (True, 1, 0.0, self.training, False, False)
        state_in = (h.unsqueeze(0), c.unsqueeze(0))  # (1, B, H) each
        with fused_lstm_precision(x.device.type):
            hidden, h_last, c_last = torch.lstm(x.transpose(0, 1), state_in, weights, *flags)
        # hidden (T, B, H)
        projected = cell.memory.project_input(hidden)  # each (T, B, ...)
        memories, memory = scan(cell.memory, projected, memory, self.recompute)  # (T, B, N, S)
        memory_means = memories.mean(dim=2)  # (T, B, S)
        output = cell.readout(hidden, memory_means)  # (T, B, output)
        if self.batch_first:
            output = output.transpose(0, 1)
        h, c = h_last.squeeze(0).to(x.dtype), c_last.squeeze(0).to(x.dtype)  # as in the cell
        return output, RelationalRNNState(h, c, memory)

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}, recompute={self.recompute}"
