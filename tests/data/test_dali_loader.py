"""The DALI loader (``data.dali=true``) against the CPU loader: same shards, images, labels, bad data.

DALI decodes on the CPU here (no GPU device); on a GPU the same pipeline runs with ``mixed``
decoding. ``make test`` installs DALI, so these tests run in CI.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from datatest_utils import write_im2rec, write_rec_with_bad_records

from facescale.config import AugmentConfig, DataConfig
from facescale.data.datasets import open_dataset
from facescale.data.loader import TrainLoader, rank_batches
from facescale.data.loader_factory import build_train_loader
from facescale.errors import DataError, FacescaleError

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI (the dali extra) is not installed")
from facescale.data import dali_loader
from facescale.data.dali_loader import DaliTrainLoader

STRONG = AugmentConfig(hflip=0.5, downscale=0.5, blur=0.5, color_jitter=0.5, grayscale=0.5)


def _both(
    cfg: DataConfig, rank: int = 0, world: int = 1, seed: int = 1
) -> tuple[TrainLoader, DaliTrainLoader]:
    cpu = build_train_loader(open_dataset(cfg), replace(cfg, dali=False), rank, world, seed)
    dali = build_train_loader(open_dataset(cfg), replace(cfg, dali=True), rank, world, seed)
    assert isinstance(cpu, TrainLoader) and isinstance(dali, DaliTrainLoader)
    return cpu, dali


def test_unaugmented_batches_equal_the_cpu_loader(fixture_dir: Path) -> None:
    """The MXNet-written fixture: every rank's batches, bit for bit (both decoders are libjpeg-turbo)."""
    cfg = DataConfig(root=str(fixture_dir), batch_size=8, num_workers=0, augment=AugmentConfig(hflip=0.0))
    for rank in range(2):
        cpu, dali = _both(cfg, rank, world=2, seed=3)
        for loader in (cpu, dali):
            loader.set_epoch(2)
        pairs = list(zip(cpu, dali, strict=True))
        assert len(pairs) == len(dali) == 3
        for ((x_cpu, y_cpu), (x_dali, y_dali)), indices in zip(pairs, rank_batches(60, 8, rank, 2, 3, 2)):
            assert x_dali.dtype == torch.float32 and x_dali.shape == (8, 3, 112, 112)
            assert torch.equal(x_cpu, x_dali)
            assert torch.equal(y_cpu, y_dali) and y_dali.tolist() == cpu.dataset.labels[indices].tolist()


def test_augmented_batches_follow_the_same_draws(tmp_path: Path) -> None:
    write_im2rec(tmp_path, list(range(16)))
    cpu, dali = _both(DataConfig(root=str(tmp_path), batch_size=8, num_workers=0, augment=STRONG))
    for loader in (cpu, dali):
        loader.set_epoch(1)
    for (x_cpu, y_cpu), (x_dali, y_dali) in zip(cpu, dali, strict=True):
        assert torch.equal(y_cpu, y_dali)
        # The same flips, scales, sigmas and colours; only interpolation rounding differs.
        assert (x_cpu - x_dali).abs().max() <= 2 / 127.5 + 1e-6


def test_resume_mid_epoch_and_reshuffle(tmp_path: Path) -> None:
    write_im2rec(tmp_path, list(range(24)))  # label = sample index
    cfg = DataConfig(root=str(tmp_path), batch_size=4, num_workers=1, prefetch=2, dali=True, augment=STRONG)
    loader = build_train_loader(open_dataset(cfg), cfg, rank=1, world_size=2, seed=7)
    loader.set_epoch(3)
    full = [(x.clone(), y.clone()) for x, y in loader]
    assert [y.tolist() for _, y in full] == [b.tolist() for b in rank_batches(24, 4, 1, 2, 7, 3)]
    loader.set_epoch(3, start_batch=2)
    tail = list(loader)
    assert len(tail) == 1 and torch.equal(tail[0][0], full[2][0]) and torch.equal(tail[0][1], full[2][1])
    for epoch in (4, 5):
        loader.set_epoch(epoch)
        expected = [b.tolist() for b in rank_batches(24, 4, 1, 2, 7, epoch)]
        for step, (_, y) in enumerate(loader):  # stops part way: DALI has decoded batches ahead
            assert y.tolist() == expected[step]
            break
        assert [y.tolist() for _, y in loader] == expected  # a fresh pipeline, nothing stale


@pytest.mark.parametrize("prefetch", [1, 3])
def test_bad_samples_fail_at_the_same_batch_as_the_cpu_loader(tmp_path: Path, prefetch: int) -> None:
    """DALI decodes ahead, but a bad record stops training only when its batch is reached."""
    write_rec_with_bad_records(tmp_path)
    cfg = DataConfig(root=str(tmp_path), batch_size=3, num_workers=0, prefetch=prefetch)
    outcomes = []
    for loader in _both(cfg, seed=1):  # batches [7, 0, 1], [4, 2, 5], [8, 6, 3]
        delivered = []
        with pytest.raises(DataError, match=r"train\.rec record [258]: ") as e:
            for _, y in loader:
                delivered.append(y.tolist())
        outcomes.append((delivered, str(e.value).split(":")[0]))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ([[3, 0, 1]], f"{tmp_path / 'train.rec'} record 2")  # labels: key % 4


def test_bad_record_found_by_the_decoder_names_it(tmp_path: Path) -> None:
    """Record 2 passes the host checks; DALI fails and the strict host decode names the record."""
    write_rec_with_bad_records(tmp_path)
    cfg = DataConfig(root=str(tmp_path), batch_size=4, num_workers=0, dali=True)
    dataset = open_dataset(cfg)
    dataset.drop(np.array([5, 8]))  # leave record 2 as the only bad one
    with pytest.raises(DataError, match=r"record 2: not a decodable image .*\(refused by the DALI decoder\)"):
        for _ in build_train_loader(dataset, cfg, 0, 1, seed=0):
            pass


def test_bad_samples_skip_counts_and_reports_every_epoch(tmp_path: Path) -> None:
    write_rec_with_bad_records(tmp_path)
    cfg = DataConfig(
        root=str(tmp_path), batch_size=3, num_workers=0, bad_data="skip", prefetch=2, augment=STRONG
    )
    cpu, dali = _both(cfg, seed=0)
    for epoch in (0, 1):
        for loader in (cpu, dali):
            loader.set_epoch(epoch)
        pairs = list(zip(cpu, dali, strict=True))
        assert len(pairs) == 3  # no batch lost or repeated when the pipeline restarts
        for (x_cpu, y_cpu), (x_dali, y_dali) in pairs:
            # The same donors replace the same bad slots, with the same augmentation draws.
            assert torch.equal(y_cpu, y_dali)
            assert (x_cpu - x_dali).abs().max() <= 2 / 127.5 + 1e-6
        report = dali.bad_data_report()
        assert report is not None and f"epoch {epoch}: skipped 3 bad sample(s)" in report
        assert "record 2" in report and "record 5: truncated JPEG" in report and "record 8" in report


@pytest.mark.parametrize("decoder_broken", [False, True])
def test_a_failure_no_record_explains_is_raised_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder_broken: bool
) -> None:
    """Not a data problem: skip mode must not start dropping good records over it."""
    write_im2rec(tmp_path, list(range(8)))
    cfg = DataConfig(root=str(tmp_path), batch_size=4, num_workers=0, dali=True, bad_data="skip")
    loader = build_train_loader(open_dataset(cfg), cfg, 0, 1, seed=0)
    build = DaliTrainLoader._build_pipeline

    class AlwaysFailing:
        def __init__(self, pipeline: object) -> None:
            self.pipeline = pipeline

        def run(self, *args: object) -> object:
            self.pipeline.run(*args)  # type: ignore[attr-defined]
            raise RuntimeError("Critical error in pipeline:\nencountered:\n\nCUDA out of memory")

    monkeypatch.setattr(DaliTrainLoader, "_build_pipeline", lambda self: AlwaysFailing(build(self)))
    if decoder_broken:  # the one-image checks fail too, on good records and a plain JPEG alike
        monkeypatch.setattr(dali_loader, "_refusal", lambda checker, encoded: RuntimeError("CUDA error"))
        expected = r"record \d.*cannot decode a plain JPEG either: CUDA out of memory"
    else:
        expected = r"record \d.*decodes each of its records alone, so no bad record explains it: CUDA out of"
    with pytest.raises(FacescaleError, match=expected):
        list(loader)
    assert not loader._known_bad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_gpu_decoding_matches_the_cpu_loader(fixture_dir: Path) -> None:
    """nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by rounding, not more."""
    cfg = DataConfig(root=str(fixture_dir), batch_size=8, num_workers=2, augment=STRONG)
    cpu = build_train_loader(open_dataset(cfg), cfg, 0, 1, seed=3)
    gpu = build_train_loader(open_dataset(cfg), replace(cfg, dali=True), 0, 1, seed=3, device="cuda")
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(cpu, gpu, strict=True):
        assert x_gpu.is_cuda and y_gpu.is_cuda and x_gpu.dtype == torch.float32
        assert torch.equal(y_gpu.cpu(), y_cpu)
        levels = (x_gpu.cpu() - x_cpu).abs() * 127.5
        assert levels.mean() < 1.0 and levels.max() <= 24
