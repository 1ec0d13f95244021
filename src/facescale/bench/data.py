"""Loader throughput: decoded + augmented training images per second, beside a naive baseline.

Rows, all on the same dataset and in the same run:

* ``naive PIL, 1 process``: what a first training script does: per sample, PIL decode, convert
  to RGB, random flip, to a float tensor, normalise; stack a batch. No workers.
* ``facescale, in-process``: facescale's batch decoder (libjpeg-turbo strict decode, augment,
  normalise) with ``num_workers=0``: the throughput of one worker.
* ``facescale loader, W workers``: the full ``build_train_loader`` with W worker processes.
* ``DALI decode (...)``, with ``dali=True``: the DALI loader (``data.dali=true``), decoding with
  nvJPEG on the GPU when CUDA is available (batches end on the GPU, augmented and normalised
  there), else with DALI's CPU decoder and W threads.
* with ``strong=True`` the facescale rows are repeated with every augmentation at p=0.5.

The issue's target: at least 2,000 images/s per worker for 112x112 JPEGs.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from facescale.config import AugmentConfig, DataConfig
from facescale.data.face_dataset import FaceDataset
from facescale.data.loader_factory import build_train_loader


@dataclass
class DataBenchRow:
    name: str
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def naive_pil_baseline(dataset: FaceDataset, images: int, batch_size: int, seed: int = 0) -> DataBenchRow:
    """Per-sample PIL decode + flip + normalise in one process; ``images`` samples in batches."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    done = 0
    start = time.perf_counter()
    while done < images:
        batch = []
        for _ in range(batch_size):
            i = int(order[done % len(order)])
            array = np.asarray(Image.open(io.BytesIO(dataset.read(i))).convert("RGB"))
            if rng.random() < 0.5:
                array = array[:, ::-1]
            tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float()
            batch.append((tensor - 127.5) / 127.5)
            done += 1
        torch.stack(batch)
    return DataBenchRow("naive PIL, 1 process", done, time.perf_counter() - start)


def facescale_loader(
    dataset: FaceDataset,
    cfg: DataConfig,
    images: int,
    name: str,
    seed: int = 0,
    device: torch.device | None = None,
) -> DataBenchRow:
    """Iterate the training loader (epochs back to back) until ``images`` samples; the first batch is
    not timed (worker start-up). On a GPU the clock stops once the device has finished."""
    loader = build_train_loader(dataset, cfg, rank=0, world_size=1, seed=seed, device=device)
    done = 0
    start = 0.0
    epoch = 0
    while done < images:
        loader.set_epoch(epoch)
        for x, _ in loader:
            if not start:
                if device is not None and device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()  # after the first batch: workers are up
                continue
            done += x.shape[0]
            if done >= images:
                break
        epoch += 1
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return DataBenchRow(name, done, time.perf_counter() - start)


def run_data_bench(
    dataset: FaceDataset,
    images: int = 4096,
    batch_size: int = 128,
    workers: int = 2,
    strong: bool = False,
    seed: int = 0,
    dali: bool = False,
) -> list[DataBenchRow]:
    """All rows of the benchmark (see the module docstring)."""
    base = DataConfig(batch_size=batch_size, num_workers=0, prefetch=2)
    rows = [naive_pil_baseline(dataset, images, batch_size, seed)]
    augments = [("hflip", AugmentConfig())]
    if strong:
        augments.append(("all aug p=0.5", AugmentConfig(0.5, 0.5, 0.5, 0.5, 0.5)))
    # The DALI rows decode on the GPU when there is one, else with DALI's CPU decoder.
    dali_device = torch.device("cuda") if torch.cuda.is_available() else None
    dali_threads = max(1, workers)
    dali_where = "GPU nvJPEG" if dali_device is not None else f"CPU, {dali_threads} threads"
    for label, augment in augments:
        cfg = replace(base, augment=augment)
        rows.append(facescale_loader(dataset, cfg, images, f"facescale, in-process ({label})", seed))
        if workers > 0:
            cfg_workers = replace(cfg, num_workers=workers)
            name = f"facescale loader, {workers} workers ({label})"
            rows.append(facescale_loader(dataset, cfg_workers, images, name, seed))
        if dali:
            cfg_dali = replace(cfg, dali=True, num_workers=dali_threads)
            name = f"DALI decode, {dali_where} ({label})"
            rows.append(facescale_loader(dataset, cfg_dali, images, name, seed, dali_device))
    return rows


def format_rows(rows: list[DataBenchRow]) -> str:
    baseline = rows[0].images_per_second
    lines = [f"{'pipeline':<44} {'images':>8} {'seconds':>8} {'images/s':>10} {'vs naive':>9}"]
    for row in rows:
        ratio = row.images_per_second / baseline
        speed = row.images_per_second
        lines.append(f"{row.name:<44} {row.images:>8} {row.seconds:>8.2f} {speed:>10.0f} {ratio:>8.2f}x")
    return "\n".join(lines)
