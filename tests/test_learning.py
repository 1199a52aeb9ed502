"""Every model learns the key-value recall problem, deterministically under a seed.

Uses the training loop of examples/train_recall.py.
"""

import importlib.util
from pathlib import Path

import pytest

from relational_rnn.tasks.recall import RecallTask

_spec = importlib.util.spec_from_file_location(
    "train_recall", Path(__file__).parents[1] / "examples" / "train_recall.py"
)
train_recall = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_recall)

TASK = RecallTask(num_pairs=2, num_keys=4, num_values=4)


@pytest.mark.parametrize("name", train_recall.MODELS)
def test_loss_falls_well_below_chance(name):
    losses, _ = train_recall.train(name, TASK, steps=300)
    recent = sum(losses[-20:]) / 20
    assert recent < 0.5 * TASK.chance_loss, (recent, TASK.chance_loss)


def test_training_is_deterministic_under_a_seed():
    first = train_recall.train("rmc", TASK, steps=20)
    assert train_recall.train("rmc", TASK, steps=20) == first
    assert train_recall.train("rmc", TASK, steps=20, seed=1) != first


@pytest.mark.parametrize("name", ["rmc", "relational-rnn"])
def test_relational_models_reach_high_accuracy(name):
    _, accuracy = train_recall.train(name, TASK, steps=1500)
    assert accuracy >= 0.95, accuracy
