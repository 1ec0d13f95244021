import os

import pytest
import torch

from facescale.atomic import torch_save_atomic, write_bytes_atomic
from facescale.train.schedule import PolynomialWarmup


def test_warmup_is_linear_per_step_then_polynomial_decay():
    s = PolynomialWarmup(base_lr=0.1, total_steps=110, warmup_steps=10, power=2.0)
    assert s(0) == pytest.approx(0.01)
    assert s(9) == pytest.approx(0.1)
    assert s(10) == pytest.approx(0.1)
    assert s(60) == pytest.approx(0.1 * 0.5**2)
    assert s(110) == 0.0
    assert all(s(i) >= s(i + 1) for i in range(10, 110))


def test_schedule_rejects_bad_lengths():
    with pytest.raises(ValueError):
        PolynomialWarmup(0.1, total_steps=0)
    with pytest.raises(ValueError):
        PolynomialWarmup(0.1, total_steps=10, warmup_steps=11)


def test_atomic_write_leaves_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pt"
    write_bytes_atomic(target, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp debris


def test_atomic_torch_save_loads_weights_only(tmp_path):
    torch_save_atomic({"w": torch.arange(3)}, tmp_path / "x.pt")
    assert torch.equal(torch.load(tmp_path / "x.pt", weights_only=True)["w"], torch.arange(3))
