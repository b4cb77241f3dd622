"""Many processes with torch.distributed (launched by torchrun), for training and evaluation.

`torchrun --nproc_per_node N -m energybench train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; each
process trains 1/N of every global batch (the config's batch size stays the global one), gradients
are averaged by DistributedDataParallel, each rank keeps its own replay buffer, and rank 0 writes
checkpoints and logs. `eval` and `sample` split their images and samples over the ranks
(energybench.evaluation.runner). Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from energybench.core.errors import UserError
from energybench.core.runtime import resolve_device
from energybench.core.torchrun import launched_by_torchrun


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device_name: str) -> tuple[World, torch.device]:
    """The process group from torchrun's environment (or a single process) and this rank's device."""
    if not launched_by_torchrun():
        return World(), resolve_device(device_name)
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    world = World(dist.get_rank(), dist.get_world_size(), local_rank)
    return world, torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")


def check_batch(batch_size: int, world: World) -> int:
    """The per-rank batch size; the global batch must split evenly."""
    if batch_size % world.size:
        raise UserError(f"optim.batch_size {batch_size} does not split over {world.size} processes")
    return batch_size // world.size


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    if not world.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank if `flag` is True on any (keeps roll-backs in step)."""
    return bool(all_sum([float(flag)], world, device)[0] > 0)


def gather_to_main(obj, world: World) -> list | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0; None elsewhere."""
    if not world.enabled:
        return [obj]
    out = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


@contextmanager
def joined(device_name: str) -> Iterator[tuple[World, torch.device]]:
    """`with joined(device) as (world, device):` the work of one command under torchrun (or alone).

    On success every rank meets at a barrier before the group is destroyed: a rank that tears
    gloo down while a peer still talks to it can abort in gloo's worker threads (SIGABRT). On an
    error the group is destroyed at once, so a peer blocked in a collective fails instead of
    waiting for a barrier that pairs with nothing. (The process then ends without the
    interpreter's teardown: energybench.cli.main.process_main says why.)"""
    world, device = init_world(device_name)
    try:
        yield world, device
    except BaseException:
        _leave(world, together=False)
        raise
    _leave(world, together=True)


def _leave(world: World, together: bool) -> None:
    if not (world.enabled and dist.is_initialized()):
        return
    if together:
        try:
            dist.barrier()
        except RuntimeError:  # a peer already left or died: nothing to wait for
            pass
    dist.destroy_process_group()


def agree(world: World, error: str | None = None) -> None:
    """Every rank reports how its part went; if any failed, every rank raises the same one-line
    UserError (so all of them stop, and nothing waits for a rank that gave up). A rank that
    died makes the collective fail: that too becomes one line on the survivors."""
    if not world.enabled:
        if error is not None:
            raise UserError(error)
        return
    statuses = [None] * world.size
    try:
        dist.all_gather_object(statuses, error)
    except RuntimeError as exc:  # gloo/NCCL: a peer closed its connection or timed out
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"another process of this torchrun job stopped ({first}); run the same "
                        f"command again to resume: finished shards are kept") from None
    failed = [(rank, e) for rank, e in enumerate(statuses) if e is not None]
    if failed:
        rank, e = failed[0]
        raise UserError(e if rank == world.rank or len(set(x for _, x in failed)) == 1 else f"rank {rank}: {e}")
