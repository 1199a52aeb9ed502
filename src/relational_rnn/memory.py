"""Relational memories: the Relational Memory Core (RMC) and the gated slot memory.

Both memory cells split a step in two, so that sequence models can do the part that
depends only on the input for all time steps at once:

    projected = cell.project_input(x)       # x (..., I): any leading axes, e.g. (B, T, I)
    memory    = cell.step(projected, memory) # one step, projected[k] of shape (B, ...)
"""

from __future__ import annotations

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
from .attention import MultiHeadAttention, attend, attention_weights, split_heads

GATE_STYLES = ("unit", "memory", None)
MEMORY_INITS = ("identity", "zeros")


def initial_memory(
    batch_size: int,
    num_slots: int,
    slot_size: int,
    init: str = "identity",
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The initial memory (B, N, S).

    ``identity``: each batch element holds the N x N identity, zero-padded on the right
    to S columns, or truncated when S < N, so that every slot starts different.
    ``zeros``: all zeros (the original design; with the gated slot memory slots
    1..N-1 then stay identical forever).
    """
    check_positive_int("batch_size", batch_size)
    check_choice("memory_init", init, MEMORY_INITS)
    if init == "zeros":
        return torch.zeros(batch_size, num_slots, slot_size, dtype=dtype, device=device)
    eye = torch.eye(num_slots, slot_size, dtype=dtype, device=device)  # (N, S)
    return eye.expand(batch_size, num_slots, slot_size).clone()


def _check_memory(memory: Tensor | None, batch_size: int, cell: nn.Module, like: Tensor) -> Tensor:
    """Return ``memory`` checked against (B, N, S), or the cell's initial memory if None."""
    if memory is None:
        return cell.initial_state(batch_size)
    return check_state("memory", memory, (batch_size, cell.mem_slots, cell.mem_size), like)


class MLP(nn.Module):
    """``num_layers`` Linear(size, size) layers, ReLU between them and none after the last."""

    def __init__(self, size: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(size, size) for _ in range(num_layers))

    def extra_repr(self) -> str:
        return f"num_layers={len(self.layers)}"

    def forward(self, x: Tensor) -> Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x if index == 0 else F.relu(x))
        return x


class AttentionBlock(nn.Module):
    """One block of the RMC: attention over all rows, then the (shared) MLP.

        qkv = LayerNorm(Z W_qkv + b_qkv)        # per head, last axis [q | k | v]
        Z   = LayerNorm(Z + MHA(q * key_size**-0.5, k, v))
        Z   = LayerNorm(Z + MLP(Z))

    Each block owns its qkv projection and its three LayerNorms; the MLP is passed in
    because all blocks of a core share it.
    """

    def __init__(self, mem_size: int, num_heads: int, head_size: int, key_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_size = key_size
        self.head_size = head_size
        qkv_size = num_heads * (2 * key_size + head_size)
        self.qkv = nn.Linear(mem_size, qkv_size)
        self.qkv_norm = nn.LayerNorm(qkv_size)
        self.attention_norm = nn.LayerNorm(mem_size)
        self.mlp_norm = nn.LayerNorm(mem_size)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, key_size={self.key_size}, head_size={self.head_size}"

    def queries_keys_values(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """rows (B, R, S) -> q, k (B, h, R, key_size) and v (B, h, R, head_size)."""
        qkv = split_heads(self.qkv_norm(self.qkv(rows)), self.num_heads)  # (B, h, R, 2k + v)
        return qkv.split([self.key_size, self.key_size, self.head_size], dim=-1)

    def forward(self, rows: Tensor, mlp: MLP, num_queries: int) -> Tensor:
        """rows (B, R, S) -> (B, num_queries, S): the first ``num_queries`` rows updated.

        Keys and values come from all R rows; rows past ``num_queries`` are about to be
        discarded, so their queries, attention output and MLP are not computed.
        """
        queries, keys, values = self.queries_keys_values(rows)
        queries = queries[:, :, :num_queries]  # (B, h, Q, k)
        attended = attend(queries, keys, values, self.key_size**-0.5)  # (B, Q, S)
        rows = self.attention_norm(rows[:, :num_queries] + attended)  # (B, Q, S)
        return self.mlp_norm(rows + mlp(rows))  # (B, Q, S)

    def attention_weights(self, rows: Tensor) -> Tensor:
        """The attention probabilities of every row over every row: (B, h, R, R)."""
        queries, keys, _ = self.queries_keys_values(rows)
        return attention_weights(queries, keys, self.key_size**-0.5)


class RelationalMemoryCell(nn.Module):
    """One step of the Relational Memory Core (Santoro et al., 2018; Sonnet v1 semantics).

    Input x (B, I), memory M (B, N, S) with S = mem_size = num_heads * head_size:

        x~ = W_x x + b_x                                   # (B, S)
        Z  = [M ; x~]                                      # (B, N + 1, S)
        Z  = block_b(Z) for b = 1..num_blocks              # see AttentionBlock
        M~ = Z[:, :N]                                      # the input row is dropped
        i, f = split(W_i x~ + b_i + W_f tanh(M) + b_f)     # gate width S ('unit') or 1 ('memory')
        M' = sigmoid(i + input_bias) * tanh(M~) + sigmoid(f + forget_bias) * M
        (gate_style=None: M' = M~)

    ``forward(x, memory=None)`` returns ``(output, memory)``: output (B, N * S) is the
    flattened new memory (B, N, S).
    """

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
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.mem_slots = check_positive_int("mem_slots", mem_slots)
        self.head_size = check_positive_int("head_size", head_size)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.num_blocks = check_positive_int("num_blocks", num_blocks)
        self.attention_mlp_layers = check_positive_int("attention_mlp_layers", attention_mlp_layers)
        self.key_size = check_positive_int("key_size", head_size if key_size is None else key_size)
        self.gate_style = check_choice("gate_style", gate_style, GATE_STYLES)
        self.forget_bias = float(forget_bias)
        self.input_bias = float(input_bias)
        self.mem_size = self.num_heads * self.head_size

        self.input_projection = nn.Linear(input_size, self.mem_size)
        self.blocks = nn.ModuleList(
            AttentionBlock(self.mem_size, num_heads, head_size, self.key_size)
            for _ in range(num_blocks)
        )
        self.mlp = MLP(self.mem_size, attention_mlp_layers)
        if gate_style is not None:
            gate_width = self.mem_size if gate_style == "unit" else 1
            self.input_gate = nn.Linear(self.mem_size, 2 * gate_width)
            self.memory_gate = nn.Linear(self.mem_size, 2 * gate_width)

    def initial_state(self, batch_size: int) -> Tensor:
        """The identity-padded initial memory (B, N, S) on the parameters' dtype and device."""
        like = self.input_projection.weight
        return initial_memory(
            batch_size, self.mem_slots, self.mem_size, dtype=like.dtype, device=like.device
        )

    def project_input(self, x: Tensor) -> tuple[Tensor, ...]:
        """x (..., I) -> (x~ (..., S),), and the input's gate term (..., 2g) if gated."""
        projected = self.input_projection(x)
        if self.gate_style is None:
            return (projected,)
        return projected, self.input_gate(projected)

    def step(self, projected: tuple[Tensor, ...], memory: Tensor) -> Tensor:
        """One update of memory (B, N, S) from one step of ``project_input``'s output."""
        rows = torch.cat([memory, projected[0].unsqueeze(1)], dim=1)  # (B, N + 1, S)
        for index, block in enumerate(self.blocks):
            last = index == self.num_blocks - 1
            rows = block(rows, self.mlp, self.mem_slots if last else self.mem_slots + 1)
        if self.gate_style is None:
            return rows  # (B, N, S)
        gates = projected[1].unsqueeze(1) + self.memory_gate(torch.tanh(memory))  # (B, N, 2g)
        input_gate, forget_gate = gates.chunk(2, dim=-1)  # (B, N, g) each
        input_gate = torch.sigmoid(input_gate + self.input_bias)
        forget_gate = torch.sigmoid(forget_gate + self.forget_bias)
        return input_gate * torch.tanh(rows) + forget_gate * memory  # (B, N, S)

    def attention_weights(self, x: Tensor, memory: Tensor) -> list[Tensor]:
        """The attention probabilities of each block during one step: (B, h, N + 1, N + 1) each.

        Rows and columns are the memory slots followed by the input row.
        """
        rows = torch.cat([memory, self.input_projection(x).unsqueeze(1)], dim=1)
        weights = []
        for block in self.blocks:
            weights.append(block.attention_weights(rows))
            rows = block(rows, self.mlp, self.mem_slots + 1)
        return weights

    def forward(self, x: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        like = self.input_projection.weight
        x = check_step_input(x, self.input_size, like)
        memory = _check_memory(memory, x.shape[0], self, like)
        memory = self.step(self.project_input(x), memory)
        return memory.flatten(1), memory

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, mem_slots={self.mem_slots}, "
            f"head_size={self.head_size}, num_heads={self.num_heads}, "
            f"num_blocks={self.num_blocks}, key_size={self.key_size}, "
            f"gate_style={self.gate_style!r}, forget_bias={self.forget_bias}, "
            f"input_bias={self.input_bias}, attention_mlp_layers={self.attention_mlp_layers}"
        )


class RelationalMemory(nn.Module):
    """The Relational Memory Core over a sequence (see ``RelationalMemoryCell``).

    ``output, memory = rmc(x, memory=None)`` with x (B, T, I) (or (T, B, I) when
    ``batch_first=False``), output (B, T, N * S) (time first likewise) and the final
    memory (B, N, S), always batch first. ``memory=None`` starts from ``initial_state``.
    The input projections for all steps are computed in one batched operation.
    """

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
    ) -> None:
        super().__init__()
        self.cell = RelationalMemoryCell(
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
        )
        self.batch_first = bool(batch_first)
        self.input_size = input_size
        self.mem_slots = mem_slots
        self.mem_size = self.cell.mem_size
        self.output_size = mem_slots * self.mem_size

    def initial_state(self, batch_size: int) -> Tensor:
        """The identity-padded initial memory (B, N, S)."""
        return self.cell.initial_state(batch_size)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        like = self.cell.input_projection.weight
        x, batch_size, steps = check_sequence(x, self.input_size, self.batch_first, like)
        memory = _check_memory(memory, batch_size, self.cell, like)
        projected = self.cell.project_input(x)  # each (B, T, ...)
        outputs = []
        for t in range(steps):
            memory = self.cell.step(tuple(p[:, t] for p in projected), memory)  # (B, N, S)
            outputs.append(memory.flatten(1))
        output = torch.stack(outputs, dim=1 if self.batch_first else 0)  # (B, T, N * S)
        return output, memory

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}"


class GatedSlotMemoryCell(nn.Module):
    """The gated slot memory of the original Relational RNN design, one step.

    Input u (B, H), memory M (B, N, S):

        A      = MHA(M, M, M)                   # self-attention among slots
        A[:,0] = A[:,0] + p,  p = W_in u + b_in  # (p = u when H == S)
        U      = tanh(A W_u + b_u)
        G      = sigmoid([A_i ; u] W_g + b_g)    # per slot, weights shared by all slots
        M'     = G * U + (1 - G) * M

    W_g is stored as two parts, ``gate_memory`` (S -> S, with b_g) acting on A_i and
    ``gate_input`` (H -> S) acting on u, so that the input's part can be computed for
    all time steps at once.
    """

    def __init__(self, input_size: int, num_slots: int, slot_size: int, num_heads: int) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.mem_slots = check_positive_int("num_slots", num_slots)
        self.mem_size = check_positive_int("slot_size", slot_size)
        self.num_heads = check_positive_int("num_heads", num_heads)
        check_divisible("slot_size", slot_size, "num_heads", num_heads)
        self.attention = MultiHeadAttention(slot_size, num_heads)
        self.input_projection = (
            nn.Linear(input_size, slot_size) if input_size != slot_size else None
        )
        self.update = nn.Linear(slot_size, slot_size)
        self.gate_memory = nn.Linear(slot_size, slot_size)
        self.gate_input = nn.Linear(input_size, slot_size, bias=False)

    def initial_state(self, batch_size: int, init: str = "identity") -> Tensor:
        """The initial memory (B, N, S); see ``initial_memory``."""
        like = self.update.weight
        return initial_memory(
            batch_size, self.mem_slots, self.mem_size, init, dtype=like.dtype, device=like.device
        )

    def project_input(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """u (..., H) -> p (..., S), the input's gate term u W_g[S:] (..., S)."""
        projected = u if self.input_projection is None else self.input_projection(u)
        return projected, self.gate_input(u)

    def step(self, projected: tuple[Tensor, ...], memory: Tensor) -> Tensor:
        """One update of memory (B, N, S) from one step of ``project_input``'s output."""
        slot_input, gate_input = projected  # (B, S) each
        attended = self.attention(memory)  # (B, N, S)
        attended = torch.cat([attended[:, :1] + slot_input.unsqueeze(1), attended[:, 1:]], dim=1)
        update = torch.tanh(self.update(attended))  # (B, N, S)
        gate = torch.sigmoid(self.gate_memory(attended) + gate_input.unsqueeze(1))  # (B, N, S)
        return gate * update + (1 - gate) * memory  # (B, N, S)

    def forward(self, u: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step: u (B, H) -> (output (B, N * S), memory (B, N, S))."""
        like = self.update.weight
        u = check_step_input(u, self.input_size, like)
        memory = _check_memory(memory, u.shape[0], self, like)
        memory = self.step(self.project_input(u), memory)
        return memory.flatten(1), memory

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, num_slots={self.mem_slots}, "
            f"slot_size={self.mem_size}, num_heads={self.num_heads}"
        )
