from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datatest_utils import write_im2rec, write_rec_with_bad_records

from facescale.config import AugmentConfig, DataConfig
from facescale.data.datasets import open_dataset
from facescale.data.image_codec import decode_image
from facescale.data.loader import rank_batches
from facescale.data.loader_factory import build_train_loader
from facescale.errors import DataError, FacescaleError

NO_AUGMENT = AugmentConfig(hflip=0.0)


@pytest.mark.parametrize(("n", "batch", "world"), [(48, 4, 3), (50, 4, 3), (7, 2, 1), (64, 8, 4)])
def test_sharding_uses_each_record_once_per_epoch(n: int, batch: int, world: int) -> None:
    steps = n // (batch * world)
    seen_by_epoch = []
    for epoch in range(3):
        shares = [rank_batches(n, batch, r, world, seed=5, epoch=epoch) for r in range(world)]
        assert all(len(s) == steps for s in shares)  # equal steps on every rank
        used = np.concatenate([np.concatenate(s) for s in shares])
        assert len(used) == steps * batch * world
        assert len(np.unique(used)) == len(used)  # never twice in one epoch
        if n % (batch * world) == 0:
            assert sorted(used.tolist()) == list(range(n))  # exactly once
        seen_by_epoch.append(used)
        assert np.array_equal(used, np.concatenate([np.concatenate(s) for s in shares]))
    assert not np.array_equal(seen_by_epoch[0], seen_by_epoch[1])  # reshuffled each epoch
    again = rank_batches(n, batch, 0, world, seed=5, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, rank_batches(n, batch, 0, world, 5, 1)))


def test_loader_batches_equal_naive_reference(tmp_path: Path) -> None:
    labels = list(range(12))  # label = sample index, so the batches say which samples they hold
    images = write_im2rec(tmp_path, labels)
    cfg = DataConfig(root=str(tmp_path), batch_size=3, num_workers=0, augment=NO_AUGMENT)
    dataset = open_dataset(cfg)
    covered = []
    for rank in range(2):
        loader = build_train_loader(dataset, cfg, rank=rank, world_size=2, seed=1)
        loader.set_epoch(4)
        assert len(loader) == 2
        batches = list(loader)
        assert len(batches) == 2
        for (x, y), indices in zip(batches, rank_batches(12, 3, rank, 2, 1, 4)):
            assert x.dtype == torch.float32 and x.shape == (3, 3, 112, 112)
            assert y.dtype == torch.int64 and y.tolist() == indices.tolist()
            expected = np.stack([decode_image(images[i], "t") for i in indices]).transpose(0, 3, 1, 2)
            np.testing.assert_allclose(x.numpy(), (expected.astype(np.float32) - 127.5) / 127.5, atol=1e-6)
            covered.extend(y.tolist())
    assert sorted(covered) == labels


def test_augmented_batches_do_not_depend_on_worker_count(tmp_path: Path) -> None:
    write_im2rec(tmp_path, [0, 1, 2, 3, 0, 1, 2, 3])
    augment = AugmentConfig(hflip=0.5, downscale=0.5, blur=0.5, color_jitter=0.5, grayscale=0.5)
    runs = []
    for workers in (0, 2):
        cfg = DataConfig(root=str(tmp_path), batch_size=4, num_workers=workers, augment=augment)
        loader = build_train_loader(open_dataset(cfg), cfg, rank=0, world_size=1, seed=3)
        loader.set_epoch(1)
        runs.append([(x.clone(), y.clone()) for x, y in loader])
    for (x0, y0), (x2, y2) in zip(*runs):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    plain_cfg = DataConfig(root=str(tmp_path), batch_size=4, num_workers=0, augment=NO_AUGMENT)
    plain = build_train_loader(open_dataset(plain_cfg), plain_cfg, 0, 1, seed=3)
    plain.set_epoch(1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(runs[0], plain))  # augmentation did something


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_samples_fail_naming_the_record(tmp_path: Path, workers: int) -> None:
    write_rec_with_bad_records(tmp_path)
    cfg = DataConfig(root=str(tmp_path), batch_size=9, num_workers=workers)
    loader = build_train_loader(open_dataset(cfg), cfg, 0, 1, seed=0)
    with pytest.raises(
        DataError, match=r"train\.rec record [258]: (not a decodable image|truncated JPEG|corrupt JPEG)"
    ) as e:
        list(loader)
    assert "Traceback" not in str(e.value)


def test_bad_samples_skip_counts_and_reports(tmp_path: Path) -> None:
    write_rec_with_bad_records(tmp_path)
    cfg = DataConfig(root=str(tmp_path), batch_size=9, num_workers=0, bad_data="skip")
    loader = build_train_loader(open_dataset(cfg), cfg, 0, 1, seed=0)
    assert loader.bad_data_report() is None
    ((x, y),) = list(loader)
    assert x.shape[0] == 9 and torch.isfinite(x).all()
    report = loader.bad_data_report()
    assert report is not None and "skipped 3 bad sample(s)" in report
    assert "record 2" in report and "record 5" in report and "record 8: corrupt JPEG" in report
    good_labels = [0, 1, 3, 0, 2, 3]  # key % 4 of the six good records 0, 1, 3, 4, 6, 7
    assert sorted(set(y.tolist())) == sorted(set(good_labels)) and y.tolist().count(2) <= 6


def test_truncated_rec_and_offset_past_end(tmp_path: Path) -> None:
    write_im2rec(tmp_path, [0, 1, 2, 3])
    rec = tmp_path / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-100])  # the last record loses its tail
    with (tmp_path / "train.idx").open("a") as f:
        f.write("9\t999999\n")  # an offset past the end of the file
    with pytest.raises(DataError, match=r"record 9: index .* past the end"):
        open_dataset(DataConfig(root=str(tmp_path)))
    cfg = DataConfig(root=str(tmp_path), batch_size=3, num_workers=0, bad_data="skip", augment=NO_AUGMENT)
    dataset = open_dataset(cfg)
    assert len(dataset) == 4 and dataset.excluded_count == 1
    loader = build_train_loader(dataset, cfg, 0, 1, seed=0)
    list(loader)
    report = loader.bad_data_report() or ""
    assert "excluded when the dataset was opened" in report and "record 9" in report
    fail_cfg = DataConfig(root=str(tmp_path), batch_size=4, num_workers=0, bad_data="fail")
    dataset.excluded_count = 0
    with pytest.raises(DataError, match=r"record 3: truncated record"):
        list(build_train_loader(dataset, fail_cfg, 0, 1, seed=0))


def test_too_small_and_dali_without_dali(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_im2rec(tmp_path, [0, 1, 2])
    dataset = open_dataset(DataConfig(root=str(tmp_path)))
    with pytest.raises(DataError, match="fewer than one global batch"):
        build_train_loader(dataset, DataConfig(batch_size=2), rank=0, world_size=2, seed=0)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # as if the dali extra were not installed
    with pytest.raises(FacescaleError, match=r"facescale\[dali\]"):
        build_train_loader(dataset, DataConfig(batch_size=1, dali=True), rank=0, world_size=1, seed=0)


def test_persistent_workers_follow_set_epoch(tmp_path: Path) -> None:
    write_im2rec(tmp_path, list(range(8)))  # label = sample index
    cfg = DataConfig(root=str(tmp_path), batch_size=2, num_workers=2, augment=NO_AUGMENT)
    loader = build_train_loader(open_dataset(cfg), cfg, rank=1, world_size=2, seed=9)
    for epoch in (0, 1, 1, 5):
        loader.set_epoch(epoch)
        got = [y.tolist() for _, y in loader]
        assert got == [b.tolist() for b in rank_batches(8, 2, 1, 2, 9, epoch)]
