"""What a run tells its user: log lines, TensorBoard scalars and a progress bar (rank 0 only).

Every line also goes, with a UTC timestamp, to ``RUN/training.log``, appended across resumes, so
what a batch job printed survives its scheduler's log rotation.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import Any

import torch

from facescale.models.run_layout import TENSORBOARD_DIR, TRAINING_LOG


def timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


class TrainMonitor:
    """Every ``log_every`` steps: one line with samples/s, loss, LR, epoch, step and time left.

    Throughput is measured over the steps since the last line, so it reflects the current
    speed rather than an average polluted by start-up and evaluation pauses.
    """

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        global_batch: int,
        log_every: int,
        enabled: bool,
        tensorboard: bool,
        progress: bool,
    ) -> None:
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.log_every = max(1, log_every)
        self.enabled = enabled
        self._window_start = time.perf_counter()
        self._window_steps = 0
        self._loss_sum: torch.Tensor | float = 0.0
        self._loss_count = 0
        self.last_samples_per_s = 0.0
        self.writer = None
        self.bar = None
        self.log_file = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = open(run_dir / TRAINING_LOG, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # Events from steps after the checkpoint are redone; the checkpoint's own step is kept
            # (purge_step drops every event at or after it).
            self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=start_step + 1)
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def step(self, step: int, epoch: int, loss: torch.Tensor, lr: float) -> None:
        """Called after every optimisation step (``step`` counts completed steps).

        ``loss`` stays on its device and is summed there: reading it would wait for the device
        every step, so it is read only when a line is logged.
        """
        if not self.enabled:
            return
        self._window_steps += 1
        self._loss_sum = self._loss_sum + loss.detach().float()
        self._loss_count += 1
        if self.bar is not None:
            self.bar.update(1)
        if step % self.log_every and step != self.total_steps:
            return
        elapsed = time.perf_counter() - self._window_start
        samples_per_s = self._window_steps * self.global_batch / max(elapsed, 1e-9)
        mean_loss = float(self._loss_sum) / max(1, self._loss_count)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.4g}")
        remaining = (self.total_steps - step) * self.global_batch / max(samples_per_s, 1e-9)
        self.last_samples_per_s = samples_per_s
        self.write(
            f"step {step}/{self.total_steps} | epoch {epoch} | loss {mean_loss:.4f} | lr {lr:.6f} | "
            f"{samples_per_s:.1f} samples/s | remaining {format_duration(remaining)}"
        )
        self.scalars(step, {"train/loss": mean_loss, "train/lr": lr, "train/samples_per_s": samples_per_s})
        self._window_start = time.perf_counter()
        self._window_steps = 0
        self._loss_sum = 0.0
        self._loss_count = 0

    def pause(self) -> None:
        """Exclude what follows (evaluation, checkpointing) from the throughput window."""
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        self._window_start += time.perf_counter() - getattr(self, "_paused_at", time.perf_counter())

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, float(value), step)

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, flush=True)
        if self.log_file is not None:
            self.log_file.write(f"{timestamp()} {line}\n")
            self.log_file.flush()

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
