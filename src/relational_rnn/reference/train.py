"""Train a model on a task with the NumPy reference: the model, its gradients and the
optimiser are NumPy only.

    python -m relational_rnn.reference.train                      # recall, 5000 steps
    python -m relational_rnn.reference.train --task-option num_pairs=2 --steps 1500
    python -m relational_rnn.reference.train --task nth-farthest --model rmc

prints the loss and accuracy as training goes, then the accuracy on fresh examples
next to the majority-class accuracy. The recall task is generated with NumPy here, so
that run never imports PyTorch; the other tasks of ``relational_rnn.tasks`` have
PyTorch generators, so for them PyTorch makes the data (and nothing else). Models: the
Relational RNN (gated slot memory or RMC), the RMC alone, the LSTM baseline; each is
read by an MLP head (``--head-hidden``).
"""

from __future__ import annotations

import argparse
import ast
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from .heads import SequenceClassifier
from .losses import softmax_cross_entropy
from .lstm import LSTMBaseline
from .module import Params, zeros_like
from .optim import SGD, Adam, clip_grad_norm
from .recall import RecallTask
from .relational_rnn import RelationalRNN
from .rmc import RelationalMemory

MODELS = ("relational_rnn", "rmc", "lstm")


class Task(Protocol):
    """What training needs from a task."""

    input_size: int
    num_classes: int
    output_steps: int | None

    def sample(
        self, batch_size: int, rng: np.random.Generator, dtype
    ) -> tuple[np.ndarray, np.ndarray]: ...


class TorchGeneratedTask:
    """A task of ``relational_rnn.tasks`` (PyTorch generators) serving NumPy arrays."""

    def __init__(self, name: str, seed: int, **options: object) -> None:
        import torch  # only here: the data of these tasks is made by PyTorch

        from .. import tasks

        self.task = tasks.make_task(name, **options)
        self.generator = torch.Generator().manual_seed(seed)
        self.input_size = self.task.input_size
        self.num_classes = self.task.num_classes
        self.output_steps = self.task.output_steps

    def __repr__(self) -> str:
        return repr(self.task)

    def sample(
        self, batch_size: int, rng: np.random.Generator, dtype
    ) -> tuple[np.ndarray, np.ndarray]:
        """inputs (B, T, I), targets (B,) or (B, L); ``rng`` is unused (the task's own
        generator, seeded once, makes the examples)."""
        inputs, targets = self.task.sample(batch_size, self.generator)
        return inputs.numpy().astype(dtype), targets.numpy()


def load_task(name: str, seed: int, options: dict[str, object]) -> Task:
    """The NumPy recall task, or any other task of ``relational_rnn.tasks`` by name."""
    if name == "recall":
        return RecallTask(**options)
    return TorchGeneratedTask(name, seed, **options)


def build_classifier(
    model: str,
    input_size: int,
    num_classes: int,
    hidden_size: int = 64,
    num_slots: int = 4,
    slot_size: int = 64,
    num_heads: int = 2,
    memory: str = "gated_slot",
    head_hidden: Sequence[int] = (),
    output_steps: int | None = None,
) -> SequenceClassifier:
    """A reference SequenceClassifier (names ``core.*``, ``head.*``) around ``model``."""
    if model == "relational_rnn":
        core = RelationalRNN(
            input_size, hidden_size, num_slots, slot_size, num_heads, memory, prefix="core."
        )
    elif model == "rmc":
        core = RelationalMemory(
            input_size, num_slots, slot_size // num_heads, num_heads=num_heads, prefix="core."
        )
    elif model == "lstm":
        core = LSTMBaseline(input_size, hidden_size, prefix="core.")
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    return SequenceClassifier(core, num_classes, head_hidden, output_steps)


def train_step(
    classifier: SequenceClassifier,
    params: Params,
    optimizer: Adam | SGD,
    inputs: np.ndarray,
    targets: np.ndarray,
    clip: float | None = 1.0,
) -> tuple[float, float]:
    """One update on a batch. Returns the loss and accuracy on it before the update."""
    logits, cache = classifier.forward(params, inputs)  # (B, [L,] C)
    loss, d_logits = softmax_cross_entropy(logits, targets)
    grads = zeros_like(params)
    classifier.backward(params, cache, d_logits, grads)
    if clip is not None:
        clip_grad_norm(grads, clip)
    optimizer.step(params, grads)
    return loss, float((logits.argmax(axis=-1) == targets).mean())


def accuracy(
    classifier: SequenceClassifier, params: Params, inputs: np.ndarray, targets: np.ndarray
) -> float:
    """The fraction of answers (examples, or example-steps) predicted right."""
    logits, _ = classifier.forward(params, inputs)
    return float((logits.argmax(axis=-1) == targets).mean())


def train(
    classifier: SequenceClassifier,
    params: Params,
    task: Task,
    optimizer: Adam | SGD,
    steps: int,
    batch_size: int,
    rng: np.random.Generator,
    clip: float | None = 1.0,
    log: Callable[[int, float, float], None] | None = None,
) -> list[float]:
    """``steps`` updates of ``params`` (in place) on fresh batches; returns the losses."""
    dtype = next(iter(params.values())).dtype
    losses = []
    for step in range(1, steps + 1):
        inputs, targets = task.sample(batch_size, rng, dtype)
        loss, batch_accuracy = train_step(classifier, params, optimizer, inputs, targets, clip)
        losses.append(loss)
        if log is not None:
            log(step, loss, batch_accuracy)
    return losses


def parse_option(text: str) -> tuple[str, object]:
    """'num_pairs=2' -> ('num_pairs', 2): the value is a Python literal, or a string."""
    key, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv: list[str] | None = None) -> float:
    """Parse arguments, train, print the held-out accuracy and return it."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--task", default="recall", help="recall, or the name of a relational_rnn task")
    add(
        "--task-option",
        type=parse_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task parameter, e.g. num_pairs=2 (repeatable)",
    )
    add("--model", choices=MODELS, default="relational_rnn", help="the recurrent core")
    add(
        "--memory",
        choices=("gated_slot", "rmc"),
        default="gated_slot",
        help="the Relational RNN's memory",
    )
    add("--hidden-size", type=int, default=64, help="LSTM hidden size H")
    add("--num-slots", type=int, default=4, help="memory slots N")
    add("--slot-size", type=int, default=64, help="slot size S (num_heads x head size)")
    add("--num-heads", type=int, default=2, help="attention heads")
    add("--head-hidden", type=int, nargs="*", default=[], help="hidden sizes of the MLP head")
    add("--optimizer", choices=("adam", "sgd"), default="adam", help="the optimiser")
    add("--lr", type=float, default=3e-3, help="learning rate")
    add("--clip", type=float, default=1.0, help="global gradient norm (0: off)")
    add("--steps", type=int, default=5000, help="optimiser steps")
    add("--batch-size", type=int, default=64, help="examples per step")
    add("--eval-size", type=int, default=2000, help="held-out examples for the final accuracy")
    add("--log-every", type=int, default=250, help="steps between progress lines")
    add("--float32", action="store_true", help="train in float32 (default float64)")
    add("--seed", type=int, default=0, help="seed of weights and data")
    args = parser.parse_args(argv)

    task = load_task(args.task, args.seed, dict(args.task_option))
    rng = np.random.default_rng(args.seed)
    dtype = np.float32 if args.float32 else np.float64
    classifier = build_classifier(
        args.model,
        task.input_size,
        task.num_classes,
        args.hidden_size,
        args.num_slots,
        args.slot_size,
        args.num_heads,
        args.memory,
        args.head_hidden,
        task.output_steps,
    )
    params = classifier.init_params(rng, dtype)
    optimizer = Adam(args.lr) if args.optimizer == "adam" else SGD(args.lr, momentum=0.9)
    print(f"{args.model} on {task}: {sum(p.size for p in params.values())} parameters")
    start = time.perf_counter()

    def log(step: int, loss: float, batch_accuracy: float) -> None:
        if step % args.log_every == 0:
            elapsed = time.perf_counter() - start
            print(f"step {step:6d}  loss {loss:.4f}  accuracy {batch_accuracy:.3f}  {elapsed:.0f}s")

    clip = args.clip or None
    train(classifier, params, task, optimizer, args.steps, args.batch_size, rng, clip, log)
    inputs, targets = task.sample(args.eval_size, rng, dtype)
    held_out = accuracy(classifier, params, inputs, targets)
    majority = np.bincount(targets.ravel(), minlength=task.num_classes).max() / targets.size
    print(f"held-out accuracy {held_out:.3f} (majority class {majority:.3f})")
    return held_out


if __name__ == "__main__":
    main()
