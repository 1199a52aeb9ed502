"""An LSTM baseline with the same interface as the relational models."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._checks import check_positive_int, check_sequence, check_state
from .cell import init_lstm_forget_bias
from .precision import fused_lstm_precision


class LSTMState(NamedTuple):
    """State of an LSTM: h and c, each (num_layers, B, H) as in ``torch.nn.LSTM``."""

    h: Tensor
    c: Tensor


class LSTMBaseline(nn.Module):
    """``torch.nn.LSTM`` with the package's conventions, for fair comparisons.

    ``output, state = lstm(x, state=None)`` with x (B, T, I) (or (T, B, I) when
    ``batch_first=False``), output (B, T, output_size or hidden_size) and
    ``LSTMState(h, c)``. The forget-gate bias starts at 1, as in the Relational RNN's
    LSTM; an optional linear head maps each step's hidden state to ``output_size``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        output_size: int | None = None,
        dropout: float = 0.0,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        if output_size is not None:
            check_positive_int("output_size", output_size)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.batch_first = bool(batch_first)
        self.output_size = output_size if output_size is not None else hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)
        init_lstm_forget_bias(self.lstm, hidden_size)
        self.head = nn.Linear(hidden_size, output_size) if output_size is not None else None

    def initial_state(self, batch_size: int) -> LSTMState:
        """Zero h and c, each (num_layers, B, H)."""
        like = self.lstm.weight_ih_l0
        shape = (self.num_layers, batch_size, self.hidden_size)
        return LSTMState(
            torch.zeros(shape, dtype=like.dtype, device=like.device),
            torch.zeros(shape, dtype=like.dtype, device=like.device),
        )

    def forward(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        like = self.lstm.weight_ih_l0
        x, batch_size, _ = check_sequence(x, self.input_size, self.batch_first, like)
        if state is None:
            state = self.initial_state(batch_size)
        else:
            if not isinstance(state, tuple) or len(state) != 2:
                raise TypeError(f"state must be an LSTMState (h, c), got {type(state).__name__}")
            shape = (self.num_layers, batch_size, self.hidden_size)
            state = LSTMState(
                check_state("state.h", state[0], shape, like),
                check_state("state.c", state[1], shape, like),
            )
        with fused_lstm_precision(x.device.type):
            hidden, (h, c) = self.lstm(x, tuple(state))  # hidden (B, T, H)
        output = hidden if self.head is None else self.head(hidden)
        if not self.batch_first:
            output = output.transpose(0, 1)
        # Under autocast the LSTM returns bfloat16; the state keeps the parameters' dtype.
        return output, LSTMState(h.to(like.dtype), c.to(like.dtype))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, batch_first={self.batch_first}"
