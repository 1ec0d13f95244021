"""A NaN is never checkpointed (16.2); ``RUN/training.log``, init_weights and a finished run's
resume are reported (16.5); TensorBoard keeps the resumed step's point (16.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facescale.config import load_config
from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError
from facescale.train import trainer
from facescale.train.trainer import train


def keys(rec: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={rec}", "data.batch_size=16", "data.num_workers=0",
        "model.name=mbf_tiny", "model.embedding_size=32", "head.sample_rate=0.5", "optim.lr=0.05",
        "train.tensorboard=false", "train.progress=false", f"train.output={out}", *extra,
    ]  # fmt: skip


def test_a_nan_between_log_steps_is_never_checkpointed(color_rec, tmp_path, monkeypatch):
    real_build = trainer.build_head
    calls = {"n": 0}

    def poisoned_head(*args, **kwargs):  # the loss turns NaN from the 5th step on
        head = real_build(*args, **kwargs)
        forward = head.forward

        def nan_after_four(features, labels):
            calls["n"] += 1
            loss = forward(features, labels)
            return loss * float("nan") if calls["n"] >= 5 else loss

        head.forward = nan_after_four
        return head

    monkeypatch.setattr(trainer, "build_head", poisoned_head)
    out = tmp_path / "run"
    cfg = load_config(
        None, keys(color_rec, out, "train.max_steps=12", "train.save_every=3", "train.log_every=10")
    )
    with pytest.raises(FacescaleError) as info:
        train(cfg, DistContext.single("cpu"))
    message = str(info.value)
    assert "not saving the checkpoint of step 6" in message and "loss was NaN or inf" in message
    assert (out / "checkpoints" / "latest").read_text() == "step-00000003"
    state = torch.load(out / "checkpoints" / "step-00000003" / "trainer.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["backbone"].values() if v.is_floating_point())
    assert not (out / "checkpoints" / "step-00000006").exists()


def test_training_log_init_weights_and_resuming_a_finished_run(color_rec, tmp_path, capsys):
    first = tmp_path / "first"
    train(
        load_config(None, keys(color_rec, first, "train.max_steps=2", "train.log_every=1")),
        DistContext.single("cpu"),
    )
    out = tmp_path / "run"
    init = f"model.init_weights={first / 'backbone.pth'}"
    cfg = load_config(None, keys(color_rec, out, "train.max_steps=3", "train.log_every=1", init))
    train(cfg, DistContext.single("cpu"))
    log = (out / "training.log").read_text().splitlines()
    assert any(f"initial weights: loaded {first / 'backbone.pth'}" in line for line in log)
    assert any("step 3/3" in line for line in log)
    assert all(line[:4].isdigit() and " UTC " in line for line in log), log[:3]  # timestamped
    before = (out / "backbone.pth").read_bytes()
    latest = (out / "checkpoints" / "latest").read_text()
    capsys.readouterr()

    again = train(
        load_config(out / "config.yaml", [f"train.output={out}"]), DistContext.single("cpu"), resume=True
    )
    printed = capsys.readouterr().out
    assert again.steps == 3
    assert "already finished at step 3 of 3" in printed
    assert "lfw" not in printed and "accuracy" not in printed  # not re-evaluated
    assert (out / "backbone.pth").read_bytes() == before  # not exported again
    assert (out / "checkpoints" / "latest").read_text().startswith(latest)  # step 3, re-saved beside
    assert "already finished" in (out / "training.log").read_text()


def test_tensorboard_keeps_the_resumed_steps_point(color_rec, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    extra = ("train.max_steps=4", "train.log_every=2", "train.save_every=2", "train.tensorboard=true")
    train(load_config(None, keys(color_rec, out, *extra)), DistContext.single("cpu"))
    (out / "checkpoints" / "latest").write_text("step-00000002")  # as if killed after step 2's save
    (out / "backbone.pth").unlink()
    train(load_config(out / "config.yaml", [f"train.output={out}"]), DistContext.single("cpu"), resume=True)
    # The folder as TensorBoard reads it: files in order, purges applied across them.
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert sorted(steps) == [2, 4], steps


def test_resume_with_a_truncated_rng_file_is_one_line(color_rec, tmp_path, facescale_cmd):
    import subprocess

    out = tmp_path / "run"
    train(
        load_config(None, keys(color_rec, out, "train.max_steps=4", "train.save_every=2")),
        DistContext.single("cpu"),
    )
    (out / "checkpoints" / "latest").write_text("step-00000002")
    rng = out / "checkpoints" / "step-00000002" / "rng-rank00000.pt"
    rng.write_bytes(rng.read_bytes()[:100])
    proc = subprocess.run([*facescale_cmd, "train", "--resume", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"cannot read RNG state {rng}" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
