"""Training batches decoded on the GPU by NVIDIA DALI (``data.dali=true``, the ``dali`` extra).

The host does what is cheap and must stay exact: it reads this rank's records in the order of
``rank_batches`` (the same shards and shuffles as the CPU loader), runs the checks that need no
decoding (empty image, truncated JPEG, unreadable record) and draws each sample's augmentation
from the same ``(seed, epoch, rank, step)`` generator as the CPU workers. DALI decodes the JPEGs
(nvJPEG and the hardware decoder: ``mixed`` device) and resizes off-size images to 112x112; the
augmentations and normalisation then run on the batch in torch on the GPU (``device_augment``).
Without a GPU device DALI decodes on the CPU, which is how the tests run it.

A GPU decoder is not a strict validator. When DALI reports a decode error, the batches it was
working on are decoded again strictly on the host to find the record at fault, which then stops
training with its name (``bad_data=fail``) or is skipped from then on (``skip``): the pipeline is
rebuilt and resumes at the failed batch, so no batch is lost or repeated. A JPEG damaged inside
its entropy-coded data may decode on the GPU without an error; ``facescale data verify`` finds
those once, before training.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facescale.config import DataConfig
from facescale.data.augment import Augmenter, SampleAugment
from facescale.data.device_augment import augment_batch
from facescale.data.face_dataset import FaceDataset
from facescale.data.image_codec import check_encoded, decode_image
from facescale.data.loader import IMAGE_SIZE, EpochLoader, rank_batches
from facescale.errors import DataError, FacescaleError
from facescale.models.preprocess import normalize

INSTALL_HINT = (
    "data.dali=true needs NVIDIA DALI, which is not installed: install the extra with "
    "`pip install 'facescale[dali]'` (CUDA 12; for CUDA 13 `pip install nvidia-dali-cuda130`), "
    "or set data.dali=false"
)


def import_dali() -> Any:
    """The ``nvidia.dali`` module, or a FacescaleError saying how to install it."""
    try:
        import nvidia.dali
        import nvidia.dali.plugin.pytorch  # feed_ndarray, used when batches are handed to torch
    except ImportError:
        raise FacescaleError(INSTALL_HINT) from None
    return nvidia.dali


@dataclass
class _Plan:
    """One batch as prepared on the host: what DALI decodes and what the device does after."""

    step: int
    indices: np.ndarray  # dataset index per slot, after bad samples were replaced
    encoded: list[np.ndarray]
    labels: np.ndarray
    draws: list[SampleAugment]
    bad: list[str]  # samples skipped in this batch


class DaliTrainLoader(EpochLoader):
    """Iterates ``(images float32 [B, 3, 112, 112] in [-1, 1], labels int64 [B])`` on ``device``.

    ``data.num_workers`` sets DALI's CPU threads and ``data.prefetch`` how many batches it
    decodes ahead.
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
        super().__init__(dataset, cfg, rank, world_size, seed, device)
        self._dali = import_dali()
        self.augmenter = Augmenter(cfg.augment)
        self.skip_bad = cfg.bad_data == "skip"
        self.on_gpu = self.device is not None and self.device.type == "cuda"
        self._known_bad: dict[int, str] = {}  # dataset index -> problem, found by earlier batches
        self._pending: deque[_Plan] = deque()  # batches handed to DALI, not yet returned by it
        self._plans: Iterator[_Plan] = iter(())  # what DALI pulls next
        self._pipeline: Any = None
        self._pipeline_idle = False  # True when it ended an epoch cleanly and can start another

    def _read(self, i: int) -> np.ndarray:
        """Record ``i``'s encoded bytes after the host-side checks (DataError names the record)."""
        if i in self._known_bad:
            raise DataError(self._known_bad[i])
        data = self.dataset.read(i)
        check_encoded(data, self.dataset.describe(i))
        return np.frombuffer(data, dtype=np.uint8)

    def _plan(self, epoch: int, step: int, indices: np.ndarray) -> _Plan:
        """Read a batch and draw its augmentations, consuming the generator as the CPU workers do."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, step])
        encoded: list[np.ndarray | None] = [None] * len(indices)
        draws: list[SampleAugment | None] = [None] * len(indices)
        bad: list[str] = []
        for slot, i in enumerate(indices.tolist()):
            try:
                encoded[slot] = self._read(i)
            except DataError as e:
                if not self.skip_bad:
                    raise
                bad.append(str(e))
                continue
            draws[slot] = self.augmenter.draw(rng)
        indices = indices.copy()
        labels = self.dataset.labels[indices].copy()
        if bad:
            good = [slot for slot, data in enumerate(encoded) if data is not None]
            if not good:
                raise DataError(f"every sample of a batch is bad: {bad[0]}")
            bad_slots = [slot for slot, data in enumerate(encoded) if data is None]
            # A bad sample becomes a copy of a good one of the same batch, as in the CPU loader:
            # batches keep their size, so every rank runs the same steps.
            for slot, donor in zip(bad_slots, rng.choice(good, size=len(bad_slots)).tolist(), strict=True):
                encoded[slot], draws[slot] = encoded[donor], draws[donor]
                indices[slot], labels[slot] = indices[donor], labels[donor]
        return _Plan(step, indices, encoded, labels, draws, bad)  # type: ignore[arg-type]

    def _build_pipeline(self) -> Any:
        """A DALI pipeline pulling ``self._plans`` in order, decoding to uint8 ``[B, 3, 112, 112]``."""
        dali = self._dali
        fn, types = dali.fn, dali.types

        def next_batch() -> list[np.ndarray]:
            plan = next(self._plans)  # StopIteration ends the epoch for DALI too
            self._pending.append(plan)
            return plan.encoded

        @dali.pipeline_def(
            batch_size=self.cfg.batch_size,
            num_threads=max(1, self.cfg.num_workers),
            device_id=self._device_index(),
            prefetch_queue_depth=self.cfg.prefetch,
        )
        def decode() -> Any:
            encoded = fn.external_source(source=next_batch, batch=True, dtype=types.UINT8, ndim=1)
            images = fn.decoders.image(
                encoded, device="mixed" if self.on_gpu else "cpu", output_type=types.RGB
            )
            # Identity for images already 112x112 (the usual case); others are resampled.
            images = fn.resize(images, size=list(IMAGE_SIZE), antialias=True)
            return fn.transpose(images, perm=[2, 0, 1])

        pipeline = decode()
        pipeline.build()
        return pipeline

    def _device_index(self) -> int | None:
        if not self.on_gpu:
            return None
        assert self.device is not None
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._begin_epoch()
        batches = rank_batches(
            len(self.dataset), self.cfg.batch_size, self.rank, self.world_size, self.seed, epoch
        )
        step = self.start_batch
        while step < self.steps:
            self._pending.clear()
            self._plans = (self._plan(epoch, k, batches[k]) for k in range(step, self.steps))
            # A pipeline that ended its last epoch cleanly is reused; one left part way (a loop
            # that stopped early) still holds decoded batches ahead, and one that failed holds
            # an error: those are replaced.
            if not self._pipeline_idle:
                self._pipeline = None  # free its buffers before building the next one
                self._pipeline = self._build_pipeline()
            self._pipeline_idle = False
            while True:
                try:
                    (decoded,) = self._pipeline.run()
                except StopIteration:
                    self._pipeline.reset()
                    self._pipeline_idle = True
                    return
                except RuntimeError as error:
                    self._find_bad_records(error)
                    step = self._pending[0].step  # restart at the failed batch
                    break
                plan = self._pending.popleft()
                yield self._finish(decoded, plan, epoch)
                step = plan.step + 1

    def _finish(self, decoded: Any, plan: _Plan, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """DALI's uint8 batch -> augmented, normalised float images on the device, with labels."""
        from nvidia.dali.plugin.pytorch import feed_ndarray

        device = self.device if self.on_gpu else torch.device("cpu")
        images = torch.empty((len(plan.indices), 3, *IMAGE_SIZE), dtype=torch.uint8, device=device)
        stream = torch.cuda.current_stream(device) if self.on_gpu else None
        feed_ndarray(decoded.as_tensor(), images, cuda_stream=stream)
        if any(draw != _NO_AUGMENT for draw in plan.draws):
            images = augment_batch(images, plan.draws)
        self._record_bad(epoch, plan.bad)
        labels = torch.from_numpy(plan.labels).to(device, non_blocking=True)
        return normalize(images), labels

    def _find_bad_records(self, error: RuntimeError) -> None:
        """After DALI failed: decode the batches in flight strictly on the host to name the record.

        ``fail``: DataError naming it. ``skip``: remember it, so the rebuilt pipeline replaces it.
        Nothing found means DALI failed for another reason, and its error is raised as it is.
        """
        found = False
        for plan in self._pending:
            for slot, i in enumerate(plan.indices.tolist()):
                if i in self._known_bad:
                    continue
                try:
                    decode_image(plan.encoded[slot].tobytes(), self.dataset.describe(i))
                except DataError as e:
                    if not self.skip_bad:
                        raise DataError(f"{e} (found after the DALI decoder failed)") from None
                    self._known_bad[i] = str(e)
                    found = True
        if not found:
            raise error


_NO_AUGMENT = SampleAugment()
