"""The training loaders: this rank's share of a reshuffled epoch, decoded and augmented.

``loader_factory.build_train_loader`` picks the CPU loader (``TrainLoader``: decoding and
augmentation in worker processes) or, with ``data.dali=true``, the DALI loader (``dali_loader``:
decoding on the GPU); both derive from ``EpochLoader`` and share the sharding, the augmentation
draws and the bad-data bookkeeping defined here.

Sharding: epoch e uses the permutation drawn from ``(seed, e)``, identical on every rank; rank r
takes positions ``r, r + W, r + 2W, ...`` of it, cut to ``steps * batch_size`` so every rank runs
the same number of steps (drop_last). Within an epoch each record is thus used at most once
over all ranks, and exactly once when N is a multiple of ``W * batch_size``.

Workers receive whole batches ``(epoch, step, indices)`` and return them stacked, so the
augmentation generator is seeded by ``(seed, epoch, rank, step)``: results do not depend on the
number of workers. A bad sample (corrupt JPEG, truncated record, label mismatch) either stops
training with the record named (``bad_data=fail``) or is replaced by another sample of the same
batch and counted (``skip``); batches keep their size so ranks stay in step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from facescale.config import DataConfig
from facescale.data.augment import Augmenter
from facescale.data.face_dataset import FaceDataset
from facescale.data.image_codec import decode_image
from facescale.errors import DataError, FacescaleError
from facescale.models.preprocess import normalize

IMAGE_SIZE = (112, 112)
_MAX_LISTED = 10


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The same shuffled order of ``range(num_samples)`` on every rank for ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """Batches per rank per epoch: whole global batches only (drop_last), the same on every rank."""
    return num_samples // (batch_size * world_size)


def rank_batches(
    num_samples: int, batch_size: int, rank: int, world_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """This rank's batches of sample indices for one epoch (all ranks get the same count)."""
    steps = steps_per_epoch(num_samples, batch_size, world_size)
    share = epoch_permutation(num_samples, seed, epoch)[rank::world_size][: steps * batch_size]
    return [share[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def donor_slots(good: list[int], batch_size: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """``bad_data=skip``: the slots of a batch without a good sample, and for each the good slot to copy.

    Batches keep their size, so every rank runs the same steps. Both loaders call this, so a
    seed picks the same donors (and consumes its generator the same way) in either.
    """
    taken = set(good)
    bad_slots = [slot for slot in range(batch_size) if slot not in taken]
    return bad_slots, rng.choice(good, size=len(bad_slots)).tolist()


def all_bad_message(bad: list[str]) -> str:
    """The error of a batch that has no good sample to copy, even with ``bad_data=skip``."""
    return f"every sample of a batch is bad: {bad[0]}"


@dataclass
class Batch:
    """What a worker returns: uint8 or float images ``[B, 3, H, W]``, labels ``[B]``, problems."""

    images: torch.Tensor
    labels: torch.Tensor
    epoch: int
    bad: list[str] = field(default_factory=list)
    error: str | None = None

    def pin_memory(self) -> Batch:
        self.images = self.images.pin_memory()
        self.labels = self.labels.pin_memory()
        return self


class BatchDecoder(torch.utils.data.Dataset):
    """Maps ``(epoch, step, indices)`` to a decoded, augmented Batch (runs inside a worker)."""

    def __init__(
        self, dataset: FaceDataset, cfg: DataConfig, rank: int, seed: int, normalize_in_worker: bool
    ) -> None:
        self.dataset = dataset
        self.augment = Augmenter(cfg.augment)
        self.skip_bad = cfg.bad_data == "skip"
        self.max_pixels = cfg.max_pixels
        self.rank = rank
        self.seed = seed
        self.normalize_in_worker = normalize_in_worker

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, i: int) -> np.ndarray:
        """Sample ``i`` decoded to uint8 ``[112, 112, 3]`` RGB (resized if stored at another size)."""
        image = decode_image(self.dataset.read(i), self.dataset.describe(i), self.max_pixels)
        if image.shape[:2] != IMAGE_SIZE:
            import cv2

            image = cv2.resize(image, IMAGE_SIZE[::-1], interpolation=cv2.INTER_AREA)
        return image

    def __getitem__(self, item: tuple[int, int, np.ndarray]) -> Batch:
        epoch, step, indices = item
        rng = np.random.default_rng([self.seed, epoch, self.rank, step])
        out = np.empty((len(indices), *IMAGE_SIZE, 3), dtype=np.uint8)
        good: list[int] = []
        bad: list[str] = []
        for slot, i in enumerate(indices):
            try:
                out[slot] = self.augment(self.load(int(i)), rng)
            except DataError as e:
                if not self.skip_bad:
                    return Batch(torch.empty(0), torch.empty(0), epoch, error=str(e))
                bad.append(str(e))
                continue
            good.append(slot)
        labels = self.dataset.labels[indices].copy()
        if bad:
            if not good:
                return Batch(torch.empty(0), torch.empty(0), epoch, bad, all_bad_message(bad))
            bad_slots, donors = donor_slots(good, len(indices), rng)
            out[bad_slots] = out[donors]
            labels[bad_slots] = labels[donors]
        images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
        if self.normalize_in_worker:
            images = normalize(images)
        return Batch(images, torch.from_numpy(labels), epoch, bad)


def _keep_as_is(batch: Any) -> Any:
    """The collate function: workers already return whole batches."""
    return batch


def quiet_opencv_threads() -> None:
    """Shrink OpenCV's thread pool to the calling thread before workers are forked.

    A child forked while OpenCV's pool exists inherits its locks in whatever state the
    parent's pool threads left them, and its first OpenCV call can hang forever. With one
    thread there is no pool to inherit; the workers supply the parallelism (and torch already
    runs each DataLoader worker with one intra-op thread).
    """
    import cv2

    cv2.setNumThreads(1)


class EpochLoader(ABC):
    """What every training loader shares: this rank's steps, the epoch to read, bad-data bookkeeping.

    Subclasses iterate ``(images float32 [B, 3, 112, 112] in [-1, 1], labels int64 [B])`` for
    ``self.epoch`` from batch ``self.start_batch`` on, the batches of ``rank_batches``.
    """

    def __init__(
        self,
        dataset: FaceDataset,
        cfg: DataConfig,
        rank: int,
        world_size: int,
        seed: int,
        device: torch.device | str | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if cfg.batch_size < 1 or cfg.num_workers < 0 or cfg.prefetch < 1:
            raise FacescaleError(
                f"data.batch_size ({cfg.batch_size}) and data.prefetch ({cfg.prefetch}) must be >= 1, "
                f"data.num_workers ({cfg.num_workers}) >= 0"
            )
        self.dataset = dataset
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0
        self.device = torch.device(device) if device is not None else None
        self.steps = steps_per_epoch(len(dataset), cfg.batch_size, world_size)
        if self.steps == 0:
            raise DataError(
                f"{dataset.root}: {len(dataset)} images are fewer than one global batch "
                f"({cfg.batch_size} per rank x {world_size} ranks)"
            )
        self._bad_count: dict[int, int] = {}
        self._bad_first: dict[int, list[str]] = {}
        self._last_epoch = 0

    def __len__(self) -> int:
        return self.steps

    @abstractmethod
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's batches of ``self.epoch``, from ``self.start_batch`` on."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reshuffle: the next iteration uses the permutation of ``(seed, epoch)``.

        ``start_batch`` skips that many batches without reading them (a run resumed mid-epoch);
        a batch's images and augmentations depend only on (seed, epoch, step), not on what ran
        before, so the remaining batches are exactly those of an uninterrupted epoch.
        """
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def _begin_epoch(self) -> int:
        """Forget an earlier pass over this epoch's bad samples; returns the epoch to read."""
        epoch = self.epoch
        self._bad_count.pop(epoch, None)
        self._bad_first.pop(epoch, None)
        self._last_epoch = epoch
        return epoch

    def _record_bad(self, epoch: int, bad: list[str]) -> None:
        """Count skipped samples (``bad_data=skip``) and keep the first few descriptions."""
        if bad:
            self._bad_count[epoch] = self._bad_count.get(epoch, 0) + len(bad)
            listed = self._bad_first.setdefault(epoch, [])
            listed.extend(bad[: _MAX_LISTED - len(listed)])

    def bad_data_report(self) -> str | None:
        """Bad samples skipped in the latest epoch (count and first records), or None if there were none."""
        epoch = self._last_epoch
        lines = []
        count = self._bad_count.get(epoch, 0)
        if count:
            lines.append(f"epoch {epoch}: skipped {count} bad sample(s) on rank {self.rank}; first:")
            lines.extend(f"  {text}" for text in self._bad_first.get(epoch, []))
        if self.dataset.excluded_count:
            lines.append(
                f"{self.dataset.excluded_count} record(s) excluded when the dataset was opened; first:"
            )
            lines.extend(f"  {text}" for text in self.dataset.excluded)
        return "\n".join(lines) if lines else None


class TrainLoader(EpochLoader):
    """Decodes and augments on the CPU in worker processes.

    With ``device`` set, batches travel as uint8 (4x less traffic), are normalised on the device,
    and the next batch is copied while the current one is in use.
    """

    def __init__(
        self,
        dataset: FaceDataset,
        cfg: DataConfig,
        rank: int,
        world_size: int,
        seed: int,
        pin_memory: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(dataset, cfg, rank, world_size, seed, device)
        on_device = self.device is not None and self.device.type != "cpu"
        self.decoder = BatchDecoder(dataset, cfg, rank, seed, normalize_in_worker=not on_device)
        self._pin = pin_memory or on_device
        self._sampler = _EpochSampler(len(dataset), cfg.batch_size, rank, world_size, seed)
        self._loader = self._make_loader()

    def _make_loader(self) -> torch.utils.data.DataLoader:
        workers = self.cfg.num_workers
        return torch.utils.data.DataLoader(
            self.decoder,
            batch_size=None,
            sampler=self._sampler,
            num_workers=workers,
            collate_fn=_keep_as_is,
            # Its own generator: iterating draws a worker base seed, which from the global RNG
            # would shift dropout's stream after a resume restored it (batches need no torch RNG).
            generator=torch.Generator().manual_seed(self.decoder.seed),
            pin_memory=self._pin,
            prefetch_factor=self.cfg.prefetch if workers > 0 else None,
            # Workers live across epochs: no start-up stall (and no re-fork of a large index) at
            # each epoch boundary. The sampler is re-read at each epoch, so set_epoch still applies.
            persistent_workers=workers > 0,
        )

    def _restart_after_error(self, iterator: object) -> None:
        """Stop this loader's workers now (not at interpreter exit) and start afresh next time."""
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._loader = self._make_loader()

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        super().set_epoch(epoch, start_batch)
        self._sampler.epoch = self.epoch
        self._sampler.start_batch = self.start_batch

    def _accept(self, batch: Batch) -> Batch:
        if batch.error is not None:
            raise DataError(batch.error)
        self._record_bad(batch.epoch, batch.bad)
        return batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._begin_epoch()
        if self.cfg.num_workers > 0:
            quiet_opencv_threads()
        iterator = iter(self._loader)
        try:
            yield from self._batches(iterator)
        except BaseException:
            self._restart_after_error(iterator)
            raise

    def _batches(self, iterator: Iterator[Batch]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.device is None or self.device.type == "cpu":
            for batch in iterator:
                batch = self._accept(batch)
                yield batch.images, batch.labels
            return
        # The next batch is copied (and normalised) on a side stream while the current one trains;
        # the compute stream waits for that copy only when it takes the batch.
        copy_stream = torch.cuda.Stream(self.device)
        pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event] | None = None
        for batch in iterator:
            batch = self._accept(batch)
            with torch.cuda.stream(copy_stream):
                images = normalize(batch.images.to(self.device, non_blocking=True))
                labels = batch.labels.to(self.device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(copy_stream)
            if pending is not None:
                yield _on_compute_stream(*pending)
            pending = (images, labels, ready)
        if pending is not None:
            yield _on_compute_stream(*pending)


def _on_compute_stream(
    images: torch.Tensor, labels: torch.Tensor, ready: torch.cuda.Event
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand tensors made on the copy stream to the current stream (wait for them, keep their memory)."""
    compute = torch.cuda.current_stream(images.device)
    compute.wait_event(ready)
    images.record_stream(compute)  # the allocator must not reuse them before compute is done
    labels.record_stream(compute)
    return images, labels


class _EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, step, indices)`` for ``self.epoch``, read each time iteration starts.

    It holds the numbers it needs rather than the TrainLoader: a reference cycle through the
    DataLoader would keep persistent workers alive until the garbage collector happened to run.
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.args = (num_samples, batch_size, rank, world_size, seed)
        self.steps = steps_per_epoch(num_samples, batch_size, world_size)
        self.epoch = 0
        self.start_batch = 0

    def __len__(self) -> int:
        return self.steps - self.start_batch

    def batches(self, epoch: int) -> list[np.ndarray]:
        num_samples, batch_size, rank, world_size, seed = self.args
        return rank_batches(num_samples, batch_size, rank, world_size, seed, epoch)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        batches = self.batches(epoch)
        for step in range(self.start_batch, len(batches)):
            yield epoch, step, batches[step]
