"""The Relational Memory Core (Santoro et al., 2018; Sonnet v1 semantics): forward and BPTT.

One step, input x (B, I), memory M (B, N, S), S = num_heads * head_size:

    x~ = W_x x + b_x                                   # (B, S), all steps at once
    Z  = [M ; x~]                                      # (B, N + 1, S)
    Z  = block_b(Z) for b = 1..num_blocks              # see AttentionBlock
    M~ = Z[:, :N]                                      # the input row is dropped
    i, f = split(W_i x~ + b_i + W_f tanh(M) + b_f)     # gate width S ('unit') or 1 ('memory')
    M' = sigmoid(i + input_bias) * tanh(M~) + sigmoid(f + forget_bias) * M
    (gate_style=None: M' = M~)

docs/numpy_backward.md walks through ``step_backward`` equation by equation.
"""

from __future__ import annotations

import numpy as np

from .attention import attend, attend_backward, merge_heads, split_heads
from .layers import MLP, LayerNorm, Linear, sigmoid
from .memory import MemoryCell
from .module import Module, Params
from .recurrent import Sequence

GATE_STYLES = ("unit", "memory", None)


class AttentionBlock(Module):
    """One RMC block over all rows Z (B, R, S); ``mlp`` is shared by all blocks of a core.

    qkv = LayerNorm(Z W_qkv + b_qkv)             # per head, last axis [q | k | v]
    Y   = LayerNorm(Z + MHA(q * key_size**-0.5, k, v))
    Z'  = LayerNorm(Y + MLP(Y))
    """

    def __init__(
        self, mem_size: int, num_heads: int, head_size: int, key_size: int, prefix: str = ""
    ) -> None:
        self.num_heads = num_heads
        self.key_size = key_size
        qkv_size = num_heads * (2 * key_size + head_size)
        self.qkv = Linear(mem_size, qkv_size, prefix=prefix + "qkv.")
        self.qkv_norm = LayerNorm(qkv_size, prefix=prefix + "qkv_norm.")
        self.attention_norm = LayerNorm(mem_size, prefix=prefix + "attention_norm.")
        self.mlp_norm = LayerNorm(mem_size, prefix=prefix + "mlp_norm.")

    def children(self) -> tuple[Module, ...]:
        return (self.qkv, self.qkv_norm, self.attention_norm, self.mlp_norm)

    def forward(self, params: Params, rows: np.ndarray, mlp: MLP) -> tuple[np.ndarray, tuple]:
        """rows Z (B, R, S) -> Z' (B, R, S), cache."""
        qkv, qkv_norm_cache = self.qkv_norm.forward(params, self.qkv.forward(params, rows))
        heads = split_heads(qkv, self.num_heads)  # (B, h, R, 2k + v)
        k = self.key_size
        queries, keys, values = heads[..., :k], heads[..., k : 2 * k], heads[..., 2 * k :]
        attended, attend_cache = attend(queries, keys, values, k**-0.5)  # (B, R, S)
        mid, attention_norm_cache = self.attention_norm.forward(params, rows + attended)
        mlp_out, mlp_cache = mlp.forward(params, mid)  # (B, R, S)
        out, mlp_norm_cache = self.mlp_norm.forward(params, mid + mlp_out)
        caches = (
            rows,
            qkv_norm_cache,
            attend_cache,
            attention_norm_cache,
            mlp_cache,
            mlp_norm_cache,
        )
        return out, caches

    def backward(
        self, params: Params, cache: tuple, d_out: np.ndarray, mlp: MLP, grads: Params
    ) -> np.ndarray:
        """d_out (B, R, S) -> d_rows (B, R, S)."""
        rows, qkv_norm_cache, attend_cache, attention_norm_cache, mlp_cache, mlp_norm_cache = cache
        d_sum = self.mlp_norm.backward(params, mlp_norm_cache, d_out, grads)  # d(Y + MLP(Y))
        d_mid = d_sum + mlp.backward(params, mlp_cache, d_sum, grads)  # dY
        d_sum = self.attention_norm.backward(params, attention_norm_cache, d_mid, grads)
        d_queries, d_keys, d_values = attend_backward(attend_cache, d_sum)  # per head
        d_qkv = merge_heads(np.concatenate([d_queries, d_keys, d_values], axis=-1))  # (B, R, qkv)
        d_qkv = self.qkv_norm.backward(params, qkv_norm_cache, d_qkv, grads)
        return d_sum + self.qkv.backward(params, rows, d_qkv, grads)  # residual + projection


class RelationalMemoryCell(MemoryCell):
    """``relational_rnn.RelationalMemoryCell`` (same arguments, same parameter names)."""

    def __init__(
        self,
        input_size: int,
        mem_slots: int,
        head_size: int,
        num_heads: int = 1,
        num_blocks: int = 1,
        forget_bias: float = 1.0,
        input_bias: float = 0.0,
        gate_style: str | None = "unit",
        attention_mlp_layers: int = 2,
        key_size: int | None = None,
        prefix: str = "",
    ) -> None:
        if gate_style not in GATE_STYLES:
            raise ValueError(f"gate_style must be one of {GATE_STYLES}, got {gate_style!r}")
        self.mem_slots = mem_slots
        self.mem_size = num_heads * head_size
        self.gate_style = gate_style
        self.forget_bias = float(forget_bias)
        self.input_bias = float(input_bias)
        key_size = head_size if key_size is None else key_size
        size = self.mem_size
        self.input_projection = Linear(input_size, size, prefix=prefix + "input_projection.")
        self.blocks = [
            AttentionBlock(size, num_heads, head_size, key_size, prefix=f"{prefix}blocks.{b}.")
            for b in range(num_blocks)
        ]
        self.mlp = MLP([size] * (attention_mlp_layers + 1), prefix=prefix + "mlp.")
        self.gates: tuple[Linear, ...] = ()
        if gate_style is not None:
            gate_width = size if gate_style == "unit" else 1
            self.input_gate = Linear(size, 2 * gate_width, prefix=prefix + "input_gate.")
            self.memory_gate = Linear(size, 2 * gate_width, prefix=prefix + "memory_gate.")
            self.gates = (self.input_gate, self.memory_gate)

    def children(self) -> tuple[Module, ...]:
        return (self.input_projection, *self.blocks, self.mlp, *self.gates)

    def project_input(self, params: Params, x: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple]:
        """x (T, B, I) -> (x~ (T, B, S),) and, if gated, the input's gate term (T, B, 2g)."""
        projected = self.input_projection.forward(params, x)  # (T, B, S)
        if self.gate_style is None:
            return (projected,), (x, projected)
        return (projected, self.input_gate.forward(params, projected)), (x, projected)

    def project_input_backward(
        self, params: Params, cache: tuple, d_projected: tuple[np.ndarray, ...], grads: Params
    ) -> np.ndarray:
        x, projected = cache
        d_input_row = d_projected[0]  # (T, B, S)
        if self.gate_style is not None:
            d_input_row = d_input_row + self.input_gate.backward(
                params, projected, d_projected[1], grads
            )
        return self.input_projection.backward(params, x, d_input_row, grads)  # (T, B, I)

    def step(
        self, params: Params, projected: tuple[np.ndarray, ...], memory: np.ndarray
    ) -> tuple[np.ndarray, tuple]:
        """One update of memory (B, N, S) from one step of ``project_input``'s output."""
        rows = np.concatenate([memory, projected[0][:, None]], axis=1)  # Z (B, N + 1, S)
        block_caches = []
        for block in self.blocks:
            rows, cache = block.forward(params, rows, self.mlp)
            block_caches.append(cache)
        attended = rows[:, : self.mem_slots]  # M~ (B, N, S)
        if self.gate_style is None:
            return attended, (block_caches,)
        tanh_memory = np.tanh(memory)
        gates = projected[1][:, None] + self.memory_gate.forward(params, tanh_memory)  # (B, N, 2g)
        input_gate, forget_gate = np.split(gates, 2, axis=-1)  # (B, N, g) each
        input_gate = sigmoid(input_gate + self.input_bias)
        forget_gate = sigmoid(forget_gate + self.forget_bias)
        tanh_attended = np.tanh(attended)
        new_memory = input_gate * tanh_attended + forget_gate * memory  # (B, N, S)
        cache = (block_caches, memory, tanh_memory, tanh_attended, input_gate, forget_gate)
        return new_memory, cache

    def step_backward(
        self, params: Params, cache: tuple, d_new_memory: np.ndarray, grads: Params
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """d M' (B, N, S) -> (d x~ (B, S), d gate term (B, 2g) if gated), d M (B, N, S)."""
        block_caches = cache[0]
        if self.gate_style is None:
            d_attended, d_memory, d_projected = d_new_memory, 0.0, ()
        else:
            _, memory, tanh_memory, tanh_attended, input_gate, forget_gate = cache
            d_attended = d_new_memory * input_gate * (1.0 - tanh_attended**2)  # d M~
            d_memory = d_new_memory * forget_gate  # the direct path M -> M'
            d_input_gate = self._gate_width(d_new_memory * tanh_attended)
            d_forget_gate = self._gate_width(d_new_memory * memory)
            d_gates = np.concatenate(
                [
                    d_input_gate * input_gate * (1.0 - input_gate),
                    d_forget_gate * forget_gate * (1.0 - forget_gate),
                ],
                axis=-1,
            )  # (B, N, 2g), before the sigmoids
            d_tanh_memory = self.memory_gate.backward(params, tanh_memory, d_gates, grads)
            d_memory = d_memory + d_tanh_memory * (1.0 - tanh_memory**2)
            d_projected = (d_gates.sum(axis=1),)  # the input's term was broadcast over slots
        d_rows = np.concatenate(
            [d_attended, np.zeros_like(d_attended[:, :1])], axis=1
        )  # (B, N + 1, S): the dropped input row gets no gradient from M~
        for block, block_cache in zip(reversed(self.blocks), reversed(block_caches), strict=True):
            d_rows = block.backward(params, block_cache, d_rows, self.mlp, grads)
        d_memory = d_memory + d_rows[:, : self.mem_slots]
        return (d_rows[:, self.mem_slots], *d_projected), d_memory

    def _gate_width(self, d_gate: np.ndarray) -> np.ndarray:
        """Sum a (B, N, S) gradient to the gate's width: S for 'unit', 1 for 'memory'."""
        return d_gate if self.gate_style == "unit" else d_gate.sum(axis=-1, keepdims=True)


class RelationalMemory(Sequence):
    """``relational_rnn.RelationalMemory``: x (B, T, I) -> output (B, T, N*S), memory (B, N, S)."""

    def __init__(
        self,
        input_size: int,
        mem_slots: int,
        head_size: int,
        num_heads: int = 1,
        num_blocks: int = 1,
        forget_bias: float = 1.0,
        input_bias: float = 0.0,
        gate_style: str | None = "unit",
        attention_mlp_layers: int = 2,
        key_size: int | None = None,
        batch_first: bool = True,
        prefix: str = "",
    ) -> None:
        cell = RelationalMemoryCell(
            input_size,
            mem_slots,
            head_size,
            num_heads=num_heads,
            num_blocks=num_blocks,
            forget_bias=forget_bias,
            input_bias=input_bias,
            gate_style=gate_style,
            attention_mlp_layers=attention_mlp_layers,
            key_size=key_size,
            prefix=prefix + "cell.",
        )
        super().__init__(cell, batch_first, prefix)
        self.output_size = mem_slots * cell.mem_size
