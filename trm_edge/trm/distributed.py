"""Data-parallel training under torchrun: which rank this process is, its device, its CPU threads.

A process started without torchrun is rank 0 of one, outside any process group; under torchrun (also with
one process) it joins the group, and the trainer's collectives run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trm_edge.errors import ConfigError
from trm_edge.machine import usable_cores


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    joined: bool = False  # in a torch.distributed process group (launched by torchrun), even of one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when launched by torchrun (NCCL on GPUs, gloo on CPUs), also with
    one process: ``torchrun --nproc_per_node 1`` runs the same collectives as a multi-GPU run."""
    if "RANK" not in os.environ:
        return Dist()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                int(os.environ.get("LOCAL_WORLD_SIZE", str(world))), joined=True)
    if not dist.is_initialized():
        # torch._dynamo (imported by the first torch.optim optimizer) keeps references to a process group that
        # exists when it is imported: destroy_process_group then leaves gloo's threads running until interpreter
        # teardown, where they aborted a worker once in a while ("terminate called without an active
        # exception"). Imported before the group exists, it holds none and teardown frees the group.
        import torch._dynamo
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return info


def default_device(d: Dist) -> torch.device:
    return torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def set_cpu_threads(d: Dist, threads: int | None = None) -> None:
    """``threads`` per process, else share the CPU cores among the local ranks unless OMP_NUM_THREADS is set."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads={threads} must be at least 1")
        torch.set_num_threads(threads)
        return
    if "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(max(1, usable_cores() // d.local_world_size))


def barrier(d: Dist) -> None:
    """Wait for every rank (nothing to wait for outside a process group)."""
    if d.joined:
        dist.barrier()
