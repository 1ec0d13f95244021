"""Checkpoints: everything needed to continue a run, written so a crash never leaves a broken one.

Layout of ``RUN/checkpoints``::

    latest                      name of the newest complete step directory
    step-00001000/
        trainer.pt              backbone, its optimizer, scheduler, scaler, step, epoch, config
        rng-rank00000.pt        each process's RNG states
        head-rank00000-of-00002.pt  class-centre shards (written by the head itself)

A step directory is assembled under a hidden temporary name by every rank, then renamed by
rank 0 once all ranks have finished; ``latest`` is replaced atomically afterwards. A step saved
again (``--resume`` of a finished run) goes to ``step-N-r1`` beside ``step-N`` and the old one is
removed only once ``latest`` names the new one. A run killed at any point therefore resumes from
the last complete checkpoint, and a failed save (disk full) leaves the previous one as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch

from facescale.atomic import fsync_path, torch_save_atomic, write_text_atomic
from facescale.errors import FacescaleError
from facescale.models.run_layout import (
    CHECKPOINTS_DIR,
    LATEST_FILE,
    SPEC_FILE,
    STEP_DIR_PREFIX,
    TRAINER_FILE,
    WEIGHTS_FILE,
    latest_step_dir,
    rng_file_name,
    step_dir_name,
)


class ShardedHead(Protocol):
    def save_shard(self, directory: str | Path) -> Path: ...
    def load_shards(self, directory: str | Path) -> None: ...


class Barrier(Protocol):
    rank: int
    world_size: int

    def barrier(self) -> None: ...
    def fail_together(self, message: str | None) -> None: ...


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states: the CPU generator and, on CUDA, only this process's device.

    Saving every visible GPU's state (``get_rng_state_all``) and restoring by index breaks a
    resume on a machine that shows a process fewer GPUs (one per process under most launchers).
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        index = _cuda_index(device)
        if index is not None:
            state["cuda"] = torch.cuda.get_rng_state(index)
    return state


def _cuda_index(device: torch.device | None) -> int | None:
    """The CUDA device whose generator this process uses: ``device``'s, or the current one."""
    if device is None:
        return int(torch.cuda.current_device())
    if device.type != "cuda":
        return None
    return int(device.index) if device.index is not None else int(torch.cuda.current_device())


def set_rng_state(
    state: dict[str, Any], device: torch.device | None = None, where: str = "RNG state"
) -> None:
    """Restore ``rng_state``'s output; FacescaleError naming ``where`` for a damaged or foreign state.

    A CUDA state is restored on this process's device only; one saved by an older version as a
    list of every GPU's state contributes the entry of this process's device when it has one.
    """
    if not isinstance(state, dict) or not isinstance(state.get("torch"), torch.Tensor):
        raise FacescaleError(f"{where}: not an RNG state (expected a dict with a 'torch' tensor)")
    expected = torch.get_rng_state()
    saved = state["torch"]
    if saved.dtype != expected.dtype or saved.shape != expected.shape:
        raise FacescaleError(
            f"{where}: key 'torch' holds a {saved.dtype} tensor of shape {tuple(saved.shape)}, "
            f"expected {expected.dtype} {tuple(expected.shape)} (a truncated or tampered file?)"
        )
    try:
        torch.set_rng_state(saved)
    except (RuntimeError, ValueError) as e:
        raise FacescaleError(f"{where}: key 'torch' is not a valid CPU generator state ({e})") from None
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    index = _cuda_index(device)
    if index is None:
        return
    if isinstance(cuda, (list, tuple)):  # older checkpoints: every visible GPU, by index
        if index >= len(cuda):
            return
        cuda = cuda[index]
    if not isinstance(cuda, torch.Tensor) or cuda.dtype != torch.uint8:
        raise FacescaleError(f"{where}: key 'cuda' is not a CUDA generator state")
    try:
        torch.cuda.set_rng_state(cuda, index)
    except (RuntimeError, ValueError) as e:
        raise FacescaleError(f"{where}: key 'cuda' is not a valid CUDA generator state ({e})") from None


def load_rng_file(path: Path, device: torch.device | None = None) -> None:
    """Restore this process's RNG from ``path``; one clear FacescaleError for a truncated or tampered file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or objects weights_only refuses
        raise FacescaleError(f"cannot read RNG state {path}: {type(e).__name__}: {str(e)[:200]}") from None
    set_rng_state(state, device, where=str(path))


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
        """Collective: every rank calls it with its own head shard; returns the step directory.

        ``latest`` names a complete directory at every instant: a step saved again (``--resume``
        of a finished run) is written beside the existing one under another name and ``latest``
        is switched to it before the old one is removed. A failed write (disk full) removes the
        temporary folder, leaves the previous checkpoint as it was and raises on every rank.
        """
        tmp = self.root / f".{step_dir_name(step)}.tmp"
        if self.ctx.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # debris of a run killed mid-save
            tmp.mkdir()
        self.ctx.barrier()
        final = self.root / self._free_name(step)  # every rank sees the same folder here
        error = None
        try:
            head.save_shard(tmp)
            torch_save_atomic(
                rng_state(getattr(self.ctx, "device", None)), tmp / rng_file_name(self.ctx.rank)
            )
            if self.ctx.rank == 0:
                torch_save_atomic(trainer_state, tmp / TRAINER_FILE)
        except OSError as e:
            error = self._write_error(step, tmp, e)
        self._fail_together(error, tmp)
        if self.ctx.rank == 0:
            try:
                tmp.rename(final)
                fsync_path(self.root)
                write_text_atomic(self.root / LATEST_FILE, final.name)
            except OSError as e:
                error = self._write_error(step, tmp, e)
        self._fail_together(error, tmp)
        if self.ctx.rank == 0:
            for older in self._dirs_of_step(step):
                if older != final:  # superseded by the one ``latest`` now names
                    shutil.rmtree(older, ignore_errors=True)
            self._prune(keep_name=final.name)
        self.ctx.barrier()
        return final

    def _dirs_of_step(self, step: int) -> list[Path]:
        name = step_dir_name(step)
        return [
            p
            for p in self.root.glob(f"{name}*")
            if p.is_dir() and (p.name == name or p.name.startswith(f"{name}-r"))
        ]

    def _free_name(self, step: int) -> str:
        """``step-N``, or ``step-N-r1`` ... when a directory of that step exists already."""
        name = step_dir_name(step)
        taken = {p.name for p in self._dirs_of_step(step)}
        revision = 0
        candidate = name
        while candidate in taken:
            revision += 1
            candidate = f"{name}-r{revision}"
        return candidate

    def _write_error(self, step: int, tmp: Path, e: OSError) -> str:
        previous = self.latest_name()
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        return (
            f"cannot write the checkpoint of step {step} to {e.filename or tmp}: {e.strerror or e} "
            f"(disk full?); removed {tmp.name}, {kept}"
        )

    def latest_name(self) -> str | None:
        pointer = self.root / LATEST_FILE
        try:
            return pointer.read_text().strip() or None
        except OSError:
            return None

    def _fail_together(self, error: str | None, tmp: Path) -> None:
        """Raise on every rank when any rank has an ``error``; rank 0 removes ``tmp`` first."""
        try:
            self.ctx.fail_together(error)  # one process: raises its own error, if any
        except FacescaleError:
            if self.ctx.rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _prune(self, keep_name: str) -> None:
        steps = sorted(p for p in self.root.glob(f"{STEP_DIR_PREFIX}*") if p.is_dir())
        for old in steps[: -self.keep]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, step_dir: Path, head: ShardedHead) -> dict[str, Any]:
        """Restore the head shards and this rank's RNG; return the trainer state for the caller."""
        state = load_trainer_state(step_dir / TRAINER_FILE)
        head.load_shards(step_dir)
        rng_file = step_dir / rng_file_name(self.ctx.rank)
        if rng_file.exists():  # absent when resuming on more processes than were saved
            load_rng_file(rng_file, getattr(self.ctx, "device", None))
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
