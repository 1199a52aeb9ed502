"""Central finite differences agree with the reference's backward pass (float64).

For small models of every kind, the gradient of a loss on every time step and on the
final state, with respect to every parameter (and the input and the initial state),
matches (L(w + eps) - L(w - eps)) / (2 eps) within a relative error of 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from relational_rnn.reference import (
    LSTMBaseline,
    MultiHeadAttention,
    RecallTask,
    RelationalMemory,
    RelationalRNN,
    SequenceClassifier,
    numerical_gradient,
    relative_error,
    softmax_cross_entropy,
    zeros_like,
)
from relational_rnn.reference.gated_slot import GatedSlotMemoryCell

TOLERANCE = 1e-6
# Gradients of norm below FLOOR are held to an absolute error of FLOOR * TOLERANCE instead:
# the gradients of these models have norms above 2e-2, except those that are zero by
# symmetry (attention key biases), where finite differences measure rounding noise only.
FLOOR = 1e-2


def error(numeric: np.ndarray, analytic: np.ndarray) -> float:
    return relative_error(numeric, analytic, floor=FLOOR)


MODELS = {
    "rmc-unit-2-blocks": lambda: RelationalMemory(
        3, mem_slots=2, head_size=2, num_heads=2, num_blocks=2, key_size=3
    ),
    "rmc-memory-gate-3-mlp-layers": lambda: RelationalMemory(
        3, mem_slots=3, head_size=3, num_heads=1, gate_style="memory", attention_mlp_layers=3
    ),  # slots of 3 at least: a LayerNorm over 2 features is flat (its output is +-1)
    "rmc-ungated": lambda: RelationalMemory(3, mem_slots=2, head_size=3, gate_style=None),
    "gated-slot-cell-no-projection": lambda: GatedSlotMemoryCell(4, 2, 4, num_heads=2),
    "relational-rnn-gated-slot": lambda: RelationalRNN(
        3, hidden_size=3, num_slots=2, slot_size=4, num_heads=2, output_size=2
    ),
    "relational-rnn-rmc": lambda: RelationalRNN(
        3, hidden_size=3, num_slots=2, slot_size=4, num_heads=2, memory="rmc"
    ),
    "lstm-2-layers": lambda: LSTMBaseline(3, hidden_size=3, num_layers=2, output_size=2),
}


def perturbed_params(model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = model.init_params(rng)
    return {name: p + 0.3 * rng.standard_normal(p.shape) for name, p in params.items()}


def perturbed_state(state, rng: np.random.Generator):
    if isinstance(state, np.ndarray):
        return state + 0.5 * rng.standard_normal(state.shape)
    return type(state)(*(perturbed_state(s, rng) for s in state))


def state_arrays(state) -> list[np.ndarray]:
    return [state] if isinstance(state, np.ndarray) else list(state)


@pytest.mark.parametrize("name", MODELS)
def test_backward_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    model = MODELS[name]()
    params = perturbed_params(model, rng)
    steps = 1 if name.startswith("gated-slot-cell") else 3
    x = rng.standard_normal((2, steps, 4 if steps == 1 else 3))
    if steps == 1:
        x = x[:, 0]  # a cell: one step (B, I)
    state = perturbed_state(model.initial_state(2), rng)
    output, final_state, _ = model.forward(params, x, state)
    d_output = rng.standard_normal(output.shape)
    d_final = perturbed_state(final_state, rng)  # any random array of the same shapes

    def loss() -> float:
        out, final, _ = model.forward(params, x, state)
        return float((out * d_output).sum()) + sum(
            float((a * b).sum())
            for a, b in zip(state_arrays(final), state_arrays(d_final), strict=True)
        )

    _, _, cache = model.forward(params, x, state)
    grads = zeros_like(params)
    d_x, d_state0 = model.backward(params, cache, d_output, d_final, grads)

    for param_name, value in params.items():
        err = error(numerical_gradient(loss, value), grads[param_name])
        assert err <= TOLERANCE, f"{param_name}: relative error {err:.1e}"
    assert error(numerical_gradient(loss, x), d_x) <= TOLERANCE
    for s, d_s in zip(state_arrays(state), state_arrays(d_state0), strict=True):
        assert error(numerical_gradient(loss, s), d_s) <= TOLERANCE


def test_attention_and_classifier_with_cross_entropy_match_finite_differences():
    """The gated slot memory's attention on its own, and a classifier's loss."""
    rng = np.random.default_rng(1)
    attention = MultiHeadAttention(size=4, num_heads=2)
    task = RecallTask(num_pairs=2, num_keys=3, num_values=3)
    core = RelationalRNN(task.input_size, 3, num_slots=2, slot_size=4, prefix="core.")
    classifier = SequenceClassifier(core, task.num_classes, hidden_sizes=(3,))
    memory = rng.standard_normal((2, 3, 4))
    d_out = rng.standard_normal((2, 3, 4))
    inputs, targets = task.sample(3, rng)

    for model, params, loss, backward in [
        (
            attention,
            perturbed_params(attention, rng),
            lambda p: float((attention.forward(p, memory)[0] * d_out).sum()),
            lambda p, g: attention.backward(p, attention.forward(p, memory)[1], d_out, g),
        ),
        (
            classifier,
            perturbed_params(classifier, rng),
            lambda p: softmax_cross_entropy(classifier.forward(p, inputs)[0], targets)[0],
            lambda p, g: classifier.backward(
                p,
                classifier.forward(p, inputs)[1],
                softmax_cross_entropy(classifier.forward(p, inputs)[0], targets)[1],
                g,
            ),
        ),
    ]:
        grads = zeros_like(params)
        backward(params, grads)
        for name, value in params.items():
            numeric = numerical_gradient(lambda: loss(params), value)  # noqa: B023
            err = error(numeric, grads[name])
            assert err <= TOLERANCE, f"{type(model).__name__} {name}: {err:.1e}"
