"""Weights move between the PyTorch modules and the NumPy reference as plain dicts of arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from relational_rnn import (
    GatedSlotMemoryCell,
    LSTMBaseline,
    RelationalMemory,
    RelationalMemoryCell,
    RelationalRNN,
    RelationalRNNCell,
)
from relational_rnn.convert import load_arrays, reference_model, to_arrays
from relational_rnn.heads import SequenceClassifier
from relational_rnn.reference import RelationalMemory as NumpyRelationalMemory
from relational_rnn.reference import SequenceClassifier as NumpySequenceClassifier

MODULES = {
    "rmc": lambda: RelationalMemory(3, mem_slots=2, head_size=2, num_heads=2, num_blocks=2),
    "rmc-memory-gates": lambda: RelationalMemoryCell(3, 2, 2, gate_style="memory", key_size=3),
    "rmc-ungated": lambda: RelationalMemoryCell(3, 2, 2, gate_style=None),
    "gated-slot": lambda: GatedSlotMemoryCell(3, 2, 4, 2),
    "gated-slot-same-size": lambda: GatedSlotMemoryCell(4, 2, 4, 2),
    "relational-rnn": lambda: RelationalRNN(3, 5, 2, 4, 2, output_size=2),
    "relational-rnn-rmc-cell": lambda: RelationalRNNCell(3, 5, 2, 4, 2, memory="rmc"),
    "lstm": lambda: LSTMBaseline(3, 5, num_layers=2, output_size=2),
    "classifier": lambda: SequenceClassifier(RelationalRNN(3, 5, 2, 4, 2), 3, hidden_sizes=(4,)),
}


@pytest.mark.parametrize("name", MODULES)
def test_reference_parameters_have_the_state_dict_names_and_shapes(name):
    module = MODULES[name]()
    params = reference_model(module).init_params(np.random.default_rng(0), np.float32)
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert {key: value.shape for key, value in params.items()} == expected
    assert all(value.dtype == np.float32 for value in params.values())


@pytest.mark.parametrize("name", ["rmc", "relational-rnn-rmc-cell", "lstm", "classifier"])
def test_reference_initialisation_matches_the_constant_parts_of_pytorchs(name):
    """LayerNorm gains 1 and biases 0; LSTM forget biases 1 (input side) and 0 (hidden side)."""
    module = MODULES[name]()
    params = reference_model(module).init_params(np.random.default_rng(0))
    for key, value in module.state_dict().items():
        value, mine = value.numpy(), params[key]
        if "norm." in key:
            np.testing.assert_array_equal(mine, value, err_msg=key)
        elif "bias_ih" in key or "bias_hh" in key:
            forget = slice(len(value) // 4, len(value) // 2)
            np.testing.assert_array_equal(mine[forget], value[forget], err_msg=key)


@pytest.mark.parametrize("name", ["relational-rnn", "lstm", "rmc"])
def test_initial_states_match(name):
    module = MODULES[name]().double()
    state = reference_model(module).initial_state(3)
    expected = module.initial_state(3)
    for mine, theirs in zip(
        state if isinstance(state, tuple) else (state,),
        expected if isinstance(expected, tuple) else (expected,),
        strict=True,
    ):
        np.testing.assert_array_equal(mine, theirs.numpy())


def test_zero_initial_memory_option_matches():
    module = RelationalRNN(3, 5, 3, 4, 2, memory_init="zeros")
    np.testing.assert_array_equal(
        reference_model(module).initial_state(2).memory, module.initial_state(2).memory.numpy()
    )


def test_arrays_round_trip_through_a_module():
    module = RelationalRNN(3, 5, 2, 4, 2)
    arrays = {name: value + 1.0 for name, value in to_arrays(module).items()}
    load_arrays(module, arrays)
    assert all(np.array_equal(value, arrays[name]) for name, value in to_arrays(module).items())
    arrays["cell.read.weight"] = arrays["cell.read.weight"][:, :1]
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_arrays(module, arrays)
    del arrays["cell.read.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        load_arrays(module, arrays)


def test_unsupported_modules_are_refused():
    with pytest.raises(TypeError, match="no NumPy reference for GRU"):
        reference_model(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="no dropout"):
        reference_model(LSTMBaseline(3, 4, num_layers=2, dropout=0.5))
    with pytest.raises(ValueError, match="eps=1e-5"):
        reference_model(nn.LayerNorm(4, eps=1e-3))


def test_a_classifier_core_needs_the_core_prefix():
    core = NumpyRelationalMemory(3, mem_slots=2, head_size=2)
    with pytest.raises(ValueError, match="prefix='core.'"):
        NumpySequenceClassifier(core, num_classes=3)


def test_the_conversion_keeps_float32():
    module = RelationalMemory(3, mem_slots=2, head_size=2)
    arrays = to_arrays(module)
    assert all(value.dtype == np.float32 for value in arrays.values())
    output, _, _ = reference_model(module).forward(arrays, np.ones((2, 3, 3), np.float32))
    expected, _ = module(torch.ones(2, 3, 3))
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, expected.detach().numpy(), atol=1e-5)
