"""Multi-head dot-product attention, shared by both memories."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._checks import check_divisible, check_positive_int


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, R, h * d) -> (B, h, R, d)."""
    batch_size, rows, width = x.shape
    return x.view(batch_size, rows, num_heads, width // num_heads).transpose(1, 2)


def split_qkv(qkv: Tensor, num_heads: int, sizes: list[int]) -> list[Tensor]:
    """(B, R, h * sum(sizes)), each head's features [q | k | v] of ``sizes``, -> q, k, v,
    each (B, h, R, size).

    Splitting before moving the head axis lets backward assemble the gradient directly in
    the input's layout (one concatenation, no further copy).
    """
    batch_size, rows, _ = qkv.shape
    parts = qkv.view(batch_size, rows, num_heads, sum(sizes)).split(sizes, dim=-1)
    return [part.transpose(1, 2) for part in parts]


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, R, d) -> (B, R, h * d)."""
    batch_size, num_heads, rows, head_size = x.shape
    return x.transpose(1, 2).reshape(batch_size, rows, num_heads * head_size)


def attend(queries: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
    """softmax(scale * q k^T) v for every head, heads merged.

    queries (B, h, Q, k), keys (B, h, R, k), values (B, h, R, v) -> (B, Q, h * v).
    """
    # On CPU the backward of the bfloat16 flash-attention kernel is several times slower
    # than that of the plain matmul-softmax path, whose forward is slower only at large
    # sizes: the math path when a backward will follow (see docs/performance.md).
    bf16_training_on_cpu = (
        queries.device.type == "cpu"
        and (queries.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu"))
        and torch.is_grad_enabled()
        and any(tensor.requires_grad for tensor in (queries, keys, values))
    )
    with sdpa_kernel(SDPBackend.MATH) if bf16_training_on_cpu else nullcontext():
        attended = F.scaled_dot_product_attention(queries, keys, values, scale=scale)
    return merge_heads(attended)  # (B, Q, h * v)


def attention_weights(queries: Tensor, keys: Tensor, scale: float) -> Tensor:
    """The attention probabilities softmax(scale * q k^T): (B, h, Q, R), for inspection."""
    return torch.softmax(scale * queries @ keys.transpose(-1, -2), dim=-1)


class MultiHeadAttention(nn.Module):
    """Self-attention among the rows of a memory, as the gated slot memory uses it.

        A = concat_h(softmax(q_h k_h^T / sqrt(d)) v_h) W_o + b_o,
        q = M W_q + b_q,  k = M W_k + b_k,  v = M W_v + b_v,  d = size / num_heads

    with every W of shape (size, size). Input and output (B, N, size).
    """

    def __init__(self, size: int, num_heads: int) -> None:
        super().__init__()
        check_positive_int("size", size)
        check_positive_int("num_heads", num_heads)
        check_divisible("size", size, "num_heads", num_heads)
        self.size = size
        self.num_heads = num_heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.output = nn.Linear(size, size)

    def fused_weights(self) -> tuple[Tensor, Tensor]:
        """W_q, W_k, W_v stacked head by head (3 * size, size), [q | k | v] within each
        head as ``split_qkv`` reads them, and their biases (3 * size,): one matmul."""
        layers = (self.query, self.key, self.value)
        per_head = (3, self.num_heads, self.size // self.num_heads)  # (3, h, d)
        weight = torch.stack([layer.weight for layer in layers]).view(*per_head, self.size)
        bias = torch.stack([layer.bias for layer in layers]).view(per_head)
        return weight.transpose(0, 1).reshape(-1, self.size), bias.transpose(0, 1).reshape(-1)

    def heads(self, memory: Tensor, qkv_weight: Tensor, qkv_bias: Tensor) -> Tensor:
        """The heads' results concatenated, before W_o: memory (B, N, size) -> (B, N, size).

        ``qkv_weight`` and ``qkv_bias`` come from ``fused_weights``.
        """
        qkv = F.linear(memory, qkv_weight, qkv_bias)  # (B, N, 3 * size)
        head_size = self.size // self.num_heads
        queries, keys, values = split_qkv(qkv, self.num_heads, [head_size] * 3)  # (B, h, N, d)
        scale = head_size**-0.5
        return attend(queries, keys, values, scale)  # (B, N, size)

    def forward(self, memory: Tensor) -> Tensor:
        return self.output(self.heads(memory, *self.fused_weights()))  # (B, N, size)

    def extra_repr(self) -> str:
        return f"size={self.size}, num_heads={self.num_heads}"
