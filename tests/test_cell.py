"""The Relational RNN (LSTM + relational memory): shapes, state, the NumPy transcription
of DESIGN section 3, gradients and errors."""

import numpy as np
import pytest
import torch
from helpers import gradcheck_module, randomize
from transcription import params_of, relational_rnn_step

from relational_rnn import RelationalRNN, RelationalRNNCell, RelationalRNNState

CONFIGS = [
    dict(memory="gated_slot"),
    dict(memory="gated_slot", output_size=3),
    dict(memory="rmc"),
    dict(memory="rmc", output_size=2, memory_init="zeros"),
    dict(memory="gated_slot", slot_size=6, num_heads=3),  # hidden 6 == slot 6: no projection
]


def make_rnn(**config) -> RelationalRNN:
    sizes = dict(num_slots=3, slot_size=4, num_heads=2) | config
    return randomize(RelationalRNN(5, 6, **sizes)).double()


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_shapes(config, batch_first):
    sizes = dict(num_slots=3, slot_size=4, num_heads=2) | config
    rnn = RelationalRNN(5, 6, batch_first=batch_first, **sizes)
    slot_size = sizes["slot_size"]
    x = torch.randn(2, 7, 5) if batch_first else torch.randn(7, 2, 5)
    output, state = rnn(x)
    out = config.get("output_size", 6)
    assert output.shape == ((2, 7, out) if batch_first else (7, 2, out))
    assert rnn.output_size == out
    assert isinstance(state, RelationalRNNState)
    assert state.h.shape == state.c.shape == (2, 6)
    assert state.memory.shape == (2, 3, slot_size)
    step_output, step_state = rnn.cell(torch.randn(2, 5))
    assert step_output.shape == (2, out) and step_state.memory.shape == (2, 3, slot_size)


def test_default_sizes_match_the_issue():
    rnn = RelationalRNN(8, 32)
    assert (rnn.cell.num_slots, rnn.cell.slot_size, rnn.cell.num_heads) == (4, 64, 2)
    assert rnn.cell.memory_type == "gated_slot" and rnn.cell.memory_init == "identity"
    assert rnn.batch_first


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_equals_numpy_transcription(config):
    rnn = make_rnn(**config)
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    output, state = rnn(x)
    params = params_of(rnn.cell)
    h, c, memory = (t.numpy() for t in rnn.initial_state(2))
    for t in range(4):
        expected, h, c, memory = relational_rnn_step(
            params,
            x[:, t].numpy(),
            h,
            c,
            memory,
            memory_kind=config["memory"],
            num_heads=rnn.cell.num_heads,
        )
        np.testing.assert_allclose(output[:, t].numpy(), expected, atol=1e-12, rtol=0)
    for actual, wanted in zip(state, (h, c, memory), strict=True):
        np.testing.assert_allclose(actual.numpy(), wanted, atol=1e-12, rtol=0)


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_cell_steps_and_chunks_equal_one_call(config):
    rnn = make_rnn(**config)
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    output, final = rnn(x)
    state = None
    for t in range(6):
        step_output, state = rnn.cell(x[:, t], state)
        torch.testing.assert_close(step_output, output[:, t], atol=1e-12, rtol=0)
    first, state = rnn(x[:, :4])
    second, state = rnn(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), output, atol=1e-12, rtol=0)
    for actual, wanted in zip(state, final, strict=True):
        torch.testing.assert_close(actual, wanted, atol=1e-12, rtol=0)


@pytest.mark.parametrize("memory", ["gated_slot", "rmc"])
def test_gradcheck(memory):
    rnn = RelationalRNN(3, 4, num_slots=2, slot_size=4, num_heads=2, memory=memory).double()
    x = torch.randn(2, 2, 3, dtype=torch.float64)
    state = [torch.randn(2, 4, dtype=torch.float64) for _ in range(2)]
    memory_state = torch.randn(2, 2, 4, dtype=torch.float64)

    def pack(x, h, c, memory_state):
        return x, RelationalRNNState(h, c, memory_state)

    assert gradcheck_module(rnn, x, *state, memory_state, pack=pack)
    assert gradcheck_module(rnn.cell, x[:, 0], *state, memory_state, pack=pack)


@torch.no_grad()
def test_zero_memory_init_keeps_slots_identical_identity_does_not():
    zeros = RelationalRNN(5, 8, num_slots=4, slot_size=8, memory_init="zeros")
    identity = RelationalRNN(5, 8, num_slots=4, slot_size=8)
    identity.load_state_dict(zeros.state_dict())
    x = torch.randn(3, 8, 5)
    memory = zeros(x)[1].memory
    assert (memory[:, 1:] - memory[:, 1:2]).abs().max() < 1e-6
    memory = identity(x)[1].memory
    assert (memory[:, 1:] - memory[:, 1:2]).abs().amax(dim=(1, 2)).min() > 1e-2


def test_batch_size_equal_to_hidden_size_is_never_transposed():
    """With B == H a transposed state has the right shape: batch elements must stay
    independent, and a batch-first module reads its input batch first."""
    rnn = make_rnn().eval()
    x = torch.randn(6, 3, 5, dtype=torch.float64)  # B = H = 6
    output, state = rnn(x)
    for b in range(6):
        single, _ = rnn(x[b : b + 1])
        torch.testing.assert_close(single[0], output[b], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"state.h must have shape \(6, 6\), got \(1, 6\)"):
        rnn(x, RelationalRNNState(state.h[:1], state.c, state.memory))


def test_state_dict_round_trip_and_to_double():
    rnn = RelationalRNN(5, 6, num_slots=3, slot_size=4)
    copy = RelationalRNN(5, 6, num_slots=3, slot_size=4)
    copy.load_state_dict(rnn.state_dict())
    x = torch.randn(2, 3, 5)
    torch.testing.assert_close(rnn(x)[0], copy(x)[0], atol=0, rtol=0)
    output, state = rnn.double()(x.double())
    assert output.dtype == state.memory.dtype == torch.float64


def test_extra_repr_shows_configuration():
    text = repr(RelationalRNN(5, 6, num_slots=3, slot_size=4, memory="rmc", output_size=2))
    for piece in (
        "input_size=5",
        "hidden_size=6",
        "num_slots=3",
        "slot_size=4",
        "memory='rmc'",
        "memory_init='identity'",
        "output_size=2",
        "batch_first=True",
    ):
        assert piece in text


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (
            dict(slot_size=10, num_heads=4),
            ValueError,
            r"slot_size \(10\) must be divisible by num_heads \(4\); try slot_size=8",
        ),
        (dict(memory="lstm"), ValueError, "memory must be one of 'gated_slot', 'rmc'; got 'lstm'"),
        (dict(memory_init="random"), ValueError, "memory_init must be one of 'identity', 'zeros'"),
        (dict(hidden_size=0), ValueError, "hidden_size must be >= 1, got 0"),
        (dict(num_slots=0), ValueError, "num_slots must be >= 1, got 0"),
        (dict(output_size=0), ValueError, "output_size must be >= 1, got 0"),
        (dict(input_size="5"), TypeError, "input_size must be an int >= 1, got str '5'"),
    ],
)
def test_constructor_errors(kwargs, error, words):
    config = dict(input_size=5, hidden_size=6) | kwargs
    with pytest.raises(error, match=words):
        RelationalRNN(**config)
    with pytest.raises(error, match=words):
        RelationalRNNCell(**config)


def bad_state(h=(2, 6), c=(2, 6), memory=(2, 3, 4), dtype=torch.float32):
    return RelationalRNNState(*(torch.zeros(shape, dtype=dtype) for shape in (h, c, memory)))


@pytest.mark.parametrize(
    ("state", "error", "words"),
    [
        (bad_state(h=(3, 6)), ValueError, r"state.h must have shape \(2, 6\), got \(3, 6\)"),
        (bad_state(c=(6, 2)), ValueError, r"state.c must have shape \(2, 6\), got \(6, 2\)"),
        (
            bad_state(memory=(2, 4, 3)),
            ValueError,
            r"state.memory must have shape \(2, 3, 4\), got \(2, 4, 3\)",
        ),
        (bad_state(dtype=torch.float64), TypeError, "state.h has dtype torch.float64"),
        (bad_state()[:2], TypeError, r"RelationalRNNState \(h, c, memory\), got tuple of length 2"),
    ],
)
def test_state_errors(state, error, words):
    rnn = RelationalRNN(5, 6, num_slots=3, slot_size=4)
    with pytest.raises(error, match=words):
        rnn(torch.randn(2, 3, 5), state)
    with pytest.raises(error, match=words):
        rnn.cell(torch.randn(2, 5), state)


@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.randn(2, 5), ValueError, r"3 dimensions \(batch, time, features\)"),
        (torch.randn(2, 3, 4), ValueError, r"5 features .* got shape \(2, 3, 4\)"),
        (torch.randn(2, 3, 5).double(), TypeError, "input has dtype torch.float64"),
        (torch.randn(2, 0, 5), ValueError, "non-empty"),
    ],
)
def test_input_errors(x, error, words):
    with pytest.raises(error, match=words):
        RelationalRNN(5, 6, num_slots=3, slot_size=4)(x)


def test_time_first_layout_is_named_in_errors():
    rnn = RelationalRNN(5, 6, num_slots=3, slot_size=4, batch_first=False)
    with pytest.raises(ValueError, match=r"\(time, batch, features\)"):
        rnn(torch.randn(3, 5))
