"""The LSTM (PyTorch's equations and gate order i, f, g, o) and the LSTM baseline.

z = x W_ih^T + b_ih + h W_hh^T + b_hh           # (B, 4H), split into i, f, g, o
i, f, o = sigmoid(.),  g = tanh(.)
c' = f * c + i * g,    h' = o * tanh(c')
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layers import Linear, sigmoid
from .module import Module, Params, uniform
from .recurrent import Cell, Sequence


class LSTMState(NamedTuple):
    """h and c: (B, H) for a cell, (num_layers, B, H) for the LSTM baseline."""

    h: np.ndarray
    c: np.ndarray


class LSTMCell(Cell):
    """One LSTM layer with parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``.

    ``suffix`` is appended to those names (``"_l0"`` for layer 0 of ``torch.nn.LSTM``).
    The input term x W_ih^T + b_ih + b_hh is computed for all steps at once.
    """

    def __init__(
        self, input_size: int, hidden_size: int, prefix: str = "", suffix: str = ""
    ) -> None:
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = f"{prefix}weight_ih{suffix}"  # (4H, I)
        self.weight_hh = f"{prefix}weight_hh{suffix}"  # (4H, H)
        self.bias_ih = f"{prefix}bias_ih{suffix}"  # (4H,)
        self.bias_hh = f"{prefix}bias_hh{suffix}"  # (4H,)

    def init_params(self, rng: np.random.Generator, dtype=np.float64) -> Params:
        """U(-1/sqrt(H), 1/sqrt(H)) like PyTorch, then the forget-gate bias set to 1."""
        four_h, bound = 4 * self.hidden_size, self.hidden_size**-0.5
        params = {
            self.weight_ih: uniform(rng, (four_h, self.input_size), bound, dtype),
            self.weight_hh: uniform(rng, (four_h, self.hidden_size), bound, dtype),
            self.bias_ih: uniform(rng, (four_h,), bound, dtype),
            self.bias_hh: uniform(rng, (four_h,), bound, dtype),
        }
        forget = slice(self.hidden_size, 2 * self.hidden_size)
        params[self.bias_ih][forget] = 1.0
        params[self.bias_hh][forget] = 0.0
        return params

    def initial_state(self, batch_size: int, dtype=np.float64) -> LSTMState:
        zeros = np.zeros((batch_size, self.hidden_size), dtype)
        return LSTMState(zeros, zeros.copy())

    def forward_sequence(
        self, params: Params, x: np.ndarray, state: LSTMState
    ) -> tuple[np.ndarray, LSTMState, tuple]:
        """x (T, B, I) -> hidden (T, B, H), final LSTMState, cache."""
        steps, batch_size, _ = x.shape
        four_h = 4 * self.hidden_size
        weight_hh_t = np.ascontiguousarray(params[self.weight_hh].T)  # (H, 4H), read T times
        bias = params[self.bias_ih] + params[self.bias_hh]
        input_term = (x.reshape(-1, self.input_size) @ params[self.weight_ih].T + bias).reshape(
            steps, batch_size, four_h
        )  # (T, B, 4H)
        gates = np.empty((steps, batch_size, four_h), x.dtype)  # i, f, g, o after σ / tanh
        cells = np.empty((steps + 1, batch_size, self.hidden_size), x.dtype)  # c_0 .. c_T
        hidden = np.empty((steps + 1, batch_size, self.hidden_size), x.dtype)  # h_0 .. h_T
        hidden[0], cells[0] = state
        for t in range(steps):
            z = hidden[t] @ weight_hh_t  # (B, 4H)
            z += input_term[t]
            gates[t] = sigmoid(z)
            i, f, g, o = self.split(gates[t])  # (B, H) views
            g[...] = np.tanh(self.split(z)[2])  # the candidate takes tanh, not sigmoid
            cells[t + 1] = f * cells[t] + i * g
            hidden[t + 1] = o * np.tanh(cells[t + 1])
        final = LSTMState(hidden[-1].copy(), cells[-1].copy())
        return hidden[1:], final, (x, hidden, cells, gates)

    def backward_sequence(
        self,
        params: Params,
        cache: tuple,
        d_outputs: np.ndarray,
        d_state: LSTMState | None,
        grads: Params,
    ) -> tuple[np.ndarray, LSTMState]:
        """d_outputs (T, B, H) -> dx (T, B, I), LSTMState(dh_0, dc_0)."""
        x, hidden, cells, gates = cache
        weight_hh = params[self.weight_hh]
        if d_state is None:
            d_state = self.initial_state(x.shape[1], x.dtype)
        dh, dc = d_state.h, d_state.c  # gradients flowing in from step t + 1
        d_z = np.empty_like(gates)  # (T, B, 4H): gradient of the gate pre-activations
        for t in reversed(range(x.shape[0])):
            i, f, g, o = self.split(gates[t])
            d_i, d_f, d_g, d_o = self.split(d_z[t])
            tanh_c = np.tanh(cells[t + 1])
            dh = dh + d_outputs[t]
            dc = dc + dh * o * (1.0 - tanh_c**2)
            d_i[...] = dc * g * i * (1.0 - i)
            d_f[...] = dc * cells[t] * f * (1.0 - f)
            d_g[...] = dc * i * (1.0 - g**2)
            d_o[...] = dh * tanh_c * o * (1.0 - o)
            dc = dc * f  # to c_{t-1}
            dh = d_z[t] @ weight_hh  # to h_{t-1}
        d_z_rows = d_z.reshape(-1, 4 * self.hidden_size)  # (T*B, 4H)
        grads[self.weight_ih] += d_z_rows.T @ x.reshape(-1, self.input_size)
        grads[self.weight_hh] += d_z_rows.T @ hidden[:-1].reshape(-1, self.hidden_size)
        grads[self.bias_ih] += d_z_rows.sum(axis=0)
        grads[self.bias_hh] += d_z_rows.sum(axis=0)
        d_x = (d_z_rows @ params[self.weight_ih]).reshape(x.shape)  # (T, B, I)
        return d_x, LSTMState(dh, dc)

    def split(self, gates: np.ndarray) -> np.ndarray:
        """(B, 4H) -> i, f, g, o: views (B, H) on the four blocks (unpack the result)."""
        return gates.reshape(gates.shape[0], 4, self.hidden_size).swapaxes(0, 1)


class LSTMStack(Cell):
    """``num_layers`` LSTM layers named like ``torch.nn.LSTM`` (``lstm.weight_ih_l0``, ...),
    then an optional Linear ``head``. State: LSTMState with h, c (num_layers, B, H)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        output_size: int | None = None,
        prefix: str = "",
    ) -> None:
        self.hidden_size = hidden_size
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = [
            LSTMCell(size, hidden_size, prefix=prefix + "lstm.", suffix=f"_l{k}")
            for k, size in enumerate(sizes)
        ]
        self.head = (
            Linear(hidden_size, output_size, prefix=prefix + "head.")
            if output_size is not None
            else None
        )

    def children(self) -> tuple[Module, ...]:
        return (*self.layers, *([self.head] if self.head else []))

    def initial_state(self, batch_size: int, dtype=np.float64) -> LSTMState:
        zeros = np.zeros((len(self.layers), batch_size, self.hidden_size), dtype)
        return LSTMState(zeros, zeros.copy())

    def forward_sequence(
        self, params: Params, x: np.ndarray, state: LSTMState
    ) -> tuple[np.ndarray, LSTMState, tuple]:
        """x (T, B, I) -> output (T, B, output_size or H), LSTMState (L, B, H) each."""
        caches, finals = [], []
        for k, layer in enumerate(self.layers):
            x, final, cache = layer.forward_sequence(params, x, LSTMState(state.h[k], state.c[k]))
            caches.append(cache)
            finals.append(final)
        hidden = x  # (T, B, H)
        output = hidden if self.head is None else self.head.forward(params, hidden)
        final = LSTMState(np.stack([f.h for f in finals]), np.stack([f.c for f in finals]))
        return output, final, (caches, hidden)

    def backward_sequence(
        self,
        params: Params,
        cache: tuple,
        d_outputs: np.ndarray,
        d_state: LSTMState | None,
        grads: Params,
    ) -> tuple[np.ndarray, LSTMState]:
        caches, hidden = cache
        d_x = (
            d_outputs if self.head is None else self.head.backward(params, hidden, d_outputs, grads)
        )
        d_h0, d_c0 = [], []
        for k in reversed(range(len(self.layers))):
            d_final = None if d_state is None else LSTMState(d_state.h[k], d_state.c[k])
            d_x, d_initial = self.layers[k].backward_sequence(
                params, caches[k], d_x, d_final, grads
            )
            d_h0.insert(0, d_initial.h)
            d_c0.insert(0, d_initial.c)
        return d_x, LSTMState(np.stack(d_h0), np.stack(d_c0))


class LSTMBaseline(Sequence):
    """``relational_rnn.LSTMBaseline``: x (B, T, I) -> (B, T, output_size or H), LSTMState.

    No dropout: the reference computes what the PyTorch module computes in eval mode
    (or with ``dropout=0``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        output_size: int | None = None,
        batch_first: bool = True,
        prefix: str = "",
    ) -> None:
        cell = LSTMStack(input_size, hidden_size, num_layers, output_size, prefix)
        super().__init__(cell, batch_first, prefix)
        self.output_size = output_size if output_size is not None else hidden_size
