"""Checks made before any training starts, so that a run cannot fail hours in.

Each raises ``ConfigError`` (one line, exit status 2 at the command line) naming the
directory and the fix: an output directory that cannot be written, too little free
disk for the checkpoints, or a run directory that belongs to another task or model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from .config import ConfigError, TrainConfig

#: room for metrics.jsonl, summary.json and a checkpoint's JSON, in bytes
SLACK_BYTES = 1 << 20


def check_writable(directory: Path) -> None:
    """Create ``directory`` (with its parents) and prove that a file can be written in it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"cannot write to the run directory {directory}: {reason}; choose another --out"
        ) from None


def checkpoint_bytes(model: nn.Module) -> int:
    """An upper estimate of one checkpoint's size: the weights, Adam's two moment
    estimates of each, the buffers and the RNG states."""
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return 3 * parameters + buffers + (64 << 10)


def check_disk_space(directory: Path, checkpoints: int, size: int) -> None:
    """Raise unless ``directory``'s file system has room for ``checkpoints`` more
    checkpoints of ``size`` bytes."""
    needed = checkpoints * size + SLACK_BYTES
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ConfigError(
            f"not enough disk space in {directory}: {checkpoints} checkpoint(s) of "
            f"{size / 2**20:.1f} MiB need {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB "
            "are free; free some space, lower --keep-checkpoints or choose another --out"
        )


def check_no_other_run(directory: Path, leftovers: tuple[str, ...]) -> None:
    """Raise if ``directory`` holds any of ``leftovers`` (files of an earlier run)."""
    found = [name for name in leftovers if (Path(directory) / name).exists()]
    if found:
        raise ConfigError(
            f"{directory} holds {', '.join(found)} of another run but no run config; "
            "choose another --out or delete them"
        )


def run_identity(config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into a run: its task and model."""
    return {"task": asdict(config.task), "model": asdict(config.model)}


def check_same_run(config: TrainConfig, meta: dict[str, Any], where: os.PathLike) -> None:
    """Raise if the checkpoint ``meta`` (from ``where``) was written by another task or model."""
    identity = meta.get("run")
    if identity is not None and identity != run_identity(config):
        theirs = f"{identity['task']['name']} with model {identity['model']['kind']}"
        raise ConfigError(
            f"checkpoint {where} belongs to another run ({theirs}), not to this run's "
            f"{config.task.name} with model {config.model.kind}; it cannot be resumed here"
        )
