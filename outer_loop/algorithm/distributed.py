"""The outer loop over several processes (torch.distributed): each rank runs its share of the task batch.

The pattern that works for meta-learning (DDP does not handle the higher-order graph of the inner loop):
every rank draws the same global batch from the same generator and keeps its own slice of the tasks,
computes its meta-gradient with ``backward``, and the ranks average their gradients with one
``all_reduce`` before the (identical) optimizer step. Two terms are not means over tasks and need the
other ranks during the forward pass: the firing-rate regularization of the mean rate over all tasks
(:func:`global_rates`, a differentiable all-reduce), and the loss checks (:func:`mean_scalars`). With equal
slices the result is the single-process one up to the reduction order of float sums.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: rank in [0, world)."""

    rank: int
    world: int

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes metrics, figures, checkpoints and W&B."""
        return self.rank == 0


def from_environment() -> Ranks | None:
    """The group torchrun describes in RANK / WORLD_SIZE, or a submitit job's tasks (Hydra's submitit launcher
    with ``tasks_per_node`` > 1, whose variables are exported for torch.distributed first); None for one process."""
    if "WORLD_SIZE" not in os.environ:
        _export_submitit_environment()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world)


@contextmanager
def process_group(ranks: Ranks | None, device: torch.device) -> Iterator[torch.device]:
    """Join the group (gloo on the CPU, NCCL on GPUs: one per local rank) for the block; yields this rank's
    device. A rank that dies makes torchrun stop the others; a collective waits at most 10 minutes."""
    if ranks is None:
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world,
                            timeout=timedelta(minutes=10))
    try:
        yield device
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.barrier()  # leave together: a rank tearing gloo down while rank 0 still evaluates could abort it
    dist.destroy_process_group()


def _export_submitit_environment() -> None:
    """In a submitit job of several tasks, set MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return
    try:
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        if JobEnvironment().num_tasks > 1:
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except (ImportError, RuntimeError, KeyError, ValueError):  # not a submitit job after all, or no submitit
        return


def shard(batch_size: int, ranks: Ranks | None) -> slice:
    """The tasks of this rank in a global batch of ``batch_size``; ValueError unless it divides evenly."""
    if ranks is None:
        return slice(0, batch_size)
    if batch_size % ranks.world:
        raise ValueError(f"outer.batch_size={batch_size} is not allowed with {ranks.world} processes: it must be "
                         f"a multiple of the number of processes (each runs batch_size / processes tasks)")
    size = batch_size // ranks.world
    return slice(ranks.rank * size, (ranks.rank + 1) * size)


class _SumOverRanks(torch.autograd.Function):
    """Σ over the ranks of a tensor; the gradient of each rank's input is the Σ of the ranks' output gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def global_rates(rates: torch.Tensor, ranks: Ranks | None) -> torch.Tensor:
    """The mean over every rank of a per-neuron rate (n,), differentiable (the backward all-reduces too)."""
    if ranks is None:
        return rates
    return _SumOverRanks.apply(rates) / ranks.world


def average_gradients(parameters: Iterable[torch.nn.Parameter], ranks: Ranks | None) -> None:
    """Replace every parameter's gradient by its mean over the ranks (one all-reduce of one flat buffer)."""
    if ranks is None:
        return
    with_grad = [p for p in parameters if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for p in with_grad:
        count = p.grad.numel()
        p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
        offset += count


def mean_scalars(values: Mapping[str, float], ranks: Ranks | None) -> dict[str, float]:
    """Each float averaged over the ranks (one all-reduce); the same dict for a single process."""
    if ranks is None or not values:
        return dict(values)
    keys = sorted(values)
    buffer = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(buffer)
    buffer /= ranks.world
    return dict(zip(keys, buffer.tolist(), strict=True))


def check_same_parameters(named: Iterable[tuple[str, torch.Tensor]], ranks: Ranks | None) -> None:
    """RuntimeError naming the first tensor in which this rank differs from rank 0 (bit for bit)."""
    if ranks is None:
        return
    for name, tensor in named:
        reference = tensor.detach().clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(reference, tensor.detach()):
            raise RuntimeError(f"rank {ranks.rank}: meta-parameter {name!r} differs from rank 0's; the ranks "
                               "no longer train the same model")
