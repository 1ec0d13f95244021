"""A run killed part way and resumed reaches the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from facescale.config import load_config
from facescale.distributed.context import DistContext
from facescale.train.trainer import train

STEPS = 40


def overrides(rec: Path, out: Path) -> list[str]:
    return [
        f"data.root={rec}",
        "data.batch_size=16",
        "data.num_workers=0",
        "model.name=mbf_tiny",
        "model.embedding_size=32",
        "head.sample_rate=0.5",
        "head.margin.s=16.0",
        "optim.lr=0.05",
        "optim.warmup_epochs=1",
        f"train.max_steps={STEPS}",
        "train.save_every=2",
        "train.log_every=10",
        "train.tensorboard=false",
        "train.progress=false",
        f"train.output={out}",
    ]


def as_flags(keys: list[str]) -> list[str]:
    return [token for key in keys for token in ("-o", key)]


def test_killed_run_resumes_to_the_same_weights(color_rec, tmp_path):
    reference = train(load_config(None, overrides(color_rec, tmp_path / "ref")), DistContext.single("cpu"))
    assert reference.steps == STEPS

    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "facescale.cli.main",
        "train",
        *as_flags(overrides(color_rec, out)),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    latest = out / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.exists() and int(latest.read_text().split("-")[1]) >= 6:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    killed_at = int(latest.read_text().split("-")[1])
    assert killed_at < STEPS
    assert not (out / "backbone.pth").exists()

    resume = subprocess.run(
        [sys.executable, "-m", "facescale.cli.main", "train", "--resume", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert resume.returncode == 0, resume.stderr
    assert f"resuming at step {killed_at}" in resume.stdout

    ours = torch.load(out / "backbone.pth", weights_only=True)
    ref = torch.load(tmp_path / "ref" / "backbone.pth", weights_only=True)
    assert ours.keys() == ref.keys()
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-5, atol=1e-6, msg=key)
    head_files = sorted(p.name for p in (out / "checkpoints").glob("step-*/head-rank*"))
    assert head_files, "the head shards are checkpointed"


def test_training_into_a_run_with_checkpoints_is_refused(color_rec, tmp_path, facescale_cmd):
    out = tmp_path / "run"
    args = overrides(color_rec, out)
    args[args.index(f"train.max_steps={STEPS}")] = "train.max_steps=2"
    train(load_config(None, args), DistContext.single("cpu"))
    before = (out / "backbone.pth").read_bytes()
    proc = subprocess.run([*facescale_cmd, "train", *as_flags(args)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "backbone.pth").read_bytes() == before
