"""Preemption: SIGTERM (what SLURM and Kubernetes send before killing a job) and SIGINT (Ctrl-C)
finish the current step, checkpoint on every rank and stop with exit code 128 + signal.

The CLI installs the handlers (library code never touches process-wide state on its own); the
handler only records the signal. The training loop looks at the record between steps, so a step
is never cut in half, and all ranks agree on stopping at the same step (a rank stopping alone
would leave the others waiting in their next collective).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import torch

from facescale.errors import FacescaleError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """The first stop signal received, or 0; set from a signal handler, read by the loop."""

    def __init__(self) -> None:
        self.signum = 0

    def request(self, signum: int) -> None:
        if not self.signum:
            self.signum = int(signum)

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def install(self, signals: tuple[int, ...] = STOP_SIGNALS) -> Callable[[], None]:
        """Route ``signals`` to ``request``; returns a function that puts the old handlers back.

        A second signal of the same kind while the checkpoint is being written is ignored: the
        user already asked and the save is what keeps their work.
        """
        previous = {s: signal.getsignal(s) for s in signals}

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request(signum)

        for s in signals:
            signal.signal(s, handler)

        def restore() -> None:
            for s, old in previous.items():
                signal.signal(s, old)

        return restore


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Preempted(FacescaleError):
    """Training stopped on a signal after checkpointing; exit code 128 + signal (143 / 130)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class _Collectives(Protocol):
    world_size: int
    device: torch.device

    def all_reduce_max(self, tensor: torch.Tensor) -> torch.Tensor: ...


class SignalVote:
    """Called once per step on every rank: the stop signal all ranks agree on (0: go on).

    One process reads its own flag. Several must stop after the same step (the signal reaches
    them at slightly different moments), so each step the ranks all-reduce MAX one int. Reading
    that result at once would make the host wait for the device every step; instead each call
    starts this step's exchange (non-blocking on CUDA) and returns the previous step's result,
    whose copy to the host finished long ago. Every rank therefore stops one step after the
    step in which some rank first saw the signal, all at the same step.
    """

    def __init__(self, stop: StopRequest | None, ctx: _Collectives) -> None:
        self.stop = stop
        self.ctx = ctx
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None

    def __call__(self) -> int:
        if self.stop is None:
            return 0
        if self.ctx.world_size == 1:
            return self.stop.signum
        agreed = 0
        if self._pending is not None:
            host, event = self._pending
            if event is not None:
                event.synchronize()  # the previous step's tiny copy: long done by now
            agreed = int(host[0])
        # torch.full is a kernel, not a host-to-device copy (which would wait for the stream).
        flag = torch.full((1,), self.stop.signum, dtype=torch.int32, device=self.ctx.device)
        self.ctx.all_reduce_max(flag)
        event = None
        if flag.device.type == "cuda":
            host = flag.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = flag
        self._pending = (host, event)
        return agreed
