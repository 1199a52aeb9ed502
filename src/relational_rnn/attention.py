"""Multi-head dot-product attention, shared by both memories."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_divisible, check_positive_int
from .precision import cpu_compute_dtype, native_on_cpu


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


# On CPU, training attention over few rows for many (batch, head) pairs is faster as
# batched matrix products with the backward below than in scaled_dot_product_attention,
# whose flash kernel pays a fixed cost per pair (and whose bfloat16 backward is slow) and
# whose math path calls a softmax that is slow over a short last axis. Below this many
# pairs the flash kernel is the faster one on one thread; on more, its float32 version
# is slower than on one, and the matrix products win at every size (see
# docs/performance.md and benchmarks/attention.py).
MATMUL_ATTENTION_MIN_PAIRS = 256


def softmax_of_scores(scores: Tensor, scale: float) -> Tensor:
    """softmax(scale * scores) over the last axis, in place on ``scores``.

    Written out because torch.softmax is several times slower over a last axis as
    short as the rows of a memory (N + 1 <= a few dozen).
    """
    probs = scores.sub_(scores.amax(-1, keepdim=True)).mul_(scale).exp_()
    return probs.div_(probs.sum(-1, keepdim=True))


def _in(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` in ``dtype``; the check is cheaper than a no-op ``x.to(dtype)`` in a step loop."""
    return x if x.dtype == dtype else x.to(dtype)


def attention_probs(
    queries: Tensor, keys: Tensor, scale: float, out: Tensor | None = None
) -> Tensor:
    """P = softmax(scale * q k^T) of batched matrices q (P, Q, k) and k (P, R, k): (P, Q, R),
    in float32 (float64 for float64 inputs). ``out``: a buffer for the scores, which then
    holds P when the inputs are in that dtype already."""
    scores = torch.bmm(queries, keys.transpose(1, 2), out=out)  # (P, Q, R)
    dtype = torch.float64 if queries.dtype == torch.float64 else torch.float32
    return softmax_of_scores(_in(scores, dtype), scale)


def attention_gradients(
    grad: Tensor,
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    probs: Tensor,
    scale: float,
    out: tuple[Tensor | None, ...] = (None, None, None),
) -> tuple[Tensor, Tensor, Tensor]:
    """dq, dk, dv of P v, P = softmax(S), S = scale * q k^T, from the output's gradient
    dO (P, Q, v) and the inputs' batched matrices (P, rows, size) and P (``attention_probs``):

        dv = P^T dO,   dP = dO v^T,   dS = P * (dP - rowsum(dP * P)),
        dq = scale * dS k,   dk = scale * dS^T q

    The products run in the inputs' dtype, the softmax's gradient in P's. ``out``: buffers
    for dq, dk and dv.
    """
    grad_probs = _in(torch.bmm(grad, values.transpose(1, 2)), probs.dtype)  # (P, Q, R)
    grad_probs -= (grad_probs * probs).sum(-1, keepdim=True)  # in place: a fresh tensor
    grad_scores = _in(grad_probs.mul_(probs).mul_(scale), queries.dtype)  # (P, Q, R)
    return (
        torch.bmm(grad_scores, keys, out=out[0]),  # (P, Q, k)
        torch.bmm(grad_scores.transpose(1, 2), queries, out=out[1]),  # (P, R, k)
        torch.bmm(_in(probs, grad.dtype).transpose(1, 2), grad, out=out[2]),  # (P, R, v)
    )


class MatmulAttention(torch.autograd.Function):
    """softmax(scale * q k^T) v as batched matrix products, with its own backward.

    queries (B, h, Q, k), keys (B, h, R, k), values (B, h, R, v) -> (B, h, Q, v). The
    products run in the inputs' dtype, or in autocast's (bfloat16) under CPU autocast;
    the softmax and its gradient in float32 (float64 for float64 inputs); backward is
    ``attention_gradients``.
    """

    @staticmethod
    def forward(ctx, queries: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
        batch_size, num_heads, num_queries, _ = queries.shape
        dtype = cpu_compute_dtype(queries)
        q, k, v = (  # (B h, rows, size) each, contiguous
            x.to(dtype).reshape(batch_size * num_heads, x.shape[2], x.shape[3])
            for x in (queries, keys, values)
        )
        probs = attention_probs(q, k, scale)  # (B h, Q, R)
        attended = torch.bmm(probs.to(v.dtype), v)  # (B h, Q, v)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale = scale
        return attended.view(batch_size, num_heads, num_queries, -1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        q, k, v, probs = ctx.saved_tensors
        batch_size, num_heads = grad.shape[:2]
        grad = grad.to(v.dtype).reshape(v.shape[0], -1, v.shape[2])  # (B h, Q, v)
        grads = attention_gradients(grad, q, k, v, probs, ctx.scale)
        return *(g.view(batch_size, num_heads, *g.shape[1:]) for g in grads), None


def use_matmul_attention(queries: Tensor, keys: Tensor, values: Tensor) -> bool:
    """Whether ``attend`` takes ``MatmulAttention`` (outside torch.compile): in training
    on CPU, with at least ``MATMUL_ATTENTION_MIN_PAIRS`` (batch, head) pairs, or in
    float32 (not autocast) on more than one thread; never in a reduced precision that
    the CPU lacks, where its emulated batched products take two to four times the flash
    kernel's time at every size measured (benchmarks/results/attention-avx2.md)."""
    if (
        queries.device.type != "cpu"
        or not torch.is_grad_enabled()
        or not any(x.requires_grad for x in (queries, keys, values))
    ):
        return False
    batch_size, num_heads = queries.shape[:2]
    dtype = cpu_compute_dtype(queries)
    low_precision = dtype.itemsize < 4
    if low_precision and not native_on_cpu(dtype):
        return False
    return batch_size * num_heads >= MATMUL_ATTENTION_MIN_PAIRS or (
        torch.get_num_threads() > 1 and not low_precision
    )


def attend(queries: Tensor, keys: Tensor, values: Tensor, scale: float) -> Tensor:
    """softmax(scale * q k^T) v for every head, heads merged.

    queries (B, h, Q, k), keys (B, h, R, k), values (B, h, R, v) -> (B, Q, h * v).
    Under torch.compile on CPU the softmax is written out, which inductor fuses between
    its two products: faster than its SDPA kernel at the small and paper sizes
    (docs/performance.md).
    """
    if torch.compiler.is_compiling() and queries.device.type == "cpu":
        attended = attention_weights(queries, keys, scale) @ values  # (B, h, Q, v)
    elif use_matmul_attention(queries, keys, values):
        attended = MatmulAttention.apply(queries, keys, values, scale)
    else:
        attended = F.scaled_dot_product_attention(queries, keys, values, scale=scale)
    return merge_heads(attended)  # (B, Q, h * v)


def attention_weights(queries: Tensor, keys: Tensor, scale: float) -> Tensor:
    """The attention probabilities softmax(scale * q k^T): (B, h, Q, R), for inspection
    and under torch.compile."""
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
