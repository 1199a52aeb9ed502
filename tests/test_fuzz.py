"""Random shapes, sizes and values through the public modules and the command line.

Every call must either return outputs of exactly the documented shapes or raise
``ValueError``/``TypeError`` with a message; the command line must either accept the
flags or exit with status 2 and a one-line error. Nothing may crash otherwise or
hang. Each test prints how many cases it tried.
"""

from __future__ import annotations

import contextlib
import io
import signal
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relational_rnn import GatedSlotMemoryCell, LSTMBaseline, RelationalMemory, RelationalRNN
from relational_rnn.cli import main
from relational_rnn.train import Run

CASES = 200
SETTINGS = settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECONDS_PER_CASE = 20  # a hang fails the case instead of stopping the test run

small = st.integers(1, 5)
#: the values a size must reject: zero, negative, and not an int at all
bad_sizes = st.sampled_from([0, -1, True, 2.0, "3"])


@st.composite
def sizes_with_one_bad(draw: st.DrawFn, *names: str) -> dict[str, object]:
    """Valid sizes for ``names``; in half the cases one of them is replaced by a bad value."""
    values = {name: draw(small) for name in names}
    if draw(st.booleans()):
        values[draw(st.sampled_from(names))] = draw(bad_sizes)
    return values


def valid_size(value: object) -> bool:
    return type(value) is int and value >= 1


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the block after ``seconds`` (main thread only)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"a case ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call: Callable[[], object]) -> object:
    """The call's result, or the ValueError/TypeError it raised (which needs a message)."""
    with time_limit(SECONDS_PER_CASE):
        try:
            return call()
        except (ValueError, TypeError) as error:
            assert str(error).strip(), f"{type(error).__name__} without a message"
            return error


def sequence(data: st.DataObject, input_size: object) -> tuple[tuple[int, ...], torch.dtype]:
    """An input's shape and dtype: usually (B, T, input_size) float32, sometimes wrong."""
    features = input_size if valid_size(input_size) else 3
    shape = [data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)), features]
    dtype = torch.float32
    fault = data.draw(st.sampled_from([None, None, "rank", "size", "empty", "dtype"]))
    if fault == "rank":
        shape = data.draw(st.sampled_from([shape[:2], [*shape, 2]]))
    elif fault == "size":
        shape[2] += data.draw(st.sampled_from([-1, 1]))
    elif fault == "empty":
        shape[data.draw(st.integers(0, 1))] = 0
    elif fault == "dtype":
        dtype = data.draw(st.sampled_from([torch.float64, torch.int64]))
    return tuple(shape), dtype


def make_input(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape).to(dtype)
    return torch.ones(shape, dtype=dtype)


def valid_sequence(shape: tuple[int, ...], dtype: torch.dtype, input_size: int) -> bool:
    return len(shape) == 3 and shape[2] == input_size and min(shape) > 0 and dtype == torch.float32


def batch_time(shape: tuple[int, ...], batch_first: bool) -> tuple[int, int]:
    return (shape[0], shape[1]) if batch_first else (shape[1], shape[0])


def seq_shape(batch: int, steps: int, features: int, batch_first: bool) -> tuple[int, ...]:
    return (batch, steps, features) if batch_first else (steps, batch, features)


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Iterator[Counter]:
    """Counts the cases (``report["cases"]``) and the calls by outcome, and prints them."""
    tried: Counter = Counter()
    yield tried
    with capsys.disabled():
        cases = tried.pop("cases")
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(tried.items()))
        print(f"\n{cases} random cases tried, {sum(tried.values())} calls: {counts}")


def settle(report: Counter, result: object, valid: bool) -> bool:
    """Check that ``result`` is an error exactly when the call was not ``valid``; count it.
    Returns whether the call succeeded."""
    assert isinstance(result, Exception) != valid, result
    report["returned outputs" if valid else "raised a clear error"] += 1
    return valid


def test_relational_memory_shapes_or_clear_errors(report):
    @SETTINGS
    @given(
        args=sizes_with_one_bad("input_size", "mem_slots", "head_size", "num_heads", "num_blocks"),
        gate_style=st.sampled_from(["unit", "memory", None, "bogus"]),
        batch_first=st.booleans(),
        wrong_memory=st.booleans(),
        data=st.data(),
    )
    def check(args, gate_style, batch_first, wrong_memory, data):
        report["cases"] += 1
        valid = all(map(valid_size, args.values())) and gate_style != "bogus"
        rmc = outcome(
            lambda: RelationalMemory(**args, gate_style=gate_style, batch_first=batch_first)
        )
        if not settle(report, rmc, valid):
            return
        x = sequence(data, args["input_size"])
        valid = valid_sequence(*x, args["input_size"])
        batch, steps = batch_time(x[0], batch_first) if valid else (1, 1)
        state_shape = (batch, args["mem_slots"], args["num_heads"] * args["head_size"])
        memory = None
        if valid and wrong_memory:
            memory = torch.randn(batch, args["mem_slots"] + 1, state_shape[2])
        result = outcome(lambda: rmc(make_input(*x), memory))
        if not settle(report, result, valid and not wrong_memory):
            return
        output, state = result
        size = args["mem_slots"] * state_shape[2]
        assert output.shape == seq_shape(batch, steps, size, batch_first)
        assert state.shape == state_shape

    check()


def test_relational_rnn_shapes_or_clear_errors(report):
    @SETTINGS
    @given(
        args=sizes_with_one_bad("input_size", "hidden_size", "num_slots", "slot_size", "num_heads"),
        memory=st.sampled_from(["gated_slot", "rmc", "lstm"]),
        output_size=st.one_of(st.none(), small, bad_sizes),
        batch_first=st.booleans(),
        data=st.data(),
    )
    def check(args, memory, output_size, batch_first, data):
        report["cases"] += 1
        valid = all(map(valid_size, args.values())) and memory != "lstm"
        valid = valid and (output_size is None or valid_size(output_size))
        valid = valid and args["slot_size"] % args["num_heads"] == 0
        rnn = outcome(
            lambda: RelationalRNN(
                **args, memory=memory, output_size=output_size, batch_first=batch_first
            )
        )
        if not settle(report, rnn, valid):
            return
        x = sequence(data, args["input_size"])
        result = outcome(lambda: rnn(make_input(*x)))
        if not settle(report, result, valid_sequence(*x, args["input_size"])):
            return
        output, (h, c, state) = result
        batch, steps = batch_time(x[0], batch_first)
        hidden = args["hidden_size"]
        assert output.shape == seq_shape(batch, steps, output_size or hidden, batch_first)
        assert h.shape == c.shape == (batch, hidden)
        assert state.shape == (batch, args["num_slots"], args["slot_size"])

    check()


def test_lstm_shapes_or_clear_errors(report):
    @SETTINGS
    @given(
        args=sizes_with_one_bad("input_size", "hidden_size", "num_layers"),
        output_size=st.one_of(st.none(), small, bad_sizes),
        batch_first=st.booleans(),
        data=st.data(),
    )
    def check(args, output_size, batch_first, data):
        report["cases"] += 1
        valid = all(map(valid_size, args.values()))
        valid = valid and (output_size is None or valid_size(output_size))
        lstm = outcome(
            lambda: LSTMBaseline(**args, output_size=output_size, batch_first=batch_first)
        )
        if not settle(report, lstm, valid):
            return
        x = sequence(data, args["input_size"])
        result = outcome(lambda: lstm(make_input(*x)))
        if not settle(report, result, valid_sequence(*x, args["input_size"])):
            return
        output, (h, c) = result
        batch, steps = batch_time(x[0], batch_first)
        hidden = args["hidden_size"]
        assert output.shape == seq_shape(batch, steps, output_size or hidden, batch_first)
        assert h.shape == c.shape == (args["num_layers"], batch, hidden)

    check()


def test_gated_slot_memory_step_shapes_or_clear_errors(report):
    @SETTINGS
    @given(
        args=sizes_with_one_bad("input_size", "num_slots", "slot_size", "num_heads"),
        data=st.data(),
    )
    def check(args, data):
        report["cases"] += 1
        valid = all(map(valid_size, args.values()))
        valid = valid and args["slot_size"] % args["num_heads"] == 0
        cell = outcome(lambda: GatedSlotMemoryCell(**args))
        if not settle(report, cell, valid):
            return
        shape, dtype = sequence(data, args["input_size"])
        step_shape = (shape[0], *shape[2:])  # a one-step input (B, I), sometimes wrong
        result = outcome(lambda: cell(make_input(step_shape, dtype)))
        valid = len(step_shape) == 2 and step_shape[1] == args["input_size"]
        valid = valid and step_shape[0] > 0 and dtype == torch.float32
        if not settle(report, result, valid):
            return
        output, memory = result
        assert output.shape == (shape[0], args["num_slots"] * args["slot_size"])
        assert memory.shape == (shape[0], args["num_slots"], args["slot_size"])

    check()


class Parsed(Exception):
    """Raised instead of training: the command line gave a valid run config."""


FLAG_VALUES = {
    "--task": st.sampled_from(["nth-farthest", "sorting", "pair-matching", "chess", ""]),
    "--model": st.sampled_from(["lstm", "rmc", "relational-rnn", "gru"]),
    "--hidden-size": st.integers(-3, 300).map(str),
    "--mem-slots": st.integers(-3, 9).map(str),
    "--slot-size": st.integers(-3, 70).map(str),
    "--num-heads": st.integers(-3, 9).map(str),
    "--gate-style": st.sampled_from(["unit", "memory", "none", "both"]),
    "--head-hidden": st.sampled_from(["", "8", "8,8", "8,x", "-1"]),
    "--lr": st.sampled_from(["1e-3", "0", "-1", "nan", "abc"]),
    "--batch-size": st.integers(-3, 300).map(str),
    "--steps": st.sampled_from(["1", "0", "-5", "1.5", "10"]),
    "--time-budget": st.sampled_from(["1", "0", "-1", "x"]),
    "--seed": st.integers(-2, 5).map(str),
    "--eval-every": st.integers(-1, 5).map(str),
    "--keep-checkpoints": st.integers(-1, 3).map(str),
    "--task-option": st.sampled_from(["num_vectors=4", "dims=0", "bogus=1", "noequals", "=3"]),
    "--threads": st.integers(-1, 2).map(str),
    "--bogus-flag": st.just("1"),
}


def test_cli_parsing_accepts_or_exits_2_with_one_line(report, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise Parsed

    monkeypatch.setattr(Run, "create", refuse)
    monkeypatch.setattr(Run, "resume", refuse)
    flag_values = st.sampled_from(sorted(FLAG_VALUES)).flatmap(
        lambda flag: FLAG_VALUES[flag].map(lambda value: [flag, value])
    )

    @settings(SETTINGS, max_examples=2 * CASES)
    @given(st.lists(flag_values, max_size=6))
    def check(pairs):
        report["cases"] += 1
        argv = ["train", "--out", str(tmp_path / "run")] + [item for pair in pairs for item in pair]
        stderr = io.StringIO()
        threads = torch.get_num_threads()
        try:
            with contextlib.redirect_stderr(stderr), time_limit(SECONDS_PER_CASE):
                status = main(argv)
        except Parsed:
            report["parsed"] += 1
            return
        except SystemExit as exit:
            status = exit.code
        finally:
            torch.set_num_threads(threads)
        lines = stderr.getvalue().splitlines()
        assert status == 2, (argv, status, lines)
        assert len(lines) == 1 and lines[0].startswith("relational-rnn"), (argv, lines)
        assert "error:" in lines[0]
        report["exited 2 with one line"] += 1

    check()
