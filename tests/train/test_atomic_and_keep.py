"""A checkpoint write that fails or is killed half way leaves the previous file whole; keep=2 keeps two."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from traintest_utils import FakeHead

from facescale import atomic
from facescale.atomic import torch_save_atomic
from facescale.distributed.context import DistContext
from facescale.train.checkpoint import CheckpointManager


def test_a_failing_fsync_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "trainer.pt"
    torch_save_atomic({"step": 1, "w": torch.ones(3)}, path)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        torch_save_atomic({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    old = torch.load(path, weights_only=True)
    assert old["step"] == 1 and torch.equal(old["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer.pt"]  # no temporary left behind


def test_a_crash_mid_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "trainer.pt"
    torch_save_atomic({"step": 1, "w": torch.ones(1000)}, path)
    # a child process that dies (no cleanup, no exception handling) after writing half the new file
    child = textwrap.dedent(
        f"""
        import os, pathlib, torch
        from facescale.atomic import torch_save_atomic

        def half_then_die(self, data):
            with open(self, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
            os._exit(9)

        pathlib.Path.write_bytes = half_then_die
        torch_save_atomic({{"step": 2, "w": torch.zeros(1000)}}, {str(path)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert any(p.name != "trainer.pt" for p in tmp_path.iterdir()), "the child never wrote its half file"
    old = torch.load(path, weights_only=True)
    assert old["step"] == 1 and torch.equal(old["w"], torch.ones(1000))


def test_the_temporary_is_never_the_final_name(tmp_path):
    assert atomic.temp_name(tmp_path / "x.pt") != tmp_path / "x.pt"


def test_keep_2_keeps_exactly_the_two_newest_step_directories(tmp_path):
    manager = CheckpointManager(tmp_path, DistContext.single("cpu"), keep=2)
    for step in (5, 10, 15, 20, 25):
        manager.save(step, {"step": step}, FakeHead(float(step)))
    steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert steps == ["step-00000020", "step-00000025"]
    latest = manager.latest()
    assert latest is not None and latest.name == "step-00000025"
    head = FakeHead(0.0)
    manager.load(latest, head)
    assert head.value == 25.0
