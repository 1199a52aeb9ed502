"""The gated slot memory of the original Relational RNN design: forward and BPTT.

Input u (B, H), memory M (B, N, S):

    A      = MHA(M, M, M)                   # self-attention among slots
    A[:,0] = A[:,0] + p,  p = W_in u + b_in  # (p = u when H == S)
    U      = tanh(A W_u + b_u)
    G      = sigmoid(A W_gm + b_g + u W_gu)  # W_g = [W_gm ; W_gu], shared by all slots
    M'     = G * U + (1 - G) * M
"""

from __future__ import annotations

import numpy as np

from .attention import MultiHeadAttention
from .layers import Linear, sigmoid
from .memory import MemoryCell
from .module import Module, Params


class GatedSlotMemoryCell(MemoryCell):
    """``relational_rnn.GatedSlotMemoryCell`` (same arguments, same parameter names).

    Parameters: ``attention.{query,key,value,output}``, ``input_projection`` (only when
    input_size != slot_size), ``update`` (W_u), ``gate_memory`` (W_gm, b_g) and
    ``gate_input`` (W_gu, no bias).
    """

    def __init__(
        self, input_size: int, num_slots: int, slot_size: int, num_heads: int, prefix: str = ""
    ) -> None:
        self.mem_slots = num_slots
        self.mem_size = slot_size
        self.attention = MultiHeadAttention(slot_size, num_heads, prefix=prefix + "attention.")
        self.input_projection = (
            Linear(input_size, slot_size, prefix=prefix + "input_projection.")
            if input_size != slot_size
            else None
        )
        self.update = Linear(slot_size, slot_size, prefix=prefix + "update.")
        self.gate_memory = Linear(slot_size, slot_size, prefix=prefix + "gate_memory.")
        self.gate_input = Linear(input_size, slot_size, bias=False, prefix=prefix + "gate_input.")

    def children(self) -> tuple[Module, ...]:
        projection = () if self.input_projection is None else (self.input_projection,)
        return (self.attention, *projection, self.update, self.gate_memory, self.gate_input)

    def project_input(self, params: Params, u: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple]:
        """u (T, B, H) -> p (T, B, S) and the input's gate term u W_gu (T, B, S)."""
        slot_input = (
            u if self.input_projection is None else self.input_projection.forward(params, u)
        )
        return (slot_input, self.gate_input.forward(params, u)), (u,)

    def project_input_backward(
        self, params: Params, cache: tuple, d_projected: tuple[np.ndarray, ...], grads: Params
    ) -> np.ndarray:
        (u,) = cache
        d_slot_input, d_gate_input = d_projected  # (T, B, S) each
        d_u = self.gate_input.backward(params, u, d_gate_input, grads)  # (T, B, H)
        if self.input_projection is None:
            return d_u + d_slot_input
        return d_u + self.input_projection.backward(params, u, d_slot_input, grads)

    def step(
        self, params: Params, projected: tuple[np.ndarray, ...], memory: np.ndarray
    ) -> tuple[np.ndarray, tuple]:
        """One update of memory (B, N, S) from p (B, S) and the gate term (B, S)."""
        slot_input, gate_input = projected
        attended, attention_cache = self.attention.forward(params, memory)  # A (B, N, S)
        attended[:, 0] += slot_input  # the input enters slot 0
        update = np.tanh(self.update.forward(params, attended))  # U (B, N, S)
        gate = self.gate_memory.forward(params, attended)  # (B, N, S)
        gate += gate_input[:, None]
        gate = sigmoid(gate)  # G
        new_memory = memory + gate * (update - memory)  # G * U + (1 - G) * M, (B, N, S)
        return new_memory, (attention_cache, memory, attended, update, gate)

    def step_backward(
        self, params: Params, cache: tuple, d_new_memory: np.ndarray, grads: Params
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """d M' (B, N, S) -> (d p (B, S), d gate term (B, S)), d M (B, N, S)."""
        attention_cache, memory, attended, update, gate = cache
        d_update = d_new_memory * gate * (1.0 - update**2)  # before the tanh
        d_gate = d_new_memory * (update - memory) * gate * (1.0 - gate)  # before the sigmoid
        d_attended = self.update.backward(params, attended, d_update, grads) + (
            self.gate_memory.backward(params, attended, d_gate, grads)
        )  # dA (B, N, S)
        d_memory = d_new_memory * (1.0 - gate) + self.attention.backward(
            params, attention_cache, d_attended, grads
        )
        return (d_attended[:, 0], d_gate.sum(axis=1)), d_memory
