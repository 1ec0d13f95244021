"""The run directory's layout: every name facescale gives a file or folder inside ``RUN/``.

Training writes it (``facescale.train``); loading a model, evaluation, export and deployment
read it. The names are defined here only, so writer and readers cannot drift apart::

    RUN/
        config.yaml                 the resolved config (``facescale train --resume RUN`` reads it)
        backbone.json               the backbone's spec (name, options, embedding size)
        backbone.pth                the final backbone weights: a plain, insightface-style state_dict
        training.log                every log line, UTC-stamped, appended across resumes
        tensorboard/                TensorBoard events (``train.tensorboard``)
        checkpoints/
            latest                  the name of the newest complete step directory
            step-00001000/
                trainer.pt          backbone, its optimizer, scheduler, scaler, step, epoch, config
                rng-rank00000.pt    each process's RNG states
                head-rank00000-of-00002.pt  class-centre shards (``facescale.heads.shard_io``)
"""

from __future__ import annotations

from pathlib import Path

from facescale.errors import FacescaleError

CONFIG_FILE = "config.yaml"
SPEC_FILE = "backbone.json"
WEIGHTS_FILE = "backbone.pth"
TRAINING_LOG = "training.log"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"  # inside CHECKPOINTS_DIR: the name of the newest complete step directory
TRAINER_FILE = "trainer.pt"
STEP_DIR_PREFIX = "step-"


def step_dir_name(step: int) -> str:
    """``step-00001000``: the checkpoint directory of ``step`` (zero-padded so names sort by step)."""
    return f"{STEP_DIR_PREFIX}{step:08d}"


def rng_file_name(rank: int) -> str:
    """``rng-rank00000.pt``: the RNG states of process ``rank`` inside a step directory."""
    return f"rng-rank{rank:05d}.pt"


def latest_step_dir(run: str | Path) -> Path | None:
    """The newest complete checkpoint of run directory ``run``, or None when it has none."""
    pointer = Path(run) / CHECKPOINTS_DIR / LATEST_FILE
    if not pointer.exists():
        return None
    step_dir = pointer.parent / pointer.read_text().strip()
    if not (step_dir / TRAINER_FILE).exists():
        raise FacescaleError(f"{pointer} names {step_dir.name}, which has no {TRAINER_FILE}")
    return step_dir
