"""The NumPy reference computes what the PyTorch modules compute, forward and backward.

Random configurations (hypothesis) of every model, in float64: outputs and states agree
within 1e-10, and the gradients of a loss on every time step and on the final state
agree with autograd within 1e-8 for every parameter, the input and the initial state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from relational_rnn import (
    GatedSlotMemoryCell,
    LSTMBaseline,
    MultiHeadAttention,
    RelationalMemory,
    RelationalMemoryCell,
    RelationalRNN,
    RelationalRNNCell,
)
from relational_rnn.convert import reference_model, to_arrays
from relational_rnn.heads import MLPHead, SequenceClassifier
from relational_rnn.reference import mean_squared_error, softmax_cross_entropy, zeros_like

FORWARD_TOLERANCE = 1e-10
GRADIENT_TOLERANCE = 1e-8


def perturb(module: nn.Module, seed: int) -> nn.Module:
    """float64, and every parameter moved off its initial value (LayerNorm gains of 1,
    zero biases and constant forget biases would hide mistakes)."""
    module = module.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module


@st.composite
def rmc_arguments(draw, input_size: int) -> dict:
    key_size = draw(st.none() | st.integers(1, 4))
    return dict(
        input_size=input_size,
        mem_slots=draw(st.integers(1, 4)),
        head_size=draw(st.integers(1, 4)),
        num_heads=draw(st.integers(1, 3)),
        num_blocks=draw(st.integers(1, 3)),
        forget_bias=draw(st.floats(-2, 2)),
        input_bias=draw(st.floats(-2, 2)),
        gate_style=draw(st.sampled_from(["unit", "memory", None])),
        attention_mlp_layers=draw(st.integers(1, 3)),
        key_size=key_size,
    )


@st.composite
def relational_rnn_arguments(draw, input_size: int) -> dict:
    num_heads = draw(st.integers(1, 3))
    output_size = draw(st.none() | st.integers(1, 4))
    return dict(
        input_size=input_size,
        hidden_size=draw(st.integers(1, 6)),
        num_slots=draw(st.integers(1, 4)),
        slot_size=num_heads * draw(st.integers(1, 3)),
        num_heads=num_heads,
        memory=draw(st.sampled_from(["gated_slot", "rmc"])),
        memory_init=draw(st.sampled_from(["identity", "zeros"])),
        output_size=output_size,
    )


@st.composite
def cases(draw) -> tuple[nn.Module, torch.Tensor, object]:
    """A perturbed float64 module, an input and an initial state (None or random)."""
    kind = draw(
        st.sampled_from(
            ["rmc", "rmc_cell", "gated_slot_cell", "relational_rnn", "relational_rnn_cell", "lstm"]
        )
    )
    input_size = draw(st.integers(1, 5))
    batch_first = draw(st.booleans())
    if kind == "rmc":
        module = RelationalMemory(**draw(rmc_arguments(input_size)), batch_first=batch_first)
    elif kind == "rmc_cell":
        module = RelationalMemoryCell(**draw(rmc_arguments(input_size)))
    elif kind == "gated_slot_cell":
        num_heads = draw(st.integers(1, 3))
        slot_size = num_heads * draw(st.integers(1, 3))
        input_size = draw(st.sampled_from([input_size, slot_size]))  # slot_size: no projection
        module = GatedSlotMemoryCell(input_size, draw(st.integers(1, 4)), slot_size, num_heads)
    elif kind == "relational_rnn":
        module = RelationalRNN(
            **draw(relational_rnn_arguments(input_size)), batch_first=batch_first
        )
    elif kind == "relational_rnn_cell":
        module = RelationalRNNCell(**draw(relational_rnn_arguments(input_size)))
    else:
        module = LSTMBaseline(
            input_size,
            draw(st.integers(1, 6)),
            num_layers=draw(st.integers(1, 3)),
            output_size=draw(st.none() | st.integers(1, 4)),
            batch_first=batch_first,
        )
    seed = draw(st.integers(0, 2**31 - 1))
    module = perturb(module, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    batch_size, steps = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    is_cell = kind.endswith("cell")
    shape = (batch_size, input_size) if is_cell else (batch_size, steps, input_size)
    if not (is_cell or batch_first):
        shape = (steps, batch_size, input_size)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    state = None
    if draw(st.booleans()):
        state = module.initial_state(batch_size)
        state = _map(
            lambda s: s + 0.5 * torch.randn(s.shape, generator=generator, dtype=s.dtype), state
        )
    return module, x, state


def _map(function, state):
    """Apply ``function`` to a state tensor or to each tensor of a NamedTuple state."""
    if isinstance(state, torch.Tensor):
        return function(state)
    return type(state)(*(function(s) for s in state))


def numpy_state(model, state):
    """A torch state as the reference model's state type (array or its NamedTuple)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach().numpy()
    reference_type = type(model.initial_state(1))
    return reference_type(*(s.detach().numpy() for s in state))


def assert_close(torch_value, numpy_value, tolerance: float, what: str) -> None:
    if isinstance(torch_value, torch.Tensor):
        torch_value, numpy_value = (torch_value,), (numpy_value,)
    for a, b in zip(torch_value, numpy_value, strict=True):
        a = a.detach().numpy()
        assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
        error = np.abs(a - b).max(initial=0.0)
        assert error <= tolerance, f"{what}: max abs difference {error:.2e}"


@settings(max_examples=60, deadline=None)
@given(cases())
def test_forward_matches_pytorch(case):
    module, x, state = case
    model, params = reference_model(module), to_arrays(module)
    output, final_state = module(x, state)
    ref_output, ref_state, _ = model.forward(params, x.numpy(), numpy_state(model, state))
    assert_close(output, ref_output, FORWARD_TOLERANCE, "output")
    assert_close(final_state, ref_state, FORWARD_TOLERANCE, "state")


@settings(max_examples=60, deadline=None)
@given(cases())
def test_gradients_match_autograd(case):
    module, x, state = case
    model, params = reference_model(module), to_arrays(module)
    if state is None:
        state = module.initial_state(x.shape[0] if module_is_batch_first(module) else x.shape[1])
    x = x.clone().requires_grad_()
    state = _map(lambda s: s.clone().requires_grad_(), state)
    output, final_state = module(x, state)
    generator = torch.Generator().manual_seed(0)
    d_output = torch.randn(output.shape, generator=generator, dtype=output.dtype)
    d_final = _map(lambda s: torch.randn(s.shape, generator=generator, dtype=s.dtype), final_state)
    loss = (output * d_output).sum() + sum(
        (a * b).sum() for a, b in zip(as_tuple(final_state), as_tuple(d_final), strict=True)
    )  # a loss on every time step and on the final state
    loss.backward()

    _, _, cache = model.forward(params, x.detach().numpy(), numpy_state(model, state))
    grads = zeros_like(params)
    d_x, d_state0 = model.backward(
        params, cache, d_output.numpy(), numpy_state(model, d_final), grads
    )
    for name, p in module.named_parameters():
        assert_close(p.grad, grads[name], GRADIENT_TOLERANCE, f"gradient of {name}")
    assert_close(x.grad, d_x, GRADIENT_TOLERANCE, "gradient of the input")
    assert_close(
        tuple(s.grad for s in as_tuple(state)),
        as_tuple(d_state0),
        GRADIENT_TOLERANCE,
        "gradient of the initial state",
    )


def module_is_batch_first(module: nn.Module) -> bool:
    return getattr(module, "batch_first", True)


def as_tuple(state) -> tuple:
    return (state,) if isinstance(state, (torch.Tensor, np.ndarray)) else tuple(state)


def test_the_rmc_mlp_is_shared_and_blocks_own_their_layers():
    module = RelationalMemory(input_size=3, mem_slots=2, head_size=2, num_blocks=2)
    names = set(reference_model(module).init_params(np.random.default_rng(0)))
    assert names == set(module.state_dict())
    assert "cell.mlp.layers.1.weight" in names and "cell.blocks.1.qkv.weight" in names


@pytest.mark.parametrize(
    "module",
    [
        MultiHeadAttention(size=6, num_heads=3),
        nn.Linear(5, 3),
        nn.LayerNorm(5),
        MLPHead(5, 3, hidden_sizes=(4, 6)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_building_blocks_match_pytorch(module):
    """Forward within 1e-10 and input and parameter gradients within 1e-8."""
    module = perturb(module, seed=1)
    model, params = reference_model(module), to_arrays(module)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6 if isinstance(module, MultiHeadAttention) else 5, generator=generator)
    x = x.double().requires_grad_()
    output = module(x)
    d_output = torch.randn(output.shape, generator=generator, dtype=output.dtype)
    (output * d_output).sum().backward()

    ref_output, cache = forward_block(model, params, x.detach().numpy())
    assert_close(output, ref_output, FORWARD_TOLERANCE, "output")
    grads = zeros_like(params)
    d_x = model.backward(params, cache, d_output.numpy(), grads)
    assert_close(x.grad, d_x, GRADIENT_TOLERANCE, "gradient of the input")
    for name, p in module.named_parameters():
        assert_close(p.grad, grads[name], GRADIENT_TOLERANCE, f"gradient of {name}")


def forward_block(model, params, x):
    """(output, cache): a Linear's forward returns the output only, its cache is its input."""
    result = model.forward(params, x)
    return result if isinstance(result, tuple) else (result, x)


def test_lstm_cell_matches_torch_lstm_cell():
    module = perturb(nn.LSTMCell(4, 5), seed=3)
    model, params = reference_model(module), to_arrays(module)
    generator = torch.Generator().manual_seed(4)
    x, h, c = (torch.randn(3, n, generator=generator, dtype=torch.float64) for n in (4, 5, 5))
    h_next, c_next = module(x, (h, c))
    ref_h, ref_state, _ = model.forward(params, x.numpy(), numpy_state(model, (h, c)))
    assert_close((h_next, h_next, c_next), (ref_h, *ref_state), FORWARD_TOLERANCE, "h, c")


@pytest.mark.parametrize("output_steps", [None, 2])
@pytest.mark.parametrize("core_type", ["relational_rnn", "rmc"])
def test_sequence_classifier_matches_pytorch(output_steps, core_type):
    """Logits read at the last step (B, C), or at the last 2 steps (B, 2, C); an RMC's
    last step is read from its final memory."""
    if core_type == "rmc":
        core = RelationalMemory(4, mem_slots=2, head_size=2, num_heads=2)
    else:
        core = RelationalRNN(4, hidden_size=6, num_slots=2, slot_size=4, memory="rmc")
    module = SequenceClassifier(core, num_classes=3, hidden_sizes=(5,), output_steps=output_steps)
    module = perturb(module, seed=5)
    model, params = reference_model(module), to_arrays(module)
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    targets = torch.tensor([0, 2]) if output_steps is None else torch.tensor([[0, 2], [1, 1]])
    logits = module(x)
    loss = nn.functional.cross_entropy(logits.reshape(-1, 3), targets.reshape(-1))
    loss.backward()

    ref_logits, cache = model.forward(params, x.numpy())
    ref_loss, d_logits = softmax_cross_entropy(ref_logits, targets.numpy())
    grads = zeros_like(params)
    d_x = model.backward(params, cache, d_logits, grads)
    assert_close(logits, ref_logits, FORWARD_TOLERANCE, "logits")
    assert abs(loss.item() - ref_loss) <= FORWARD_TOLERANCE
    assert d_x.shape == x.shape
    for name, p in module.named_parameters():
        assert_close(p.grad, grads[name], GRADIENT_TOLERANCE, f"gradient of {name}")


def test_losses_match_pytorch():
    generator = torch.Generator().manual_seed(7)
    logits = (5 * torch.randn(6, 4, generator=generator, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(4, (6,), generator=generator)
    predictions = torch.randn(6, 3, generator=generator, dtype=torch.float64).requires_grad_()
    wanted = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    cross_entropy = nn.functional.cross_entropy(logits, targets)
    squared = nn.functional.mse_loss(predictions, wanted)
    (cross_entropy + squared).backward()

    ref_ce, d_logits = softmax_cross_entropy(logits.detach().numpy(), targets.numpy())
    ref_mse, d_predictions = mean_squared_error(predictions.detach().numpy(), wanted.numpy())
    assert abs(cross_entropy.item() - ref_ce) <= FORWARD_TOLERANCE
    assert abs(squared.item() - ref_mse) <= FORWARD_TOLERANCE
    assert_close(logits.grad, d_logits, GRADIENT_TOLERANCE, "d logits")
    assert_close(predictions.grad, d_predictions, GRADIENT_TOLERANCE, "d predictions")
