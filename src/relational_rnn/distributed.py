"""Data-parallel training with ``torch.distributed``: the ranks of a run and the few
collectives the training loop needs.

``torchrun --nproc_per_node=N -m relational_rnn train ...`` starts N processes and
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
``launched()`` reads them and joins the process group (nccl when CUDA is available,
else gloo). Without them it describes a single process and starts nothing, so the
same code path trains with one process or many.

Every rank builds the same model from the run's seed (DDP also broadcasts rank 0's
weights), draws its own shard of each batch from its own random stream, and averages
its gradients with the others; only rank 0 writes files.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from .config import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes of a run (rank 0 writes)."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def stream(self, name: str, rank: int | None = None) -> str:
        """The name of the random stream ``name`` of this rank (or of ``rank``); the name
        itself for a single process."""
        return f"{name}.rank{self.rank if rank is None else rank}" if self.distributed else name

    def shard(self, tensor: Tensor) -> Tensor:
        """This rank's part of ``tensor`` along dim 0 (parts differ in size by at most 1)."""
        return tensor.tensor_split(self.size)[self.rank] if self.distributed else tensor

    def sum(self, values: Sequence[float]) -> list[float]:
        """The element-wise sum of ``values`` over the ranks (float64)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (the same shape and dtype on all), on CPU, by rank."""
        if not self.distributed:
            return [tensor]
        local = tensor.to(self.device)
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local)
        return [part.cpu() for part in parts]

    def broadcast(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def on_main(self, action: Callable[[], T]) -> T | None:
        """Run ``action`` on rank 0 only; if it raises, every rank raises.

        Rank 0 re-raises its own exception; the other ranks raise ``ConfigError`` with
        its message, so all processes stop with the same one-line error instead of
        waiting forever for rank 0 at the next collective.
        """
        result, error, message = None, None, [None]
        if self.is_main:
            try:
                result = action()
            except Exception as caught:  # every rank must learn that rank 0 failed
                error, message = caught, [str(caught) or type(caught).__name__]
        if self.distributed:
            dist.broadcast_object_list(message, src=0, device=self.device)
        if error is not None:
            raise error
        if message[0] is not None:
            raise ConfigError(message[0])
        return result


def backend() -> str:
    """nccl with CUDA, gloo without."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def world_from_env(env: Mapping[str, str]) -> World:
    """The ``World`` that torchrun's variables in ``env`` describe (one process without)."""
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
    except ValueError as error:
        raise ConfigError(f"bad torchrun environment variable: {error}") from None
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={size}")
    if size > 1 and torch.cuda.is_available():
        return World(rank, size, torch.device("cuda", local_rank))
    return World(rank, size)


@contextmanager
def launched(env: Mapping[str, str] | None = None) -> Iterator[World]:
    """This process's ``World``, inside the process group for the block's duration."""
    world = world_from_env(os.environ if env is None else env)
    if not world.distributed:
        yield world
        return
    cuda = world.device.type == "cuda"
    if cuda:
        torch.cuda.set_device(world.device)
    dist.init_process_group(
        backend(), rank=world.rank, world_size=world.size, device_id=world.device if cuda else None
    )
    try:
        yield world
    finally:
        # A DDP wrapper keeps the process group, and so its gloo worker threads, alive
        # until exit. A worker still releasing a collective's Python-owned tensors
        # when the interpreter finalizes must take the GIL, and that aborts the process
        # ("terminate called without an active exception"). A full collection here
        # gives the workers the time to finish while the interpreter is whole: a
        # mitigation, not a guarantee (tests/test_distributed.py aborted in about 1 run
        # of 12 without it, in none of 100 with it).
        gc.collect()
        dist.destroy_process_group()
