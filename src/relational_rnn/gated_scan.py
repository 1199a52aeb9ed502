"""The gated slot memory over a whole sequence as one autograd Function.

Training through ``GatedSlotMemoryCell.step`` step by step records about 20 autograd
nodes per step, and their backward splits and concatenates the gradients of the
attention's inputs and of the gates every step. This Function runs the same steps with a
hand-written backward instead:

- every step's tensors are written into buffers of the whole sequence, laid out for the
  operation that reads them (no stacking at the end, no concatenation in backward);
- forward also keeps dM'/dZ, so the gates' gradient in backward is one product;
- backward runs the steps in reverse computing only the gradients that flow on through
  time (to the memory), and forms the weights' gradients once at the end, as products
  over all T * B * N rows at once instead of T small products and T accumulations.

The equations are those of ``GatedSlotMemoryCell.step``. Forward, per step, with rows
of the flattened (B N, .) memory and d = S / h:

    [q|k|v] = M W_qkv^T + b_qkv                 # per head, (B h, N, 3d) after re-layout
    P       = softmax(q k^T / sqrt(d))            # (B h, N, N)
    C       = concat_h(P v)                     # (B N, S)
    Y       = sigmoid(C W_out^T + E)            # [sigmoid(2 U~) | G]: (B N, 2S)
    D       = 2 Y_u - 1 - M                     # tanh(U~) - M
    M'      = M + Y_g * D

Backward, with dM' the gradient reaching M' (from later steps and from the output):

    dZ   = dM' [2 Y_g | D] * Y (1 - Y)          # dZ is dE; all but dM' kept from forward
    dC   = dZ W_out,   dv = P^T dC_h,  dP = dC_h v^T,  dS = P * (dP - rowsum(dP * P))
    dq   = dS k / sqrt(d),  dk = dS^T q / sqrt(d),  dM = dM' (1 - Y_g) + d[q|k|v] W_qkv
    dW_out = sum_t dZ^T C,  dW_qkv = sum_t d[q|k|v]^T M,  db_qkv = sum_t d[q|k|v]
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .attention import attention_gradients, attention_probs


def gated_scan_applies(*tensors: Tensor) -> bool:
    """Whether ``GatedSlotScan`` serves a scan over ``tensors`` (its inputs): in training
    (some input needs a gradient), in float32 or float64 (its softmax runs in the inputs'
    dtype), outside autocast, whose bfloat16 products the plain steps handle, and outside
    torch.compile, which traces the plain steps."""
    device = tensors[0].device.type
    return (
        torch.is_grad_enabled()
        and any(tensor.requires_grad for tensor in tensors)
        and all(tensor.dtype in (torch.float32, torch.float64) for tensor in tensors)
        and not torch.is_autocast_enabled(device)
        and not torch.compiler.is_compiling()
    )


class GatedSlotScan(torch.autograd.Function):
    """``GatedSlotScan.apply(projected, memory, qkv_weight, qkv_bias, output_weight,
    num_heads)``: the memories (T, B, N, S) after each step of a gated slot memory.

    projected: E (T, B, N, 2S) from ``GatedSlotMemoryCell.project_input``; memory (B, N, S);
    the weights from ``GatedSlotMemoryCell.step_weights``: W_qkv (3S, S) per head
    [q | k | v], b_qkv (3S,) and W_out = W_ug W_o (2S, S). Once differentiable; the
    module's docstring has the equations.
    """

    @staticmethod
    def forward(
        ctx,
        projected: Tensor,
        memory: Tensor,
        qkv_weight: Tensor,
        qkv_bias: Tensor,
        output_weight: Tensor,
        num_heads: int,
    ) -> Tensor:
        steps, batch_size, num_slots, width = projected.shape
        size, rows, pairs = width // 2, batch_size * num_slots, batch_size * num_heads
        head_size = size // num_heads
        buffer = projected.new_empty
        trajectory = buffer(steps + 1, batch_size, num_slots, size)  # M_0 .. M_T
        qkvs = buffer(steps, 3, pairs, num_slots, head_size)  # q, k, v, heads first for bmm
        probs = buffer(steps, pairs, num_slots, num_slots)  # P
        heads = buffer(steps, batch_size, num_slots, size)  # C, heads merged
        gates = buffer(steps, batch_size, num_slots, width)  # Y
        slopes = buffer(steps, batch_size, num_slots, width)  # dM'/dZ, elementwise
        trajectory[0] = memory
        for t in range(steps):
            qkv = torch.addmm(qkv_bias, memory.reshape(rows, size), qkv_weight.t())  # (B N, 3S)
            qkv = qkv.view(batch_size, num_slots, num_heads, 3, head_size).permute(3, 0, 2, 1, 4)
            qkvs[t].view_as(qkv).copy_(qkv)  # (3, B h, N, d)
            queries, keys, values = qkvs[t].unbind(0)  # (B h, N, d) each
            attention_probs(queries, keys, head_size**-0.5, out=probs[t])  # (B h, N, N)
            attended = torch.bmm(probs[t], values)  # (B h, N, d)
            attended = attended.view(batch_size, num_heads, num_slots, head_size).transpose(1, 2)
            heads[t].view_as(attended).copy_(attended)  # (B, N, S)
            gate_rows, head_rows = gates[t].view(rows, width), heads[t].view(rows, size)
            torch.addmm(projected[t].view(rows, width), head_rows, output_weight.t(), out=gate_rows)
            gate_rows.sigmoid_()  # Y = [sigmoid(2 U~) | G]
            update, gate = gates[t].split(size, dim=-1)  # (B, N, S) each
            difference = torch.mul(update, 2).sub_(memory).sub_(1)  # D = tanh(U~) - M
            memory = torch.addcmul(memory, gate, difference, out=trajectory[t + 1])
            # dM'/dZ = Y (1 - Y) dM'/dY, with dM'/dY = [2 G | D]
            torch.addcmul(gates[t], gates[t], gates[t], value=-1, out=slopes[t])
            slope_update, slope_gate = slopes[t].split(size, dim=-1)
            slope_update.mul_(gate).mul_(2)
            slope_gate.mul_(difference)
        ctx.num_heads = num_heads
        saved = (qkv_weight, output_weight, trajectory, qkvs, probs, heads, gates, slopes)
        ctx.save_for_backward(*saved)
        return trajectory[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_memories: Tensor) -> tuple[Tensor | None, ...]:
        qkv_weight, output_weight, trajectory, qkvs, probs, heads, gates, slopes = ctx.saved_tensors
        num_heads = ctx.num_heads
        steps, batch_size, num_slots, width = gates.shape
        size, rows = width // 2, batch_size * num_slots
        head_size = size // num_heads
        scale = head_size**-0.5
        grad_gates = torch.empty_like(slopes)  # dZ, which is dE
        grad_qkvs = trajectory.new_empty(steps, rows, 3 * size)  # rows first, for W_qkv
        grad_qkv_biases = trajectory.new_empty(steps, 3 * size)
        grad_qkv = trajectory.new_empty(3, batch_size * num_heads, num_slots, head_size)
        halves = (batch_size, num_slots, 2, size)
        grad_memory = None
        for t in reversed(range(steps)):
            grad = grad_memories[t] if grad_memory is None else grad_memory + grad_memories[t]
            torch.mul(grad.unsqueeze(2), slopes[t].view(halves), out=grad_gates[t].view(halves))
            gate = gates[t, ..., size:]
            grad_memory = torch.addcmul(grad, grad, gate, value=-1)  # dM' (1 - G)
            grad_heads = torch.mm(grad_gates[t].view(rows, width), output_weight)  # (B N, S)
            grad_heads = grad_heads.view(batch_size, num_slots, num_heads, head_size)
            grad_attended = grad_heads.transpose(1, 2).reshape(-1, num_slots, head_size)
            queries, keys, values = qkvs[t].unbind(0)  # (B h, N, d)
            attention_gradients(
                grad_attended, queries, keys, values, probs[t], scale, out=grad_qkv.unbind(0)
            )  # into grad_qkv: (3, B h, N, d)
            grad_qkv_rows = grad_qkvs[t].view(batch_size, num_slots, num_heads, 3, head_size)
            grad_qkv_heads = grad_qkv.view(3, batch_size, num_heads, num_slots, head_size)
            grad_qkv_rows.copy_(grad_qkv_heads.permute(1, 3, 2, 0, 4))  # (B, N, h, 3, d)
            torch.sum(grad_qkvs[t], 0, out=grad_qkv_biases[t])
            grad_memory = grad_memory.view(rows, size).addmm_(grad_qkvs[t], qkv_weight)
            grad_memory = grad_memory.view(batch_size, num_slots, size)
        previous = trajectory[:-1].view(-1, size)  # M_0 .. M_T-1: (T B N, S)
        grad_output_weight = grad_gates.view(-1, width).t() @ heads.view(-1, size)
        grad_qkv_weight = grad_qkvs.view(-1, 3 * size).t() @ previous
        grad_qkv_bias = grad_qkv_biases.sum(0)
        return grad_gates, grad_memory, grad_qkv_weight, grad_qkv_bias, grad_output_weight, None
