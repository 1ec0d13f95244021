"""2 processes of batch B end with the backbone weights of 1 process of batch 2B (gloo, CPU).

"The loss falls" would also pass if DDP averaged the backbone gradients instead of summing them
(the Partial FC loss is the global mean, so averaging halves the step). Batch norm would make the
layouts legitimately differ (each process normalises over its own batch), so the backbone here
has none; flips are off because augmentations are drawn per rank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

LAUNCHER = Path(__file__).parent / "bnfree_main.py"  # the CLI plus the bnfree_tiny backbone
STEPS = 4


def run(nproc: int, launcher: Path, keys: list[str]) -> subprocess.CompletedProcess:
    flags = [token for key in keys for token in ("-o", key)]
    if nproc == 1:
        cmd = [sys.executable, str(launcher), "train", *flags]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(launcher), "train", *flags,
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_two_processes_of_batch_b_train_like_one_of_batch_2b(color_rec, tmp_path):
    def keys(batch: int, out: Path) -> list[str]:
        return [
            f"data.root={color_rec}", f"data.batch_size={batch}", "data.num_workers=0",
            "data.augment.hflip=0", "model.name=bnfree_tiny", "model.embedding_size=16",
            "head.sample_rate=1.0", "head.margin.s=16.0", "optim.lr=0.5", "optim.clip_grad_norm=0",
            f"train.max_steps={STEPS}", "train.save_every=0", "train.log_every=1",
            "train.tensorboard=false", "train.progress=false", "train.device=cpu", f"train.output={out}",
            # the head's GEMMs in fp32: a bf16 GEMM rounds each rank's partial products differently
            "head.matmul_dtype=float32",
        ]  # fmt: skip

    one = run(1, LAUNCHER, keys(16, tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(2, LAUNCHER, keys(8, tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stdout and "global batch 16" in two.stdout
    start = torch.load(tmp_path / "one" / "backbone.pth", weights_only=True)
    end_two = torch.load(tmp_path / "two" / "backbone.pth", weights_only=True)
    assert start.keys() == end_two.keys()
    for name in start:
        torch.testing.assert_close(end_two[name], start[name], rtol=1e-4, atol=1e-5, msg=name)
