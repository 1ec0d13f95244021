"""Faults under torchrun are reported once, on rank 0 (issue 16.13): records skipped on any rank
(``bad_data=skip``) are gathered into rank 0's report, and when one rank fails on a bad record
its message is printed once while the other ranks say in one line that they lost it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facescale.data.image_codec import encode_jpeg

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
BAD = {3, 10, 17, 22, 29}  # of 32 images: the epoch's shuffle deals them to both ranks


def write_set(root: Path, bad: set[int] = BAD) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(32):
        data = (
            b"this is not an image"
            if i in bad
            else encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
        )
        (root / "images" / f"{i:03d}.jpg").write_bytes(data)
        lines.append(f"images/{i:03d}.jpg\t{i % 4}\n")
    (root / "label.txt").write_text("".join(lines))
    return root


def torchrun(root: Path, run: Path, bad_data: str) -> subprocess.CompletedProcess:
    keys = [
        "data.format=label_txt", f"data.root={root}", "data.batch_size=8", "data.num_workers=0",
        f"data.bad_data={bad_data}", "model.name=mbf_tiny", "model.embedding_size=32",
        "train.max_steps=2", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
        f"train.output={run}",
    ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "facescale.cli.main", "train", *[t for k in keys for t in ("-o", k)],
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


@pytest.mark.slow
def test_records_skipped_on_every_rank_reach_rank_0(tmp_path):
    root = write_set(tmp_path / "set")
    proc = torchrun(root, tmp_path / "run", "skip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = {int(r) for r in re.findall(r"skipped \d+ bad sample\(s\) on rank (\d)", proc.stdout)}
    assert ranks == {0, 1}, proc.stdout
    named = {int(n) for n in re.findall(r"images/(\d{3})\.jpg", proc.stdout)}
    assert named and named <= BAD
    log = (tmp_path / "run" / "training.log").read_text()
    assert "on rank 1" in log


@pytest.mark.slow
def test_one_rank_failing_is_said_once_without_tracebacks(tmp_path):
    root = write_set(tmp_path / "set", bad={10})  # one bad record: only the rank it is dealt to fails
    proc = torchrun(root, tmp_path / "run", "fail")
    assert proc.returncode != 0
    err = proc.stderr
    failures = re.findall(r"facescale train: error: \S*images/010\.jpg .*not a decodable image", err)
    assert len(failures) == 1, err[-3000:]
    assert "src/facescale/" not in err, err[-3000:]  # no traceback through facescale's code
    # The other rank, waiting in a collective, says in one line that it lost its peer (unless
    # torchrun stopped it first).
    assert err.count("lost contact with another process of the job") <= 1
