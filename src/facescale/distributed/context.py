"""Who am I in the job: rank, world size, device, and the few collectives the rest of facescale uses.

This module (with the rest of ``facescale.distributed``) is the only place that touches
``torch.distributed``. A single-process context needs no process group, so everything that takes a
``DistContext`` also runs in a plain ``python`` process on a CPU.

Errors that depend on one rank's input (a bad label, a different class count) must be raised on
*every* rank: a rank that raises alone leaves the others waiting forever in their next collective.
``agree`` and ``fail_together`` do that by exchanging the values first and then raising everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from facescale.errors import FacescaleError


@dataclass
class DistContext:
    """Rank, world size and device of this process.

    Build one with ``DistContext.single(device)`` (no process group) or ``context_from_environ``
    (reads the torchrun variables and joins the process group).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_process_group: bool = field(default=False, repr=False)

    @classmethod
    def single(cls, device: str | torch.device = "cpu") -> DistContext:
        """A one-process context on ``device``; every collective is the identity."""
        return cls(rank=0, world_size=1, local_rank=0, device=torch.device(device))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that logs, evaluates and writes run-level files."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        """'nccl', 'gloo' or None when there is no process group."""
        return dist.get_backend() if self.is_distributed else None

    # -- collectives -------------------------------------------------------------------------

    def barrier(self) -> None:
        if self.is_distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place; returns it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise max of ``tensor`` over ranks, in place; returns it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean of ``tensor`` over ranks, in place; returns it (e.g. for logging a loss)."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.world_size)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate equally shaped tensors from all ranks along dim 0 (no autograd).

        tensor: [n, ...] -> [world_size * n, ...], rank 0's rows first.
        """
        if not self.is_distributed:
            return tensor
        # One output buffer, no concatenation afterwards (NCCL's native all-gather).
        out = tensor.new_empty((self.world_size * tensor.shape[0], *tensor.shape[1:]))
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # torch >= 2.13 name
        gather(out, tensor.contiguous())
        return out

    def all_gather_object(self, obj: Any) -> list[Any]:
        """One picklable object from every rank, in rank order."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.is_distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def agree(self, name: str, value: Any) -> None:
        """Raise FacescaleError on every rank, naming each rank's value, unless all ranks pass equal ones."""
        values = self.all_gather_object(value)
        if any(v != values[0] for v in values[1:]):
            listed = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            raise FacescaleError(f"the processes disagree on {name} ({listed})")

    def fail_together(self, message: str | None) -> None:
        """Exchange an optional error message; if any rank has one, raise it on every rank.

        Use it around per-rank work that may fail (reading a file) before the next collective.
        """
        messages = self.all_gather_object(message)
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        if failed:
            if len(failed) == self.world_size and len({m for _, m in failed}) == 1:
                raise FacescaleError(failed[0][1])  # the same on every rank: say it once
            raise FacescaleError("; ".join(f"rank {r}: {m}" for r, m in failed))

    # -- modules -----------------------------------------------------------------------------

    def wrap_data_parallel(
        self, module: nn.Module, exact_gradients: bool = False, **ddp_kwargs: Any
    ) -> nn.Module:
        """DistributedDataParallel around ``module`` when world_size > 1, else ``module`` itself.

        By default DDP averages gradients over ranks. The Partial FC loss is the mean over the
        *global* batch and its gradient reaches each rank's embeddings exactly, so with averaging the
        backbone gets 1/world_size of the true gradient of that loss (arcface_torch's behaviour);
        scale the embedding gradient by world_size, or pass exact_gradients=True, which sums
        instead: N processes with batch b then train like one process with batch N * b.
        """
        if not self.is_distributed:
            return module
        if self.device.type == "cuda":
            ddp_kwargs.setdefault("device_ids", [self.device.index or 0])
        wrapped = nn.parallel.DistributedDataParallel(module, **ddp_kwargs)
        if exact_gradients:
            wrapped.register_comm_hook(state=None, hook=_sum_allreduce_hook)
        return wrapped

    def shutdown(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_process_group = False


# No annotations: DDP compares them with the real classes, and postponed (string) ones fail that check.
def _sum_allreduce_hook(state, bucket):  # type: ignore[no-untyped-def]
    """DDP comm hook: sum the gradient bucket over ranks (the default hook also divides by world size)."""
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()  # type: ignore[union-attr]
    return future.then(lambda f: f.value()[0])


def _int_var(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise FacescaleError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device(device_pref: str, local_rank: int, world_size: int) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> the device this process computes on.

    With several processes the GPU index comes from LOCAL_RANK, so 'cuda:N' is refused there.
    """
    pref = device_pref.strip().lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FacescaleError(
                f"device {device_pref!r} was asked for but this torch build sees no CUDA GPU"
            )
        if pref == "cuda":
            index = local_rank if world_size > 1 else torch.cuda.current_device()
        else:
            try:
                index = int(pref.split(":", 1)[1])
            except ValueError:
                raise FacescaleError(f"device {device_pref!r} is not cpu, cuda, cuda:N or auto") from None
            if world_size > 1:
                raise FacescaleError(
                    f"device {device_pref!r} names one GPU but {world_size} processes run; "
                    "use 'cuda' and each process takes the GPU given by LOCAL_RANK"
                )
        if not 0 <= index < torch.cuda.device_count():
            raise FacescaleError(
                f"GPU index {index} (device {device_pref!r}, LOCAL_RANK {local_rank}) is outside the "
                f"{torch.cuda.device_count()} visible GPUs"
            )
        return torch.device("cuda", index)
    raise FacescaleError(f"device {device_pref!r} is not cpu, cuda, cuda:N or auto")


def context_from_environ(
    environ: Mapping[str, str], device_pref: str = "auto", timeout_s: float = 1800.0
) -> DistContext:
    """Build the context from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

    With WORLD_SIZE > 1 this joins the process group: NCCL when the device is a GPU, gloo on CPU,
    after making LOCAL_RANK's GPU the current one. Without those variables it returns a
    single-process context. The caller passes ``os.environ`` (library code never reads it).
    """
    world_size = _int_var(environ, "WORLD_SIZE", 1)
    rank = _int_var(environ, "RANK", 0)
    local_rank = _int_var(environ, "LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise FacescaleError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    device = resolve_device(device_pref, local_rank, world_size)
    if world_size == 1:
        return DistContext(rank=0, world_size=1, local_rank=local_rank, device=device)

    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(k)]
    if missing:
        raise FacescaleError(
            f"WORLD_SIZE={world_size} but {' and '.join(missing)} is not set; launch with torchrun"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise FacescaleError(
                f"a process group (rank {dist.get_rank()} of {dist.get_world_size()}) already exists; "
                f"the environment says rank {rank} of {world_size}"
            )
        return DistContext(rank, world_size, local_rank, device)
    host = environ["MASTER_ADDR"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{host}:{environ['MASTER_PORT']}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )
    return DistContext(rank, world_size, local_rank, device, owns_process_group=True)
