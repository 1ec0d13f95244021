"""`facescale train` under torchrun (gloo, CPU): the loss falls, and a 2-process run resumed on
3 processes reshards the head exactly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facescale.config import load_config
from facescale.distributed.context import DistContext
from facescale.heads.partial_fc import build_head
from rec_factory import write_color_rec

STEPS = 24


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "facescale.cli.main", "train", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def flags(keys: list[str]) -> list[str]:
    return [token for key in keys for token in ("-o", key)]


def head_state(cfg_path: Path, step_dir: Path) -> dict[str, torch.Tensor]:
    cfg = load_config(cfg_path)
    head = build_head(cfg, 16, DistContext.single("cpu"))
    head.load_shards(step_dir)
    return {k: v.clone() for k, v in head.state_tensors().items()}


@pytest.mark.slow
def test_two_processes_learn_then_resume_on_three(tmp_path):
    rec = write_color_rec(tmp_path / "rec", num_classes=16, per_class=12)  # 192 images
    run = tmp_path / "run"
    keys = [
        f"data.root={rec}", "data.batch_size=24", "data.num_workers=0",
        "model.name=mbf_tiny", "model.embedding_size=32",
        "head.sample_rate=0.5", "head.margin.s=16.0",
        "optim.lr=0.05", f"train.max_steps={STEPS}", "train.log_every=4", "train.save_every=12",
        "train.tensorboard=false", "train.progress=false", f"train.output={run}",
    ]  # fmt: skip
    first = torchrun(2, *flags(keys))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 process(es)" in first.stdout
    losses = [float(x) for x in re.findall(r"\| loss ([0-9.]+) \|", first.stdout)]
    assert len(losses) == STEPS // 4
    assert losses[-1] < 0.8 * losses[0], losses
    shards = sorted(p.name for p in (run / "checkpoints" / f"step-{STEPS:08d}").glob("head-rank*"))
    assert shards == ["head-rank00000-of-00002.pt", "head-rank00001-of-00002.pt"]

    saved = tmp_path / "saved_step"
    shutil.copytree(run / "checkpoints" / f"step-{STEPS:08d}", saved)
    # Same global batch on 3 processes (3 x 16 = 2 x 24), so the schedule is unchanged.
    second = torchrun(3, "--resume", str(run), "-o", "data.batch_size=16")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming at step {STEPS}" in second.stdout
    # Re-saved beside the old step directory (``latest`` never dangles): follow ``latest``.
    resharded = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert resharded.name.startswith(f"step-{STEPS:08d}")
    assert len(list(resharded.glob("head-rank*-of-00003.pt"))) == 3

    before = head_state(run / "config.yaml", saved)
    after = head_state(run / "config.yaml", resharded)
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
