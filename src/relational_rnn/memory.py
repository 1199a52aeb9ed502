"""Relational memories: the Relational Memory Core (RMC) and the gated slot memory.

Both memory cells split a step in two, so that sequence models can do the part that
depends only on the input for all time steps at once:

    projected = cell.project_input(x)                 # x (..., I): any leading axes, e.g. (T, B, I)
    weights   = cell.step_weights()                   # weights fused once per sequence
    memory    = cell.step(projected, memory, weights)  # one step, projected[k] of shape (B, ...)

``scan`` runs the steps over a whole sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._checks import (
    check_choice,
    check_divisible,
    check_positive_int,
    check_sequence,
    check_state,
    check_step_input,
)
from ._cost import folding_pays
from .attention import MultiHeadAttention, attend, attention_weights, split_qkv
from .gated_scan import GatedSlotScan, gated_scan_applies

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


def check_recompute(recompute: object) -> bool:
    """Return ``recompute`` if it is a bool, else raise (a string such as "no" is not)."""
    if not isinstance(recompute, bool):
        raise TypeError(f"recompute must be True or False, got {recompute!r}")
    return recompute


def scan(
    cell: nn.Module, projected: tuple[Tensor, ...], memory: Tensor, recompute: bool = False
) -> tuple[Tensor, Tensor]:
    """The memories (T, B, N, S) after each step, from ``cell.project_input`` of a whole
    sequence, and the last of them (B, N, S) as a tensor of its own where there is one (so
    that a gradient of the last memory alone does not become a zero-filled (T, B, N, S)).

    projected: each (T, B, ...), time first so that each step's slice is contiguous. With
    ``recompute`` the steps' intermediate results are not kept for backward but recomputed
    from each step's inputs (torch.utils.checkpoint): a fraction of the activation memory
    for about one more forward pass of compute. A gated slot memory in training runs as
    one autograd Function with its own backward (``relational_rnn.gated_scan``).
    """
    weights = cell.step_weights()
    if (
        isinstance(cell, GatedSlotMemoryCell)
        and not recompute
        and gated_scan_applies(*projected, memory, *weights)
    ):
        memories = GatedSlotScan.apply(*projected, memory, *weights, cell.num_heads)
        return memories, memories[-1]
    memories = []
    for step_input in zip(*(p.unbind(0) for p in projected), strict=True):
        if recompute:
            memory = checkpoint(
                cell.step,
                step_input,
                memory,
                weights,
                use_reentrant=False,
                preserve_rng_state=False,
            )
        else:
            memory = cell.step(step_input, memory, weights)
        memories.append(memory)
    return torch.stack(memories), memory  # (T, B, N, S), (B, N, S)


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
        return self.split(self.qkv_norm(self.qkv(rows)))  # from (B, R, h * (2k + v))

    def split(self, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised qkv (B, R, h * (2k + v)) -> q, k (B, h, R, k) and v (B, h, R, v)."""
        sizes = [self.key_size, self.key_size, self.head_size]
        return tuple(split_qkv(qkv, self.num_heads, sizes))

    def forward(
        self, rows: Tensor, mlp: MLP, num_queries: int, input_qkv: Tensor | None = None
    ) -> Tensor:
        """rows (B, R, S) -> (B, num_queries, S): the first ``num_queries`` rows updated.

        Keys and values come from all R rows, and from the input row when its normalised
        qkv ``input_qkv`` (B, 1, W) is given instead of the row itself (the first block
        of a one-block core: there the input row depends only on the input, so its qkv is
        computed for all steps at once, and only its key and value are used). Rows past
        ``num_queries`` are about to be discarded, so their queries, attention output and
        MLP are not computed.
        """
        queries, keys, values = self.queries_keys_values(rows)
        if input_qkv is not None:
            _, input_keys, input_values = self.split(input_qkv)  # (B, h, 1, k or v)
            keys = torch.cat([keys, input_keys], dim=2)  # (B, h, R + 1, k)
            values = torch.cat([values, input_values], dim=2)  # (B, h, R + 1, v)
        if num_queries < rows.shape[1]:  # a full slice would still cost a copy in backward
            queries, rows = queries[:, :, :num_queries], rows[:, :num_queries]
        attended = attend(queries, keys, values, self.key_size**-0.5)  # (B, Q, S)
        rows = self.attention_norm(rows + attended)  # (B, Q, S)
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
        """x (..., I) -> what the steps need of the input, for all steps at once:

        - the input row: x~ (..., S), or with one block, whose only use of it is its key
          and value, its normalised qkv (..., W) (``AttentionBlock``'s ``input_qkv``);
        - if gated, the gates' input term (..., 2g): W_i x~ + b_i + b_f + [input_bias |
          forget_bias], all that does not depend on M.

        With one block x~ itself is not needed, and where that takes fewer operations
        (forming A W_x included: over a batch of sequences, not one step of one sample) W_x
        is folded into the maps of x~.
        """
        projection = self.input_projection
        width = self.input_gate.out_features if self.gate_style is not None else 0
        width += self.blocks[0].qkv.out_features  # the maps' outputs (with one block)
        rows = x.numel() // self.input_size
        fold = self.num_blocks == 1 and folding_pays(rows, self.input_size, self.mem_size, width)
        row = None if fold else projection(x)  # x~ (..., S)

        def of_row(layer: nn.Linear, bias: Tensor) -> Tensor:
            """layer.weight x~ + bias, computed from x when W_x is folded in:
            (W_x x + b_x) A^T + b = x (A W_x)^T + (A b_x + b)."""
            if row is not None:
                return F.linear(row, layer.weight, bias)
            folded_bias = F.linear(projection.bias, layer.weight, bias)
            return F.linear(x, layer.weight @ projection.weight, folded_bias)

        if self.num_blocks == 1:
            block = self.blocks[0]
            outputs = [block.qkv_norm(of_row(block.qkv, block.qkv.bias))]  # (..., W)
        else:
            outputs = [row]
        if self.gate_style is not None:
            bias = self.input_gate.bias + self.memory_gate.bias  # (2g,)
            constants = bias.new_tensor([self.input_bias, self.forget_bias])
            bias = bias + constants.repeat_interleave(bias.shape[0] // 2)
            outputs.append(of_row(self.input_gate, bias))  # (..., 2g)
        return tuple(outputs)

    def step_weights(self) -> tuple[Tensor, ...]:
        """Nothing to fuse: the RMC's projections are single Linears already."""
        return ()

    def step(
        self,
        projected: tuple[Tensor, ...],
        memory: Tensor,
        weights: tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        """One update of memory (B, N, S) from one step of ``project_input``'s output
        (``weights``: unused, for the same interface as the gated slot memory)."""
        if self.num_blocks == 1:
            rows = self.blocks[0](memory, self.mlp, self.mem_slots, projected[0].unsqueeze(1))
        else:
            rows = torch.cat([memory, projected[0].unsqueeze(1)], dim=1)  # (B, N + 1, S)
            for index, block in enumerate(self.blocks):
                last = index == self.num_blocks - 1
                rows = block(rows, self.mlp, self.mem_slots if last else self.mem_slots + 1)
        if self.gate_style is None:
            return rows  # (B, N, S)
        gates = F.linear(torch.tanh(memory), self.memory_gate.weight)  # (B, N, 2g)
        gates = torch.sigmoid(gates + projected[1].unsqueeze(1))  # (B, N, 2g)
        input_gate, forget_gate = gates.chunk(2, dim=-1)  # (B, N, g) each
        return torch.addcmul(forget_gate * memory, input_gate, torch.tanh(rows))  # (B, N, S)

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

    ``recompute=True`` saves memory in training: each step's intermediate results are
    recomputed in backward instead of stored (see ``scan``); the results are the same.
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
        recompute: bool = False,
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
        self.recompute = check_recompute(recompute)
        self.input_size = input_size
        self.mem_slots = mem_slots
        self.mem_size = self.cell.mem_size
        self.output_size = mem_slots * self.mem_size

    def initial_state(self, batch_size: int) -> Tensor:
        """The identity-padded initial memory (B, N, S)."""
        return self.cell.initial_state(batch_size)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        like = self.cell.input_projection.weight
        x, batch_size, _ = check_sequence(x, self.input_size, self.batch_first, like)
        memory = _check_memory(memory, batch_size, self.cell, like)
        projected = self.cell.project_input(x.transpose(0, 1))  # each (T, B, ...)
        memories, memory = scan(self.cell, projected, memory, self.recompute)  # (T, B, N, S)
        output = memories.transpose(0, 1) if self.batch_first else memories
        return output.flatten(2), memory  # (B, T, N * S): batch first a transposed view

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}, recompute={self.recompute}"


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

    A enters U and G only through linear maps, so a step is computed as (row vectors)

        C       = concat_h(softmax(q_h k_h^T / sqrt(d)) v_h)     # A = C W_o + b_o
        [U~|G~] = C (W_o W_ug) + E,  W_ug = [W_u | W_g[:S]]       # (B, N, 2S)
        E       = b_o W_ug + [b_u | b_g] + e_0 (p W_ug) + [0 | u W_g[S:]]

    where E depends only on the input (``project_input``: all steps at once) and
    W_o W_ug is formed once per sequence (``step_weights``). tanh(x) = 2 sigmoid(2x) - 1,
    so W_u and b_u enter doubled and one sigmoid over [U~ | G~] serves both halves (on
    CPU, torch's tanh is several times slower than its sigmoid).
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

    def _update_gate(self) -> tuple[Tensor, Tensor]:
        """W_ug (2S, S) and b_ug (2S,): the update's and the gate's weights on A and biases,
        stacked, the update's doubled (the step's sigmoid(2x) stands for tanh)."""
        weight = torch.cat([2 * self.update.weight, self.gate_memory.weight])
        return weight, torch.cat([2 * self.update.bias, self.gate_memory.bias])

    def project_input(self, u: Tensor) -> tuple[Tensor]:
        """u (..., H) -> (E (..., N, 2S),): the input's and the biases' part of [U~ | G~]."""
        projected = u if self.input_projection is None else self.input_projection(u)  # (..., S)
        weight, bias = self._update_gate()  # (2S, S), (2S,)
        common = F.linear(self.attention.output.bias, weight, bias)  # (2S,)
        common = (common + F.pad(self.gate_input(u), (self.mem_size, 0))).unsqueeze(-2)
        first = common + F.linear(projected, weight).unsqueeze(-2)  # (..., 1, 2S)
        others = common.expand(*common.shape[:-2], self.mem_slots - 1, -1)  # (..., N - 1, 2S)
        return (torch.cat([first, others], dim=-2),)  # (..., N, 2S)

    def step_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """The fused W_q|W_k|W_v (3S, S), its bias (3S,) and W_o W_ug (2S, S)."""
        output_weight = self._update_gate()[0] @ self.attention.output.weight
        return (*self.attention.fused_weights(), output_weight)

    def step(
        self,
        projected: tuple[Tensor, ...],
        memory: Tensor,
        weights: tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        """One update of memory (B, N, S) from one step of ``project_input``'s output and
        ``step_weights()`` (formed here when None)."""
        qkv_weight, qkv_bias, output_weight = self.step_weights() if weights is None else weights
        heads = self.attention.heads(memory, qkv_weight, qkv_bias)  # (B, N, S)
        update_gate = torch.addmm(  # (B N, 2S): [2U~ | G~]
            projected[0].flatten(0, 1), heads.flatten(0, 1), output_weight.t()
        ).view_as(projected[0])
        # Under autocast the matmul is bfloat16; the gating and the memory stay in M's dtype.
        update_gate = torch.sigmoid(update_gate.to(memory.dtype))
        update, gate = update_gate.chunk(2, dim=-1)  # sigmoid(2 U~), G: (B, N, S) each
        return torch.lerp(memory, 2 * update - 1, gate)  # G U + (1 - G) M

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
