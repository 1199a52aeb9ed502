"""The LSTM baseline: the package's interface around torch.nn.LSTM."""

import pytest
import torch
from helpers import gradcheck_module

from relational_rnn import LSTMBaseline, LSTMState, count_parameters


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(("num_layers", "output_size"), [(1, None), (2, 3)])
def test_shapes(batch_first, num_layers, output_size):
    lstm = LSTMBaseline(
        5, 6, num_layers=num_layers, output_size=output_size, batch_first=batch_first
    )
    x = torch.randn(2, 7, 5) if batch_first else torch.randn(7, 2, 5)
    output, state = lstm(x)
    out = output_size or 6
    assert output.shape == ((2, 7, out) if batch_first else (7, 2, out))
    assert isinstance(state, LSTMState)
    assert state.h.shape == state.c.shape == (num_layers, 2, 6)
    assert lstm.output_size == out


def test_equals_torch_lstm_and_forget_bias_starts_at_one():
    lstm = LSTMBaseline(5, 6)
    bias = lstm.lstm.bias_ih_l0 + lstm.lstm.bias_hh_l0
    assert torch.equal(bias[6:12], torch.ones(6))
    reference = torch.nn.LSTM(5, 6, batch_first=True)
    reference.load_state_dict(lstm.lstm.state_dict())
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(lstm(x)[0], reference(x)[0], atol=0, rtol=0)


@torch.no_grad()
def test_chunks_with_carried_state_equal_one_call():
    lstm = LSTMBaseline(5, 6, num_layers=2, output_size=3).double()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    output, final = lstm(x)
    first, state = lstm(x[:, :2])
    second, state = lstm(x[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), output, atol=1e-12, rtol=0)
    for actual, wanted in zip(state, final, strict=True):
        torch.testing.assert_close(actual, wanted, atol=1e-12, rtol=0)


def test_gradcheck():
    lstm = LSTMBaseline(3, 4, output_size=2).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64)
    h, c = torch.randn(2, 1, 2, 4, dtype=torch.float64)

    def pack(x, h, c):
        return x, LSTMState(h, c)

    assert gradcheck_module(lstm, x, h, c, pack=pack)


def test_count_parameters_counts_trainable_only():
    lstm = LSTMBaseline(5, 6, output_size=3)
    assert count_parameters(lstm) == 4 * 6 * (5 + 6) + 2 * 4 * 6 + 6 * 3 + 3
    lstm.head.requires_grad_(False)
    assert count_parameters(lstm) == 4 * 6 * (5 + 6) + 2 * 4 * 6
    assert "output_size=3" in repr(lstm)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda m: m(torch.randn(2, 3, 4)), ValueError, r"5 features"),
        (
            lambda m: m(
                torch.randn(2, 3, 5), LSTMState(torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))
            ),
            ValueError,
            r"state.h must have shape \(1, 2, 6\), got \(1, 3, 6\)",
        ),
        (lambda m: m(torch.randn(2, 3, 5), torch.zeros(1, 2, 6)), TypeError, "LSTMState"),
        (lambda m: m(torch.randn(2, 3, 5).double()), TypeError, "float64"),
        (lambda m: LSTMBaseline(5, 0), ValueError, "hidden_size must be >= 1, got 0"),
        (lambda m: LSTMBaseline(5, 6, dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    ],
)
def test_errors(call, error, words):
    with pytest.raises(error, match=words):
        call(LSTMBaseline(5, 6))


def test_state_under_bf16_autocast_can_be_fed_back():
    lstm = LSTMBaseline(5, 6)
    x = torch.randn(2, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = lstm(x)
        output, state = lstm(x, state)
    assert state.h.dtype == state.c.dtype == torch.float32
    assert output.shape == (2, 3, 6)
