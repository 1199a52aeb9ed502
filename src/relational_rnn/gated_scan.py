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
        # Every step's views are made once, here: the loop then issues only the operators.
        memories = trajectory.unbind(0)  # M_t (B, N, S)
        memory_rows = trajectory.view(steps + 1, rows, size).unbind(0)  # (B N, S)
        qkv_steps = qkvs.view(steps, 3, batch_size, num_heads, num_slots, head_size).unbind(0)
        queries, keys, values = (part.unbind(0) for part in qkvs.unbind(1))  # (B h, N, d)
        prob_steps = probs.unbind(0)
        heads_by_head = heads.view(steps, batch_size, num_slots, num_heads, head_size)
        heads_by_head = heads_by_head.transpose(2, 3).unbind(0)  # (B, h, N, d)
        head_rows = heads.view(steps, rows, size).unbind(0)  # (B N, S)
        input_rows = projected.view(steps, rows, width).unbind(0)  # (B N, 2S)
        gate_steps, gate_rows = gates.unbind(0), gates.view(steps, rows, width).unbind(0)
        updates, gate_values = (half.unbind(0) for half in gates.split(size, dim=-1))
        slope_steps = slopes.unbind(0)
        slope_updates, slope_gates = (half.unbind(0) for half in slopes.split(size, dim=-1))
        qkv_weight_t, output_weight_t = qkv_weight.t(), output_weight.t()
        qkv_shape = (batch_size, num_slots, num_heads, 3, head_size)
        attended_shape = (batch_size, num_heads, num_slots, head_size)
        scale = head_size**-0.5
        for t in range(steps):
            qkv = torch.addmm(qkv_bias, memory_rows[t], qkv_weight_t)  # (B N, 3S)
            qkv_steps[t].copy_(qkv.view(qkv_shape).permute(3, 0, 2, 1, 4))  # (3, B, h, N, d)
            attention_probs(queries[t], keys[t], scale, out=prob_steps[t])  # (B h, N, N)
            attended = torch.bmm(prob_steps[t], values[t])  # (B h, N, d)
            heads_by_head[t].copy_(attended.view(attended_shape))  # into C (B, N, S)
            torch.addmm(input_rows[t], head_rows[t], output_weight_t, out=gate_rows[t])
            gate_rows[t].sigmoid_()  # Y = [sigmoid(2 U~) | G]
            memory, gate = memories[t], gate_values[t]
            difference = torch.mul(updates[t], 2).sub_(memory).sub_(1)  # D = tanh(U~) - M
            torch.addcmul(memory, gate, difference, out=memories[t + 1])
            # dM'/dZ = Y (1 - Y) dM'/dY, with dM'/dY = [2 G | D]
            torch.addcmul(gate_steps[t], gate_steps[t], gate_steps[t], value=-1, out=slope_steps[t])
            slope_updates[t].mul_(gate).mul_(2)
            slope_gates[t].mul_(difference)
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
        grad_qkv_parts = grad_qkv.unbind(0)  # dq, dk, dv: (B h, N, d)
        # Every step's views are made once, as in forward.
        halves = (steps, batch_size, num_slots, 2, size)
        grad_gate_halves = grad_gates.view(halves).unbind(0)  # (B, N, 2, S)
        slope_halves = slopes.view(halves).unbind(0)
        grad_gate_rows = grad_gates.view(steps, rows, width).unbind(0)  # (B N, 2S)
        gate_values = gates[..., size:].unbind(0)  # G (B, N, S)
        queries, keys, values = (part.unbind(0) for part in qkvs.unbind(1))  # (B h, N, d)
        prob_steps = probs.unbind(0)
        grad_qkv_rows = grad_qkvs.unbind(0)  # (B N, 3S)
        grad_qkv_steps = grad_qkvs.view(steps, batch_size, num_slots, num_heads, 3, head_size)
        grad_qkv_steps = grad_qkv_steps.unbind(0)  # (B, N, h, 3, d)
        grad_qkv_by_row = grad_qkv.view(3, batch_size, num_heads, num_slots, head_size)
        grad_qkv_by_row = grad_qkv_by_row.permute(1, 3, 2, 0, 4)  # (B, N, h, 3, d)
        grad_qkv_bias_steps = grad_qkv_biases.unbind(0)
        grad_memory_steps = grad_memories.unbind(0)
        grad_heads_shape = (batch_size, num_slots, num_heads, head_size)
        grad_attended_shape = (batch_size * num_heads, num_slots, head_size)
        grad_memory = None
        for t in reversed(range(steps)):
            grad = grad_memory_steps[t]
            if grad_memory is not None:
                grad = grad_memory.add_(grad)  # grad_memory is this loop's own tensor
            torch.mul(grad.unsqueeze(2), slope_halves[t], out=grad_gate_halves[t])
            grad_memory = torch.addcmul(grad, grad, gate_values[t], value=-1)  # dM' (1 - G)
            grad_heads = torch.mm(grad_gate_rows[t], output_weight)  # (B N, S)
            grad_heads = grad_heads.view(grad_heads_shape).transpose(1, 2)  # (B, h, N, d)
            attention_gradients(
                grad_heads.reshape(grad_attended_shape),
                queries[t],
                keys[t],
                values[t],
                prob_steps[t],
                scale,
                out=grad_qkv_parts,
            )  # into grad_qkv: (3, B h, N, d)
            grad_qkv_steps[t].copy_(grad_qkv_by_row)
            # db_qkv summed here while the rows are in cache (one sum at the end was slower)
            torch.sum(grad_qkv_rows[t], 0, out=grad_qkv_bias_steps[t])
            grad_memory = grad_memory.view(rows, size).addmm_(grad_qkv_rows[t], qkv_weight)
            grad_memory = grad_memory.view(batch_size, num_slots, size)
        previous = trajectory[:-1].view(-1, size)  # M_0 .. M_T-1: (T B N, S)
        grad_output_weight = grad_gates.view(-1, width).t() @ heads.view(-1, size)
        grad_qkv_weight = grad_qkvs.view(-1, 3 * size).t() @ previous
        grad_qkv_bias = grad_qkv_biases.sum(0)
        return grad_gates, grad_memory, grad_qkv_weight, grad_qkv_bias, grad_output_weight, None
