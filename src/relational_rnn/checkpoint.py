"""Checkpoints that are safe to load and hard to lose.

A checkpoint of step s is two files in ``RUN_DIR/checkpoints/``:

    step-00000s.safetensors   every tensor: weights, optimizer state, RNG states
    step-00000s.json          everything else, and the SHA-256 of the tensor file

Tensors are stored with safetensors (no pickle, so a checkpoint cannot run code).
Each file is written to a temporary name, flushed, fsynced and renamed into place;
the JSON is written last, so a checkpoint exists only once both files are complete,
and older checkpoints are deleted only after that. A checkpoint holding NaN or Inf is
never written. Loading checks the checksum; ``load_latest`` falls back to the newest
good one; ``remove_incomplete`` clears what a killed writer left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

CHECKPOINTS = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or altered; the message names the file."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsynced, then renamed."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def checkpoint_paths(run_dir: Path, step: int) -> tuple[Path, Path]:
    """The tensor file and the JSON file of the checkpoint of ``step``."""
    stem = Path(run_dir) / CHECKPOINTS / f"step-{step:09d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_checkpoint(
    run_dir: Path, step: int, tensors: dict[str, Tensor], meta: dict[str, Any], keep: int
) -> Path:
    """Save a checkpoint of ``step``, then delete all but the newest ``keep``.

    ``tensors`` (contiguous CPU tensors) go to safetensors and ``meta`` (JSON
    values) to the JSON file. Returns the JSON file's path.
    """
    nonfinite = [
        name for name, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()
    ]
    if nonfinite:
        raise CheckpointError(
            f"refusing to write the checkpoint of step {step} in {Path(run_dir) / CHECKPOINTS}: "
            f"{', '.join(nonfinite)} hold NaN or Inf"
        )
    tensor_path, meta_path = checkpoint_paths(run_dir, step)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    data = save_tensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})
    write_atomic(tensor_path, data)
    record = {"step": step, "sha256": hashlib.sha256(data).hexdigest(), **meta}
    write_atomic(meta_path, json.dumps(record, indent=1).encode())
    for old in list_checkpoints(run_dir)[:-keep]:
        # The JSON goes first: a kill in between leaves a JSON-less tensor file, which
        # ``remove_incomplete`` recognises as unfinished.
        for path in reversed(checkpoint_paths(run_dir, old)):
            path.unlink(missing_ok=True)
    return meta_path


def list_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the complete-looking checkpoints (both files present), oldest first."""
    directory = Path(run_dir) / CHECKPOINTS
    steps = []
    for meta_path in directory.glob("step-*.json"):
        try:
            step = int(meta_path.stem.removeprefix("step-"))
        except ValueError:
            continue
        if meta_path.with_suffix(".safetensors").exists():
            steps.append(step)
    return sorted(steps)


def load_checkpoint(run_dir: Path, step: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the metadata of the checkpoint of ``step``, checksum checked."""
    tensor_path, meta_path = checkpoint_paths(run_dir, step)
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {meta_path} is unreadable: {error}") from None
    try:
        data = tensor_path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"checkpoint {tensor_path} is unreadable: {error}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"checkpoint {tensor_path} is corrupt: its SHA-256 does not match {meta_path.name}"
        )
    try:
        return load_tensors(data), meta
    except Exception as error:  # safetensors raises its own SafetensorError
        raise CheckpointError(
            f"checkpoint {tensor_path} is not a safetensors file: {error}"
        ) from None


def load_latest(run_dir: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The newest checkpoint that loads; a corrupt one is skipped with a warning."""
    steps = list_checkpoints(run_dir)
    for step in reversed(steps):
        try:
            return load_checkpoint(run_dir, step)
        except CheckpointError as error:
            warnings.warn(f"{error}; trying an older checkpoint", stacklevel=2)
    raise CheckpointError(f"{Path(run_dir) / CHECKPOINTS} holds no loadable checkpoint")


def remove_incomplete(run_dir: Path) -> list[Path]:
    """Delete the temporary files and the half of a checkpoint whose other file is missing,
    left by a writer killed in the middle of ``save_checkpoint``; returns their paths."""
    directory = Path(run_dir) / CHECKPOINTS
    complete = set(list_checkpoints(run_dir))
    removed = list(directory.glob(".*.tmp"))
    for path in [*directory.glob("step-*.safetensors"), *directory.glob("step-*.json")]:
        step = path.stem.removeprefix("step-")
        if not step.isdigit() or int(step) not in complete:
            removed.append(path)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
