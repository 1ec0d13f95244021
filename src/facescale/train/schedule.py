"""Polynomial learning-rate decay with per-step linear warmup (arcface_torch's PolyScheduler).

The rate is a pure function of the global step, so resuming needs only the step; the
schedule's own fields go into checkpoints to catch a resume with a different schedule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PolynomialWarmup:
    """lr(step) = base * (step + 1) / warmup during warmup, then base * (1 - progress) ** power."""

    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    power: float = 2.0

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} outside [0, total_steps={self.total_steps}]")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.base_lr * (1.0 - progress) ** self.power

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)
