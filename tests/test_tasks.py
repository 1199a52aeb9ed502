"""Task generators: deterministic under a seed, well-posed (a brute-force solver that reads
only the inputs gets every answer right), with a sensible metric and baseline."""

import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relational_rnn.tasks import (
    TASKS,
    BabiFacts,
    NthFarthest,
    ObjectTracking,
    PairMatching,
    RecallTask,
    Sorting,
    make_task,
    task_options,
)


def hot(row) -> int:
    """The index of the single 1 in a one-hot row (asserting it is one-hot)."""
    ones = [i for i, v in enumerate(row) if v == 1.0]
    assert len(ones) == 1 and sum(row) == 1.0, row
    return ones[0]


def solve_nth_farthest(task: NthFarthest, example) -> int:
    k, d = task.num_vectors, task.dims
    vectors = [[float(v) for v in step[:d]] for step in example]
    labels = [hot(step[d : d + k]) for step in example]
    questions = {(hot(step[d + k : d + 2 * k]), hot(step[d + 2 * k :])) for step in example}
    assert sorted(labels) == list(range(k)) and len(questions) == 1
    ((n_minus_1, m),) = questions
    reference = vectors[labels.index(m)]
    distances = [math.dist(v, reference) for v in vectors]
    assert len(set(distances)) == k, "ties would make the answer ambiguous"
    farthest_first = sorted(range(k), key=lambda i: -distances[i])
    return labels[farthest_first[n_minus_1]]


def solve_object_tracking(task: ObjectTracking, example) -> int:
    o, g = task.num_objects, task.grid_size
    where = {}
    for step in example[:o]:
        where[hot(step[:o])] = [hot(step[o : o + g]), hot(step[o + g : o + 2 * g])]
    assert sorted(where) == list(range(o))
    moves = {0: (1, 0), 1: (0, 1), 2: (-1, 0), 3: (0, -1)}
    for step in example[o:-1]:
        dx, dy = moves[hot(step[o + 2 * g : o + 2 * g + 4])]
        x, y = where[hot(step[:o])]
        where[hot(step[:o])] = [(x + dx) % g, (y + dy) % g]
    assert example[-1][-1] == 1.0
    x, y = where[hot(example[-1][:o])]
    return x * g + y


def solve_pair_matching(task: PairMatching, example) -> int:
    v = task.vocab_size
    partner = {}
    for step in example[:-1]:
        a, b = hot(step[:v]), hot(step[v : 2 * v])
        partner[a], partner[b] = b, a
    assert len(partner) == 2 * task.num_pairs, "tokens must be distinct"
    return partner[hot(example[-1][:v])]


def solve_babi(task: BabiFacts, example) -> int:
    p, n_loc = task.num_people, task.num_locations
    location, holder, place = {}, None, None
    for step in example[:-1]:
        kind, person = hot(step[:3]), hot(step[3 : 3 + p])
        if kind == 0:
            location[person] = hot(step[3 + p : 3 + p + n_loc])
        else:
            assert sum(step[3 + p : 3 + p + n_loc]) == 0  # no location shown
            if kind == 1:
                assert holder is None
                holder = person
            else:
                assert person == holder
                place, holder = location[holder], None
    assert example[-1][-1] == 1.0
    return location[holder] if holder is not None else place


def solve_sorting(task: Sorting, example) -> list[int]:
    assert all(sum(step) == 0 for step in example[task.length :])
    return sorted(hot(step) for step in example[: task.length])


def solve_recall(task: RecallTask, example) -> int:
    k = task.num_keys
    values = {hot(step[:k]): hot(step[k : k + task.num_values]) for step in example[:-1]}
    return values[hot(example[-1][:k])]


SOLVERS = {
    "nth-farthest": solve_nth_farthest,
    "object-tracking": solve_object_tracking,
    "pair-matching": solve_pair_matching,
    "babi": solve_babi,
    "sorting": solve_sorting,
    "recall": solve_recall,
}


def check_well_posed(task, seed: int, batch_size: int) -> None:
    inputs, targets = task.sample(batch_size, torch.Generator().manual_seed(seed))
    assert inputs.shape == (batch_size, task.steps, task.input_size)
    assert inputs.dtype == torch.float32 and targets.dtype == torch.int64
    expected = (batch_size,) if task.output_steps is None else (batch_size, task.output_steps)
    assert targets.shape == expected
    assert int(targets.min()) >= 0 and int(targets.max()) < task.num_classes
    solver = SOLVERS[task.name]
    for example, target in zip(inputs.tolist(), targets.tolist(), strict=True):
        assert solver(task, example) == target


def test_every_task_has_a_solver():
    assert set(SOLVERS) == set(TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_default_task_is_well_posed(name):
    check_well_posed(make_task(name), seed=1, batch_size=300)


@pytest.mark.parametrize("name", TASKS)
def test_generator_is_deterministic_under_a_seed(name):
    task = make_task(name)
    first = task.sample(64, torch.Generator().manual_seed(7))
    again = task.sample(64, torch.Generator().manual_seed(7))
    other = task.sample(64, torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(TASKS)),
    sizes=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    seed=st.integers(0, 2**31),
)
def test_small_settings_are_well_posed(name, sizes, seed):
    options = dict(zip(task_options(name), sizes, strict=False))
    if name == "pair-matching":
        options["vocab_size"] = max(options["vocab_size"], 2 * options["num_pairs"])
    if name == "recall":
        options["num_keys"] = max(options["num_keys"], options["num_pairs"])
    if name == "babi":
        options["num_facts"] = max(options["num_facts"], 2)
    check_well_posed(make_task(name, **options), seed, batch_size=20)


def test_nth_farthest_matches_the_paper_layout():
    task = NthFarthest()
    assert (task.num_vectors, task.dims, task.input_size, task.num_classes) == (8, 16, 40, 8)
    inputs, targets = task.sample(4000, torch.Generator().manual_seed(0))
    vectors = inputs[..., :16]
    assert float(vectors.min()) >= -1 and float(vectors.max()) <= 1
    labels = inputs[..., 16:24].argmax(-1)  # (B, K)
    assert (labels != torch.arange(8)).any(dim=1).float().mean() > 0.99  # not positions
    nth = inputs[:, 0, 24:32].argmax(-1)
    # the K-th farthest from m is m itself
    reference = inputs[:, 0, 32:40].argmax(-1)
    assert torch.equal(targets[nth == 7], reference[nth == 7])
    assert torch.bincount(targets, minlength=8).min() > 400  # every label is an answer


def test_babi_drops_and_redraws():
    task = BabiFacts(num_people=2, num_locations=3, num_facts=4)
    inputs, _ = task.sample(2000, torch.Generator().manual_seed(0))
    kinds = inputs[:, :-1, :3].argmax(-1)
    assert ((kinds == 1).sum(1) == 1).all()  # exactly one pick-up per story
    dropped = (kinds == 2).any(1).float().mean()
    assert 0.2 < dropped < 0.5


def test_sorting_metrics_count_sequences():
    task = Sorting(length=2, num_values=3)
    targets = torch.tensor([[0, 1], [2, 2]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1], [2, 0]]), 3).float()
    metrics = task.metrics(logits, targets)
    assert metrics["accuracy"] == 0.75 and metrics["sequence_accuracy"] == 0.5


def test_baseline_is_the_majority_class():
    task = PairMatching(num_pairs=2, vocab_size=4)
    train_targets = torch.tensor([1, 1, 1, 2, 3])
    eval_targets = torch.tensor([1, 2, 1, 0])
    baseline = task.baseline(train_targets, eval_targets)
    assert baseline["accuracy"] == 0.5
    counts = Counter(train_targets.tolist())
    expected_loss = -sum(math.log((counts[t] + 1e-3) / (5 + 4e-3)) for t in [1, 2, 1, 0]) / 4
    assert baseline["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_sorting_baseline_is_per_output_step():
    task = Sorting(length=3, num_values=10)
    generator = torch.Generator().manual_seed(0)
    _, train = task.sample(5000, generator)
    _, held_out = task.sample(5000, generator)
    modes = [Counter(train[:, j].tolist()).most_common(1)[0][0] for j in range(3)]
    expected = sum((held_out[:, j] == modes[j]).float().mean() for j in range(3)) / 3
    assert task.baseline(train, held_out)["accuracy"] == pytest.approx(float(expected))
    assert modes[0] == 0 and modes[2] == 9  # sorted: the ends are skewed


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nth-farthest", {"num_vectors": 0}, "num_vectors must be >= 1"),
        ("pair-matching", {"num_pairs": 5, "vocab_size": 8}, "vocab_size"),
        ("recall", {"num_pairs": 5, "num_keys": 4}, "num_pairs"),
        ("babi", {"num_facts": 1}, "num_facts"),
        ("sorting", {"colour": 3}, "no option 'colour'"),
    ],
)
def test_bad_options_are_rejected(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_task(name, **options)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="task must be one of"):
        make_task("chess")


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        Sorting().sample(0, torch.Generator())


def test_nth_farthest_partial_solution_scores_two_over_k():
    task = NthFarthest(num_vectors=4, dims=3)
    inputs, targets = task.sample(20000, torch.Generator().manual_seed(3))
    k = task.num_vectors
    nth = inputs[:, 0, 3 + k : 3 + 2 * k].argmax(-1)
    reference = inputs[:, 0, 3 + 2 * k :].argmax(-1)
    guess = (reference + torch.randint(1, k, reference.shape)) % k  # another label
    answer = torch.where(nth == k - 1, reference, guess)
    accuracy = float((answer == targets).float().mean())
    what, expected = task.partial_solution
    assert "n = K" in what and expected == 0.5
    assert accuracy == pytest.approx(expected, abs=0.015)


def test_describe_names_the_options():
    assert NthFarthest(3, 2).describe() == "nth-farthest (num_vectors=3, dims=2)"
    assert Sorting().partial_solution is None


@pytest.mark.parametrize("options", [{"num_pairs": 5, "num_keys": 4}, {"num_values": 0}])
def test_the_numpy_recall_problem_is_checked_like_the_task(options):
    """Both recall tasks take their sizes and checks from relational_rnn._recall."""
    from relational_rnn.reference import RecallTask as NumpyRecallTask

    with pytest.raises(ValueError) as task_error:
        RecallTask(**options)
    with pytest.raises(ValueError) as numpy_error:
        NumpyRecallTask(**options)
    assert str(numpy_error.value) == str(task_error.value)
    sizes = ("input_size", "steps", "num_classes", "chance_loss", "chance_accuracy")
    task, numpy_task = RecallTask(3, 5, 6), NumpyRecallTask(3, 5, 6)
    assert [getattr(task, s) for s in sizes] == [getattr(numpy_task, s) for s in sizes]
