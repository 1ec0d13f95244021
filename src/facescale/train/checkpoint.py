"""Checkpoints: everything needed to continue a run, written so a crash never leaves a broken one.

Layout of ``RUN/checkpoints``::

    latest                      name of the newest complete step directory
    step-00001000/
        trainer.pt              backbone, its optimizer, scheduler, scaler, step, epoch, config
        rng-rank00000.pt        each process's RNG states
        head-rank00000-of-00002.pt  class-centre shards (written by the head itself)

A step directory is assembled under a hidden temporary name by every rank, then renamed by
rank 0 once all ranks have finished; ``latest`` is replaced atomically afterwards. A run
killed at any point therefore resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch

from facescale.atomic import fsync_path, torch_save_atomic, write_text_atomic
from facescale.errors import FacescaleError
from facescale.models.loading import (
    CHECKPOINTS_DIR,
    LATEST_FILE,
    SPEC_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    latest_step_dir,
)


class ShardedHead(Protocol):
    def save_shard(self, directory: str | Path) -> Path: ...
    def load_shards(self, directory: str | Path) -> None: ...


class Barrier(Protocol):
    rank: int
    world_size: int

    def barrier(self) -> None: ...


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes and finds checkpoints under ``run_dir/checkpoints``; keeps the newest ``keep``."""

    def __init__(self, run_dir: str | Path, ctx: Barrier, keep: int = 2) -> None:
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / CHECKPOINTS_DIR
        self.ctx = ctx
        self.keep = max(1, keep)

    def latest(self) -> Path | None:
        """The newest complete step directory, or None when the run has none."""
        return latest_step_dir(self.run_dir)

    def save(self, step: int, trainer_state: dict[str, Any], head: ShardedHead) -> Path:
        """Collective: every rank calls it with its own head shard; returns the step directory."""
        final = self.root / step_dir_name(step)
        tmp = self.root / f".{final.name}.tmp"
        if self.ctx.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # debris of a run killed mid-save
            tmp.mkdir()
        self.ctx.barrier()
        head.save_shard(tmp)
        torch_save_atomic(rng_state(), tmp / f"rng-rank{self.ctx.rank:05d}.pt")
        if self.ctx.rank == 0:
            torch_save_atomic(trainer_state, tmp / TRAINER_FILE)
        self.ctx.barrier()
        if self.ctx.rank == 0:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            fsync_path(self.root)
            write_text_atomic(self.root / LATEST_FILE, final.name)
            self._prune(keep_name=final.name)
        self.ctx.barrier()
        return final

    def _prune(self, keep_name: str) -> None:
        steps = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for old in steps[: -self.keep]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, step_dir: Path, head: ShardedHead) -> dict[str, Any]:
        """Restore the head shards and this rank's RNG; return the trainer state for the caller."""
        state = load_trainer_state(step_dir / TRAINER_FILE)
        head.load_shards(step_dir)
        rng_file = step_dir / f"rng-rank{self.ctx.rank:05d}.pt"
        if rng_file.exists():  # absent when resuming on more processes than were saved
            set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
        return state


def load_trainer_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FacescaleError(f"checkpoint file {path} does not exist") from None
    except Exception as e:  # a truncated or foreign file; name it rather than dump a traceback
        raise FacescaleError(f"cannot read checkpoint {path}: {e}") from None


def export_backbone(run_dir: str | Path, state_dict: dict[str, torch.Tensor], spec: dict[str, Any]) -> Path:
    """``RUN/backbone.pth`` (plain fp32 state_dict, as insightface ships) + ``RUN/backbone.json``."""
    run_dir = Path(run_dir)
    weights = {k: (v.float() if v.is_floating_point() else v).cpu() for k, v in state_dict.items()}
    torch_save_atomic(weights, run_dir / WEIGHTS_FILE)
    write_text_atomic(run_dir / SPEC_FILE, json.dumps(spec, indent=2) + "\n")
    return run_dir / WEIGHTS_FILE
