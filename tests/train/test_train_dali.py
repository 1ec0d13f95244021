"""`facescale train` with ``data.dali=true`` trains on exactly the batches of the CPU loader."""

from __future__ import annotations

import pytest
import torch
from test_resume import overrides

from facescale.config import load_config
from facescale.distributed.context import DistContext
from facescale.train.trainer import train

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI (the dali extra) is not installed")
from facescale.data.dali_loader import DaliTrainLoader


def test_dali_run_reaches_the_weights_of_a_cpu_loader_run(color_rec, tmp_path, monkeypatch):
    decoded_by_dali = []
    finish = DaliTrainLoader._finish
    monkeypatch.setattr(
        DaliTrainLoader, "_finish", lambda self, *args: decoded_by_dali.append(1) or finish(self, *args)
    )
    weights = []
    for dali in ("false", "true"):
        keys = overrides(color_rec, tmp_path / f"dali-{dali}")
        keys += ["train.max_steps=6", f"data.dali={dali}", "data.augment.hflip=0.5"]
        result = train(load_config(None, keys), DistContext.single("cpu"))
        assert result.steps == 6
        weights.append(torch.load(tmp_path / f"dali-{dali}" / "backbone.pth", weights_only=True))
    assert len(decoded_by_dali) == 6  # the second run's batches all came through DALI
    cpu, dali = weights
    assert cpu.keys() == dali.keys()
    for key in cpu:
        torch.testing.assert_close(dali[key], cpu[key], rtol=1e-6, atol=1e-7, msg=key)
