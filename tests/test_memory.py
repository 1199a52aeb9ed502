"""The Relational Memory Core and the gated slot memory: shapes, state carry-over,
equivalence with the NumPy transcription of DESIGN sections 3 and 4, gradients, errors."""

import numpy as np
import pytest
import torch
from helpers import gradcheck_module, randomize
from transcription import gated_slot_step, params_of, rmc_step

from relational_rnn import (
    GatedSlotMemoryCell,
    RelationalMemory,
    RelationalMemoryCell,
    count_parameters,
    initial_memory,
)

RMC_CONFIGS = [
    dict(mem_slots=3, head_size=4, num_heads=2, gate_style="unit"),
    dict(mem_slots=3, head_size=4, num_heads=2, gate_style="memory"),
    dict(mem_slots=3, head_size=4, num_heads=2, gate_style=None),
    dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=2, attention_mlp_layers=3),
    dict(mem_slots=3, head_size=4, num_heads=1, key_size=3, num_blocks=2),
    # mem_size 2 < mem_slots 5: truncated identity; input wider than the memory: W_x not folded
    dict(mem_slots=5, head_size=2, num_heads=1),
]


def make_rmc(input_size=5, **config) -> RelationalMemory:
    return randomize(RelationalMemory(input_size, **config)).double()


@pytest.mark.parametrize("config", RMC_CONFIGS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_rmc_shapes(config, batch_first):
    rmc = RelationalMemory(5, batch_first=batch_first, **config)
    slots, size = config["mem_slots"], config["head_size"] * config["num_heads"]
    x = torch.randn(2, 7, 5) if batch_first else torch.randn(7, 2, 5)
    output, memory = rmc(x)
    assert output.shape == ((2, 7, slots * size) if batch_first else (7, 2, slots * size))
    assert memory.shape == (2, slots, size)
    assert rmc.output_size == slots * size
    cell_output, cell_memory = rmc.cell(torch.randn(2, 5))
    assert cell_output.shape == (2, slots * size) and cell_memory.shape == (2, slots, size)


def test_initial_memory_is_identity_padded_or_truncated():
    padded = initial_memory(2, 3, 5)
    assert padded.shape == (2, 3, 5)
    assert torch.equal(
        padded[1], torch.tensor([[1.0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]])
    )
    truncated = initial_memory(1, 4, 2)
    assert torch.equal(truncated[0], torch.tensor([[1.0, 0], [0, 1], [0, 0], [0, 0]]))
    assert torch.equal(initial_memory(2, 3, 4, "zeros"), torch.zeros(2, 3, 4))
    rmc = RelationalMemory(3, mem_slots=4, head_size=3)
    assert torch.equal(rmc.initial_state(2), initial_memory(2, 4, 3))


def rmc_reference(rmc: RelationalMemory, x: torch.Tensor, **overrides) -> np.ndarray:
    """The transcription's memory after every step of x (B, T, I): (T, B, N, S)."""
    cell = rmc.cell
    settings = dict(
        num_heads=cell.num_heads,
        head_size=cell.head_size,
        key_size=cell.key_size,
        num_blocks=cell.num_blocks,
        mlp_layers=cell.attention_mlp_layers,
        gate_style=cell.gate_style,
        forget_bias=cell.forget_bias,
        input_bias=cell.input_bias,
    )
    settings.update(overrides)
    params = params_of(cell)
    memory = rmc.initial_state(x.shape[0]).numpy()
    memories = []
    for t in range(x.shape[1]):
        memory = rmc_step(params, x[:, t].numpy(), memory, **settings)
        memories.append(memory)
    return np.stack(memories)


@pytest.mark.parametrize("config", RMC_CONFIGS)
@torch.no_grad()
def test_rmc_equals_numpy_transcription(config):
    rmc = make_rmc(**config)
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    output, final = rmc(x)
    memories = rmc_reference(rmc, x)  # (T, B, N, S)
    np.testing.assert_allclose(
        output.numpy(), memories.transpose(1, 0, 2, 3).reshape(3, 4, -1), atol=1e-12, rtol=0
    )
    np.testing.assert_allclose(final.numpy(), memories[-1], atol=1e-12, rtol=0)


@torch.no_grad()
def test_rmc_gate_biases_are_constants():
    rmc = make_rmc(mem_slots=2, head_size=3, forget_bias=2.5, input_bias=-0.5)
    assert count_parameters(rmc) == count_parameters(RelationalMemory(5, 2, 3))
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    np.testing.assert_allclose(rmc(x)[1].numpy(), rmc_reference(rmc, x)[-1], atol=1e-12)
    # The biases matter: the default ones give another memory.
    assert np.abs(rmc(x)[1].numpy() - rmc_reference(rmc, x, forget_bias=1.0)[-1]).max() > 1e-3


@torch.no_grad()
def test_rmc_queries_are_scaled_by_key_size_not_the_qkv_width():
    rmc = make_rmc(mem_slots=3, head_size=4, num_heads=2, key_size=2)
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    wrong = rmc_reference(rmc, x, query_scale=(2 * (2 + 2 + 4)) ** -0.5)[-1]
    np.testing.assert_allclose(rmc(x)[1].numpy(), rmc_reference(rmc, x)[-1], atol=1e-12)
    assert np.abs(rmc(x)[1].numpy() - wrong).max() > 1e-3


def test_rmc_mlp_is_shared_by_blocks_and_each_block_owns_qkv_and_norms():
    rmc = RelationalMemory(4, mem_slots=2, head_size=3, num_heads=2, num_blocks=3)
    names = set(rmc.state_dict())
    assert {f"cell.mlp.layers.{i}.weight" for i in range(2)} <= names
    assert not any(name.startswith("cell.blocks.") and ".mlp." in name for name in names)
    for block in range(3):
        for part in ("qkv", "qkv_norm", "attention_norm", "mlp_norm"):
            assert f"cell.blocks.{block}.{part}.weight" in names
    size, qkv = 6, 2 * (3 + 3 + 3)
    per_block = size * qkv + qkv + 2 * qkv + 2 * (2 * size)
    expected = (
        (4 * size + size)
        + 3 * per_block
        + 2 * (size * size + size)
        + 2 * (size * 2 * size + 2 * size)
    )
    assert count_parameters(rmc) == expected


@pytest.mark.parametrize("config", RMC_CONFIGS)
@torch.no_grad()
def test_rmc_cell_steps_and_chunks_equal_one_call(config):
    rmc = make_rmc(**config)
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    output, final = rmc(x)
    memory = None
    for t in range(6):
        step_output, memory = rmc.cell(x[:, t], memory)
        torch.testing.assert_close(step_output, output[:, t], atol=1e-12, rtol=0)
    torch.testing.assert_close(memory, final, atol=1e-12, rtol=0)
    first, memory = rmc(x[:, :2])
    second, memory = rmc(x[:, 2:], memory)
    torch.testing.assert_close(torch.cat([first, second], 1), output, atol=1e-12, rtol=0)
    torch.testing.assert_close(memory, final, atol=1e-12, rtol=0)


@pytest.mark.parametrize("recompute", [False, True])
def test_rmc_final_memory_is_its_own_tensor(recompute):
    """Not a view of the output sequence: backward from the final memory alone (as
    ``SequenceClassifier`` reads it) must not materialise a zero gradient of every step."""
    rmc = make_rmc(mem_slots=3, head_size=4, num_heads=2)
    rmc.recompute = recompute
    _, memory = rmc(torch.randn(2, 6, 5, dtype=torch.float64))
    assert memory._base is None
    assert type(memory.grad_fn).__name__ != "SelectBackward0"


@pytest.mark.parametrize(
    "config",
    [
        dict(gate_style="unit"),
        dict(gate_style="memory"),
        dict(gate_style=None),
        dict(gate_style="unit", num_blocks=2),
        dict(gate_style="memory", num_blocks=2, key_size=3),
        dict(gate_style=None, num_blocks=2, key_size=1),
    ],
)
def test_rmc_gradcheck(config):
    rmc = RelationalMemory(3, mem_slots=2, head_size=2, num_heads=2, **config).double()
    x = torch.randn(2, 2, 3, dtype=torch.float64)
    memory = torch.randn(2, 2, 4, dtype=torch.float64)
    assert gradcheck_module(rmc, x, memory)
    assert gradcheck_module(rmc.cell, x[:, 0], memory)


GATED_CONFIGS = [
    dict(input_size=6, num_slots=3, slot_size=4, num_heads=2),  # H != S: input projected
    dict(input_size=4, num_slots=4, slot_size=4, num_heads=1),  # H == S: p = u
]


@pytest.mark.parametrize("config", GATED_CONFIGS)
@torch.no_grad()
def test_gated_slot_memory_equals_numpy_transcription(config):
    cell = randomize(GatedSlotMemoryCell(**config)).double()
    assert (cell.input_projection is None) == (config["input_size"] == config["slot_size"])
    params = params_of(cell)
    u = torch.randn(5, 2, config["input_size"], dtype=torch.float64)
    memory = cell.initial_state(2)
    expected = memory.numpy()
    for t in range(5):
        output, memory = cell(u[t], memory)
        expected = gated_slot_step(params, u[t].numpy(), expected, num_heads=config["num_heads"])
        np.testing.assert_allclose(memory.numpy(), expected, atol=1e-12, rtol=0)
        np.testing.assert_allclose(output.numpy(), expected.reshape(2, -1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("config", GATED_CONFIGS)
def test_gated_slot_memory_gradcheck(config):
    cell = GatedSlotMemoryCell(**config).double()
    u = torch.randn(2, config["input_size"], dtype=torch.float64)
    memory = torch.randn(2, config["num_slots"], config["slot_size"], dtype=torch.float64)
    assert gradcheck_module(cell, u, memory)


def slot_spread(memory: torch.Tensor) -> float:
    """The largest difference between slots 1..N-1 (slot 0 receives the input)."""
    return (memory[:, 1:] - memory[:, 1:2]).abs().max().item()


@torch.no_grad()
def test_gated_slot_zero_init_keeps_slots_identical_identity_init_does_not():
    cell = randomize(GatedSlotMemoryCell(6, num_slots=4, slot_size=8, num_heads=2))
    u = torch.randn(10, 3, 6)
    zeros, identity = cell.initial_state(3, "zeros"), cell.initial_state(3)
    for t in range(10):
        zeros = cell(u[t], zeros)[1]
        identity = cell(u[t], identity)[1]
    assert slot_spread(zeros) < 1e-6  # the original design's flaw, kept as an option
    assert slot_spread(identity) > 1e-2
    assert (zeros[:, 0] - zeros[:, 1]).abs().max() > 1e-2  # slot 0 does get the input


@torch.no_grad()
def test_rmc_slots_differ_after_steps():
    rmc = RelationalMemory(5, mem_slots=4, head_size=4, num_heads=2)
    _, memory = rmc(torch.randn(3, 5, 5))
    assert (memory[:, 1:] - memory[:, :1]).abs().amax(dim=(1, 2)).min() > 1e-2


def test_extra_repr_shows_configuration():
    rmc = RelationalMemory(5, mem_slots=4, head_size=8, num_heads=2, gate_style="memory")
    text = repr(rmc)
    for piece in (
        "mem_slots=4",
        "head_size=8",
        "num_heads=2",
        "gate_style='memory'",
        "batch_first=True",
        "num_layers=2",
        "key_size=8",
    ):
        assert piece in text
    assert "slot_size=8" in repr(GatedSlotMemoryCell(4, 3, 8, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (dict(num_blocks=0), ValueError, "num_blocks must be >= 1, got 0"),
        (dict(attention_mlp_layers=0), ValueError, "attention_mlp_layers must be >= 1, got 0"),
        (dict(gate_style="elementwise"), ValueError, "gate_style must be one of 'unit'"),
        (dict(mem_slots=0), ValueError, "mem_slots must be >= 1, got 0"),
        (dict(head_size=-2), ValueError, "head_size must be >= 1, got -2"),
        (dict(key_size=0), ValueError, "key_size must be >= 1, got 0"),
        (dict(num_heads=2.0), TypeError, "num_heads must be an int >= 1, got float 2.0"),
    ],
)
def test_rmc_constructor_errors(kwargs, error, words):
    config = dict(input_size=3, mem_slots=2, head_size=4) | kwargs
    with pytest.raises(error, match=words.replace("(", r"\(")):
        RelationalMemory(**config)


def test_gated_slot_memory_rejects_heads_not_dividing_slot_size():
    with pytest.raises(ValueError, match=r"slot_size \(10\) must be divisible by num_heads \(4\)"):
        GatedSlotMemoryCell(4, num_slots=2, slot_size=10, num_heads=4)


@pytest.mark.parametrize(
    ("make_input", "memory", "error", "words"),
    [
        (lambda: torch.randn(2, 5), None, ValueError, r"3 dimensions.*got 2 with shape \(2, 5\)"),
        (lambda: torch.randn(2, 3, 4), None, ValueError, r"5 features.*got shape \(2, 3, 4\)"),
        (lambda: torch.randn(2, 3, 5).double(), None, TypeError, "float64.*float32"),
        (lambda: torch.randint(0, 2, (2, 3, 5)), None, TypeError, "int64.*float32"),
        (lambda: [[0.0] * 5], None, TypeError, "must be a torch.Tensor, got list"),
        (
            lambda: torch.randn(2, 3, 5),
            torch.zeros(3, 4, 8),
            ValueError,
            r"memory must have shape \(2, 4, 8\), got \(3, 4, 8\)",
        ),
        (
            lambda: torch.randn(2, 3, 5),
            torch.zeros(2, 8, 4),
            ValueError,
            r"memory must have shape \(2, 4, 8\), got \(2, 8, 4\)",
        ),
        (lambda: torch.randn(2, 3, 5), torch.zeros(2, 4, 8).double(), TypeError, "memory.*float64"),
    ],
)
def test_rmc_input_errors(make_input, memory, error, words):
    rmc = RelationalMemory(5, mem_slots=4, head_size=4, num_heads=2)
    with pytest.raises(error, match=words):
        rmc(make_input(), memory)


def test_rmc_cell_rejects_a_sequence():
    cell = RelationalMemoryCell(5, mem_slots=4, head_size=4)
    with pytest.raises(ValueError, match=r"shape \(batch, 5\), got \(2, 3, 5\)"):
        cell(torch.randn(2, 3, 5))
