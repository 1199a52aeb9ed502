"""Train a model on the key-value recall problem and print its held-out accuracy.

    python examples/train_recall.py --model rmc --steps 1500

A few (key, value) pairs are shown, then a key; the model must answer its value.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from relational_rnn import LSTMBaseline, RelationalMemory, RelationalRNN, count_parameters
from relational_rnn.heads import SequenceClassifier
from relational_rnn.tasks.recall import RecallTask

MODELS = ("lstm", "relational-rnn", "relational-rnn-rmc", "rmc")


def build(name: str, task: RecallTask, hidden_size: int = 64) -> SequenceClassifier:
    """A recurrent core of the named kind, read at the last step by a one-layer MLP head."""
    if name == "lstm":
        core = LSTMBaseline(task.input_size, hidden_size)
    elif name == "rmc":
        core = RelationalMemory(task.input_size, mem_slots=4, head_size=16, num_heads=2)
    else:
        memory = "rmc" if name == "relational-rnn-rmc" else "gated_slot"
        core = RelationalRNN(task.input_size, hidden_size, num_slots=4, slot_size=32, memory=memory)
    return SequenceClassifier(core, task.num_classes, (hidden_size,))


def train(
    name: str,
    task: RecallTask,
    steps: int,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 3e-3,
    eval_size: int = 2000,
) -> tuple[list[float], float]:
    """Adam on fresh seeded batches. Returns the training losses and the accuracy on a
    fixed held-out set (seeded apart from training)."""
    torch.manual_seed(seed)
    model = build(name, task)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    losses = []
    for _ in range(steps):
        inputs, targets = task.sample(batch_size, generator)
        loss = F.cross_entropy(model(inputs), targets)  # the head returns logits
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    inputs, targets = task.sample(eval_size, torch.Generator().manual_seed(12345))
    with torch.no_grad():
        accuracy = (model(inputs).argmax(dim=1) == targets).double().mean().item()
    return losses, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="rmc", help="recurrent core to train")
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps (batches of 128)")
    parser.add_argument("--pairs", type=int, default=2, help="key-value pairs per sequence")
    parser.add_argument("--symbols", type=int, default=4, help="number of keys and of values")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = RecallTask(num_pairs=args.pairs, num_keys=args.symbols, num_values=args.symbols)
    start = time.perf_counter()
    losses, accuracy = train(args.model, task, args.steps, args.seed)
    params = count_parameters(build(args.model, task))
    print(
        f"{args.model}: {params} parameters, {args.steps} steps in "
        f"{time.perf_counter() - start:.1f} s, final loss {sum(losses[-20:]) / 20:.3f} "
        f"(chance {task.chance_loss:.3f}), held-out accuracy {accuracy:.1%} "
        f"(chance {1 / task.num_values:.1%})"
    )


if __name__ == "__main__":
    main()
