"""A run resumed mid-epoch with dropout reaches the uninterrupted run's weights exactly (issue 16.4).

The kill is simulated by rewinding a finished run to its middle checkpoint: ``latest`` moved back,
the later step and the exported backbone removed, exactly what a kill after that save leaves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from facescale.config import load_config
from facescale.distributed.context import DistContext
from facescale.train.trainer import train

STEPS = 10  # 4 steps per epoch (64 images, batch 16): the rewind to step 6 lands mid-epoch


def keys(rec: Path, out: Path) -> list[str]:
    return [
        f"data.root={rec}", "data.batch_size=16", "data.num_workers=0",
        "model.name=mbf_tiny", "model.embedding_size=32", "model.dropout=0.5",
        "head.sample_rate=0.5", "head.margin.s=16.0", "optim.lr=0.05",
        f"train.max_steps={STEPS}", "train.save_every=6", "train.log_every=5",
        "train.tensorboard=false", "train.progress=false", f"train.output={out}",
    ]  # fmt: skip


def test_mid_epoch_resume_with_dropout_is_exact(color_rec, tmp_path):
    ref_dir = tmp_path / "ref"
    train(load_config(None, keys(color_rec, ref_dir)), DistContext.single("cpu"))
    run = tmp_path / "rewound"
    shutil.copytree(ref_dir, run)
    (run / "backbone.pth").unlink()
    shutil.rmtree(run / "checkpoints" / f"step-{STEPS:08d}")
    (run / "checkpoints" / "latest").write_text("step-00000006")

    torch.manual_seed(1234)  # whatever the process did before must not matter
    torch.rand(7)
    train(load_config(run / "config.yaml", [f"train.output={run}"]), DistContext.single("cpu"), resume=True)
    ours = torch.load(run / "backbone.pth", weights_only=True)
    ref = torch.load(ref_dir / "backbone.pth", weights_only=True)
    worst = max(float((ours[k].float() - ref[k].float()).abs().max()) for k in ref)
    assert worst == 0.0, f"resumed weights differ from the uninterrupted run by up to {worst}"
