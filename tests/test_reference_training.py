"""NumPy optimisers equal PyTorch's, and NumPy training alone learns the recall problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from relational_rnn import LSTMBaseline, RelationalMemory, RelationalRNN
from relational_rnn.convert import reference_model, to_arrays
from relational_rnn.heads import SequenceClassifier
from relational_rnn.reference import SGD, Adam, RecallTask, clip_grad_norm
from relational_rnn.reference.train import accuracy, build_classifier, main, train, train_step

TASK = RecallTask(num_pairs=2, num_keys=4, num_values=4)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(0)
    for max_norm in (0.5, 100.0):  # clipped, and left alone
        grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
        tensors = [torch.tensor(g, requires_grad=True) for g in grads.values()]
        for tensor, g in zip(tensors, grads.values(), strict=True):
            tensor.grad = torch.tensor(g)
        expected_norm = nn.utils.clip_grad_norm_(tensors, max_norm)
        norm = clip_grad_norm(grads, max_norm)
        assert abs(norm - expected_norm.item()) <= 1e-12
        for tensor, g in zip(tensors, grads.values(), strict=True):
            np.testing.assert_allclose(g, tensor.grad.numpy(), rtol=0, atol=1e-15)


CORES = {
    "relational_rnn": lambda: RelationalRNN(TASK.input_size, 8, num_slots=2, slot_size=8),
    "relational_rnn_rmc": lambda: RelationalRNN(
        TASK.input_size, 8, num_slots=2, slot_size=8, memory="rmc"
    ),
    "rmc": lambda: RelationalMemory(TASK.input_size, mem_slots=2, head_size=4, num_heads=2),
    "lstm": lambda: LSTMBaseline(TASK.input_size, 8),
}
OPTIMIZERS = {
    "adam": (lambda: Adam(lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "sgd": (lambda: SGD(lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("core", CORES)
def test_training_matches_pytorch_for_20_steps(core, optimizer):
    """Same initial weights and batches: the same 20 losses, with clipping at norm 1."""
    torch.manual_seed(0)
    module = SequenceClassifier(CORES[core](), TASK.num_classes, hidden_sizes=(8,)).double()
    classifier, params = reference_model(module), to_arrays(module)
    initial = {name: p.copy() for name, p in params.items()}
    make_numpy_optimizer, make_torch_optimizer = OPTIMIZERS[optimizer]
    numpy_optimizer, torch_optimizer = (
        make_numpy_optimizer(),
        make_torch_optimizer(module.parameters()),
    )
    rng = np.random.default_rng(0)
    for step in range(20):
        inputs, targets = TASK.sample(16, rng)
        loss, _ = train_step(classifier, params, numpy_optimizer, inputs, targets, clip=1.0)
        torch_loss = nn.functional.cross_entropy(
            module(torch.from_numpy(inputs)), torch.from_numpy(targets)
        )
        torch_optimizer.zero_grad()
        torch_loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        torch_optimizer.step()
        assert abs(loss - torch_loss.item()) <= 1e-8, f"step {step}: {loss} vs {torch_loss.item()}"
    moved = max(np.abs(params[name] - initial[name]).max() for name in params)
    assert moved > 1e-2  # it was training, not standing still
    for name, p in module.named_parameters():  # and the weights moved alike
        np.testing.assert_allclose(params[name], p.detach().numpy(), rtol=0, atol=1e-8)


def test_numpy_training_learns_quickly():
    """A few hundred steps take a small Relational RNN far below chance on 2-pair recall."""
    rng = np.random.default_rng(0)
    classifier = build_classifier("relational_rnn", TASK.input_size, TASK.num_classes, 16, 2, 16, 2)
    params = classifier.init_params(rng)
    losses = train(classifier, params, TASK, Adam(lr=1e-2), steps=400, batch_size=32, rng=rng)
    assert np.mean(losses[:10]) > 0.9 * TASK.chance_loss  # it starts near chance (log 4)
    assert np.mean(losses[-50:]) < 0.5 * TASK.chance_loss
    held_out = accuracy(classifier, params, *TASK.sample(1000, rng))
    assert held_out >= 2 * TASK.chance_accuracy


@pytest.mark.slow
def test_numpy_training_solves_recall():
    """The training entry point takes the default recall problem (4 pairs, 8 values) to >= 95%."""
    held_out = main(["--steps", "5000", "--lr", "3e-3", "--log-every", "1000"])
    assert held_out >= 0.95
