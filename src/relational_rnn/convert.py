"""Exchange weights between the PyTorch modules and the NumPy reference.

Weights travel as plain dicts of arrays under the modules' ``state_dict`` names:

>>> import numpy as np, torch
>>> from relational_rnn import RelationalRNN
>>> from relational_rnn.convert import load_arrays, reference_model, to_arrays
>>> module = RelationalRNN(input_size=3, hidden_size=8, num_slots=2, slot_size=8).double()
>>> model, params = reference_model(module), to_arrays(module)  # NumPy twin and its weights
>>> x = np.random.default_rng(0).normal(size=(2, 4, 3))
>>> output, state, _ = model.forward(params, x)
>>> bool(np.allclose(output, module(torch.from_numpy(x))[0].detach().numpy()))
True
>>> load_arrays(module, params)  # and back
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import reference
from .attention import MultiHeadAttention
from .cell import RelationalRNN, RelationalRNNCell
from .heads import MLPHead, SequenceClassifier
from .lstm import LSTMBaseline
from .memory import GatedSlotMemoryCell, RelationalMemory, RelationalMemoryCell


def to_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's ``state_dict`` as NumPy arrays (copies, same names and dtypes)."""
    return {
        name: value.detach().cpu().numpy().copy() for name, value in module.state_dict().items()
    }


def load_arrays(module: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copy ``arrays`` into the module's parameters; names and shapes must match exactly."""
    module.load_state_dict({name: torch.from_numpy(np.asarray(a)) for name, a in arrays.items()})


def reference_model(module: nn.Module, prefix: str = ""):
    """The NumPy reference component that computes what ``module`` computes.

    Its parameter names are ``prefix`` + the module's ``state_dict`` names. Supported:
    the package's models and heads, ``nn.Linear``, ``nn.LayerNorm`` and ``nn.LSTMCell``.
    """
    if isinstance(module, RelationalMemory):
        cell = module.cell
        model = reference.RelationalMemory(
            **_rmc_arguments(cell), batch_first=module.batch_first, prefix=prefix
        )
    elif isinstance(module, RelationalMemoryCell):
        model = reference.RelationalMemoryCell(**_rmc_arguments(module), prefix=prefix)
    elif isinstance(module, GatedSlotMemoryCell):
        model = reference.GatedSlotMemoryCell(
            module.input_size, module.mem_slots, module.mem_size, module.num_heads, prefix=prefix
        )
    elif isinstance(module, RelationalRNN):
        model = reference.RelationalRNN(
            **_relational_rnn_arguments(module.cell), batch_first=module.batch_first, prefix=prefix
        )
    elif isinstance(module, RelationalRNNCell):
        model = reference.RelationalRNNCell(**_relational_rnn_arguments(module), prefix=prefix)
    elif isinstance(module, LSTMBaseline):
        if module.lstm.dropout:
            raise ValueError(
                "the NumPy reference has no dropout: use an LSTMBaseline with dropout=0"
            )
        model = reference.LSTMBaseline(
            module.input_size,
            module.hidden_size,
            module.num_layers,
            None if module.head is None else module.output_size,
            batch_first=module.batch_first,
            prefix=prefix,
        )
    elif isinstance(module, SequenceClassifier):
        head = _mlp_sizes(module.head)
        core = reference_model(module.core, prefix + "core.")
        model = reference.SequenceClassifier(
            core, head[-1], head[1:-1], module.output_steps, prefix=prefix
        )
    elif isinstance(module, MLPHead):
        sizes = _mlp_sizes(module)
        model = reference.MLPHead(sizes[0], sizes[-1], sizes[1:-1], prefix=prefix)
    elif isinstance(module, MultiHeadAttention):
        model = reference.MultiHeadAttention(module.size, module.num_heads, prefix)
    elif isinstance(module, nn.LSTMCell):
        model = reference.LSTMCell(module.input_size, module.hidden_size, prefix)
    elif isinstance(module, nn.Linear):
        model = reference.Linear(
            module.in_features, module.out_features, module.bias is not None, prefix
        )
    elif isinstance(module, nn.LayerNorm):
        if module.eps != reference.layers.LAYER_NORM_EPS or len(module.normalized_shape) != 1:
            raise ValueError("the reference LayerNorm normalises the last axis with eps=1e-5")
        model = reference.LayerNorm(module.normalized_shape[0], prefix)
    else:
        raise TypeError(f"no NumPy reference for {type(module).__name__}")
    return model


def _rmc_arguments(cell: RelationalMemoryCell) -> dict:
    return {
        "input_size": cell.input_size,
        "mem_slots": cell.mem_slots,
        "head_size": cell.head_size,
        "num_heads": cell.num_heads,
        "num_blocks": cell.num_blocks,
        "forget_bias": cell.forget_bias,
        "input_bias": cell.input_bias,
        "gate_style": cell.gate_style,
        "attention_mlp_layers": cell.attention_mlp_layers,
        "key_size": cell.key_size,
    }


def _relational_rnn_arguments(cell: RelationalRNNCell) -> dict:
    return {
        "input_size": cell.input_size,
        "hidden_size": cell.hidden_size,
        "num_slots": cell.num_slots,
        "slot_size": cell.slot_size,
        "num_heads": cell.num_heads,
        "memory": cell.memory_type,
        "memory_init": cell.memory_init,
        "output_size": cell.output_size,
    }


def _mlp_sizes(head: MLPHead) -> list[int]:
    return [head.layers[0].in_features] + [layer.out_features for layer in head.layers]
