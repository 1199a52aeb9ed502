"""The gated slot memory's whole-sequence Function: the same memories and gradients as
stepping the cell, gradcheck, when ``scan`` takes it, and its single differentiability."""

import pytest
import torch
from helpers import randomize

from relational_rnn import GatedSlotMemoryCell, RelationalMemoryCell, RelationalRNN
from relational_rnn.gated_scan import GatedSlotScan, gated_scan_applies
from relational_rnn.memory import scan

SIZES = [  # input_size, num_slots, slot_size, num_heads
    (12, 4, 8, 2),
    (8, 3, 8, 1),  # input as wide as the slots: no input projection
    (6, 1, 8, 4),
    (5, 2, 6, 3),
]


def make_cell(input_size, num_slots, slot_size, num_heads) -> GatedSlotMemoryCell:
    return randomize(GatedSlotMemoryCell(input_size, num_slots, slot_size, num_heads)).double()


def sequence_inputs(cell: GatedSlotMemoryCell, steps: int = 5, batch_size: int = 3):
    """u (T, B, H) and a perturbed initial memory (B, N, S), both requiring gradients."""
    u = torch.randn(steps, batch_size, cell.input_size, dtype=torch.float64)
    memory = cell.initial_state(batch_size)
    memory = memory + 0.3 * torch.randn_like(memory)
    return u.requires_grad_(), memory.requires_grad_()


@pytest.mark.parametrize("sizes", SIZES)
def test_equals_stepping_the_cell(sizes):
    cell = make_cell(*sizes)
    u, memory = sequence_inputs(cell)
    stepped, state = [], memory
    for projected in cell.project_input(u)[0].unbind(0):
        state = cell.step((projected,), state)
        stepped.append(state)
    stepped = torch.stack(stepped)  # (T, B, N, S)
    fused = GatedSlotScan.apply(*cell.project_input(u), memory, *cell.step_weights(), sizes[3])
    assert type(fused.grad_fn).__name__ == "GatedSlotScanBackward"
    torch.testing.assert_close(fused, stepped, atol=1e-12, rtol=0)

    weights = torch.randn_like(fused)  # a loss that weighs every memory differently
    inputs = [u, memory, *cell.parameters()]
    expected = torch.autograd.grad((stepped * weights).sum(), inputs)
    actual = torch.autograd.grad((fused * weights).sum(), inputs)
    names = ["u", "memory", *dict(cell.named_parameters())]
    for name, got, want in zip(names, actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0, msg=name)


@pytest.mark.parametrize("sizes", SIZES[:2])
def test_passes_gradcheck(sizes):
    cell = make_cell(*sizes)
    u, memory = sequence_inputs(cell, steps=3, batch_size=2)
    projected = cell.project_input(u)[0].detach().requires_grad_()
    weights = [w.detach().requires_grad_() for w in cell.step_weights()]

    def run(projected, memory, *weights):
        return GatedSlotScan.apply(projected, memory, *weights, sizes[3])

    assert torch.autograd.gradcheck(run, (projected, memory, *weights))


def test_scan_takes_it_in_training_only():
    cell = make_cell(*SIZES[0])
    u, memory = sequence_inputs(cell)

    def backward_of(recompute=False):
        return type(scan(cell, cell.project_input(u), memory, recompute)[0].grad_fn).__name__

    assert backward_of() == "GatedSlotScanBackward"
    assert backward_of(recompute=True) == "StackBackward0"  # checkpointed steps
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert backward_of() == "StackBackward0"  # bfloat16 products in the plain steps
    with torch.no_grad():
        assert scan(cell, cell.project_input(u), memory)[0].grad_fn is None
        assert not gated_scan_applies(u, memory)
    assert not gated_scan_applies(u.detach(), memory.detach())
    assert not gated_scan_applies(u.bfloat16(), memory.bfloat16())  # softmax in bfloat16
    rmc = RelationalMemoryCell(4, mem_slots=2, head_size=3).double()
    rmc_memories, _ = scan(rmc, rmc.project_input(u[..., :4]), rmc.initial_state(3))
    assert type(rmc_memories.grad_fn).__name__ == "StackBackward0"


def backward_names(tensor: torch.Tensor) -> set[str]:
    """The names of every node of ``tensor``'s autograd graph."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


def test_relational_rnn_trains_through_it():
    rnn = randomize(RelationalRNN(5, 8, num_slots=3, slot_size=6, num_heads=2)).double()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    output, state = rnn(x)
    assert "GatedSlotScanBackward" in backward_names(output)
    assert "GatedSlotScanBackward" in backward_names(state.memory)
    (output.square().sum() + state.memory.sum()).backward()
    for name, parameter in rnn.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_second_derivatives_raise_a_clear_error():
    cell = make_cell(*SIZES[0])
    u, memory = sequence_inputs(cell)
    memories, _ = scan(cell, cell.project_input(u), memory)
    (grad,) = torch.autograd.grad(memories.square().sum(), u, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
