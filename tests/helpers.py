"""Helpers shared by the tests: random parameters, gradient checks, running the command."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.func import functional_call

from relational_rnn.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def linear_output_dtypes(model: nn.Module) -> list[torch.dtype]:
    """A list that collects the output dtype of every call of a Linear layer of ``model``."""
    dtypes: list[torch.dtype] = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda _m, _i, output: dtypes.append(output.dtype))
    return dtypes


@functools.cache
def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module (the benchmarks import their sibling timing.py)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def randomize(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Give every parameter random values (LayerNorm's ones and zeros would hide bugs)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-scale, scale)
    return module


def gradcheck_module(module: nn.Module, *inputs: torch.Tensor, pack=None) -> bool:
    """torch.autograd.gradcheck of the module's first output with respect to every
    parameter and every input, in float64. ``pack(*inputs)`` builds the call's
    arguments (e.g. a state tuple) from the loose input tensors; by default they are
    passed as they are."""
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().double().requires_grad_() for _, p in module.named_parameters()]
    inputs = [x.detach().double().requires_grad_() for x in inputs]

    def run(*tensors):
        weights = dict(zip(names, tensors[: len(names)], strict=True))
        loose = tensors[len(names) :]
        args = tuple(loose) if pack is None else pack(*loose)
        return functional_call(module, weights, args)[0]

    return torch.autograd.gradcheck(run, (*params, *inputs), eps=1e-6, atol=1e-5)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    """The ``relational-rnn`` command's exit status (from a return or a SystemExit) and
    what it wrote to stdout and stderr (only this call's output)."""
    capsys.readouterr()  # drop what came before
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, err: str, *words: str) -> None:
    """Refused as the command refuses bad input: status 2, one line on stderr that
    starts with ``relational-rnn: error:`` (``relational-rnn COMMAND: error:`` for
    argparse's own errors) and holds every one of ``words``."""
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert re.match(r"relational-rnn( \w+)?: error: ", lines[0]) and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], err
