"""CheckpointManager: ``latest`` never dangles, a failed save keeps the previous checkpoint, RNG
files are this process's device only and a damaged one is named (issues 15.1, 16.3, 16.14)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from traintest_utils import FakeHead

from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError
from facescale.models.loading import latest_step_dir
from facescale.train import checkpoint
from facescale.train.checkpoint import CheckpointManager, load_rng_file, rng_state, set_rng_state


def saved_step(manager: CheckpointManager) -> int:
    latest = manager.latest()
    assert latest is not None
    return int(torch.load(latest / "trainer.pt")["step"])


def test_resaving_the_latest_step_never_leaves_latest_dangling(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, DistContext.single("cpu"), keep=2)
    first = manager.save(10, {"step": 10, "v": 1}, FakeHead(1.0))
    assert first.name == "step-00000010"
    # Watch every moment rank 0 changes the folder: ``latest`` must name a complete step each time.
    real_rename = Path.rename
    seen: list[str] = []

    def checked_rename(self: Path, target: Path) -> Path:  # type: ignore[override]
        found = latest_step_dir(tmp_path)
        assert found is not None and (found / "trainer.pt").exists()
        seen.append(found.name)
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", checked_rename)
    second = manager.save(10, {"step": 10, "v": 2}, FakeHead(2.0))
    monkeypatch.undo()
    assert seen == ["step-00000010"]
    assert second.name == "step-00000010-r1"
    assert manager.latest() == second
    assert torch.load(second / "trainer.pt")["v"] == 2
    assert not first.exists()  # superseded, removed only after ``latest`` moved
    third = manager.save(10, {"step": 10, "v": 3}, FakeHead(3.0))
    assert third.name == "step-00000010" and not second.exists()
    head = FakeHead(0.0)
    manager.load(third, head)
    assert head.value == 3.0


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, DistContext.single("cpu"), keep=1)
    manager.save(4, {"step": 4}, FakeHead(1.0))

    def full(obj: object, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "torch_save_atomic", full)
    with pytest.raises(FacescaleError) as info:
        manager.save(8, {"step": 8}, FakeHead(2.0))
    message = str(info.value)
    assert "step 8" in message and "No space left on device" in message
    assert "step-00000004 is intact" in message
    assert "\n" not in message
    assert not list(tmp_path.glob("checkpoints/.*tmp"))  # the temporary folder is gone
    assert saved_step(manager) == 4


def test_rng_state_holds_only_this_process_device(monkeypatch):
    """On a machine with 4 GPUs a process on cuda:2 saves one state, and restores it on its own
    device even when the checkpoint came from a machine showing 8 GPUs to every process."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(
        torch.cuda,
        "get_rng_state",
        lambda device: calls.append(("get", device)) or torch.full((16,), device, dtype=torch.uint8),
    )
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saved every GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("restored by index"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", device)))

    state = rng_state(torch.device("cuda", 2))
    assert isinstance(state["cuda"], torch.Tensor) and int(state["cuda"][0]) == 2
    set_rng_state(state, torch.device("cuda", 2))
    # An older checkpoint: a list of 8 states; this process takes its own device's entry.
    old = {
        "torch": torch.get_rng_state(),
        "cuda": [torch.full((16,), i, dtype=torch.uint8) for i in range(8)],
    }
    set_rng_state(old, torch.device("cuda", 2))
    assert calls == [("get", 2), ("set", 2), ("set", 2)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PK\x03\x04truncated", "cannot read RNG state"),
        (
            {"torch": torch.zeros(7, dtype=torch.uint8)},
            "key 'torch' holds a torch.uint8 tensor of shape (7,)",
        ),
        ({"cuda": torch.zeros(3)}, "not an RNG state"),
    ],
)
def test_a_truncated_or_tampered_rng_file_is_named(tmp_path, content, expected):
    path = tmp_path / "rng-rank00000.pt"
    if isinstance(content, bytes):
        good = tmp_path / "good.pt"
        torch.save(rng_state(), good)
        path.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    else:
        torch.save(content, path)
    before = torch.get_rng_state()
    with pytest.raises(FacescaleError) as info:
        load_rng_file(path)
    assert str(path) in str(info.value) and expected in str(info.value)
    assert torch.equal(torch.get_rng_state(), before)  # nothing half-restored
