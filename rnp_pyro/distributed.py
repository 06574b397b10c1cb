"""Data-parallel training on PyTorch's own engine: torch.distributed, launched by torchrun.

A process learns its place from the variables torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Every process
holds the whole dataset and the same model; DistributedDataParallel averages the
gradients, so N processes with ``batch_size`` B train as one process with batch N*B
on the same images (see :func:`epoch_batches`). Only rank 0 writes the run folder.
``rnp-pyro fit --devices N`` starts the N processes itself through torchrun's
launcher; ``torchrun --nproc-per-node N --no-python rnp-pyro fit ...`` does the same
and also spans machines.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from .errors import ConfigError, DataParallelError


@dataclass(frozen=True)
class Place:
    """Where this process stands: its rank among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and figures, and evaluates."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when there is one, else the CPU; asking for a missing CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"unknown device {str(device)!r}; use auto, cpu or cuda") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here; "
                          "use --device cpu (or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {str(device)!r}; use auto, cpu or cuda")
    return device


def launched_world_size() -> int:
    """How many processes torchrun started this one among (1 when it did not)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: torch.device) -> tuple[Place, torch.device]:
    """This process's place, joining the process group when torchrun started several;
    and its device (one GPU per process on CUDA). A single process gets Place()."""
    world_size = launched_world_size()
    if world_size == 1:
        return Place(), device
    place = Place(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", place.local_rank)
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:  # share the cores between local processes
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return place, device


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int, place: Place):
    """This rank's index batches of one epoch, from torch's DistributedSampler.

    The epoch's order is ``randperm(count)`` seeded by (seed, epoch) alone; rank r
    takes every world_size-th index from r, padded to whole rounds, so step k's
    batches of all ranks together are the k-th batch of world_size * batch_size in
    that order: what one process with the larger batch would take.
    """
    sampler = DistributedSampler(range(count), num_replicas=place.world_size, rank=place.rank,
                                 shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler)).split(batch_size)


def mean_over_ranks(values: torch.Tensor, place: Place) -> torch.Tensor:
    """The elementwise mean of a tensor over all ranks (itself in one process)."""
    if place.parallel:
        values = values.clone()
        dist.all_reduce(values)
        values /= place.world_size
    return values


def any_rank(flag: torch.Tensor, place: Place) -> torch.Tensor:
    """True (as 1.0) on every rank where any rank's flag is."""
    if place.parallel:
        flag = flag.clone()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag


def barrier(place: Place) -> None:
    if place.parallel:
        dist.barrier()


def check_in_step(parameters, place: Place) -> None:
    """Raise unless every rank holds the same weights, as averaged gradients keep them."""
    if not place.parallel:
        return
    fingerprint = sum(p.detach().double().square().sum().item() for p in parameters)
    prints = gather(fingerprint, place)
    if max(prints) - min(prints) > 1e-9 * max(abs(max(prints)), 1.0):
        raise DataParallelError(f"the processes' weights have drifted apart (sums of squares "
                                f"{prints}); their gradients were not averaged")


def gather(value, place: Place) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    if not place.parallel:
        return [value]
    values = [None] * place.world_size
    dist.all_gather_object(values, value)
    return values


def launch(processes: int, function, *args) -> None:
    """Run ``function(*args)`` in ``processes`` local processes through torchrun's
    launcher, on a free port. The first process to fail raises DataParallelError here
    with its error's message (``function`` should be wrapped in torch's ``record``)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes,
                          run_id=uuid.uuid4().hex, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(config, function)(*args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", "")
        raise DataParallelError(f"process {rank} of {processes} failed: {message}") from None
