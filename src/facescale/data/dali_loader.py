"""Training batches decoded on the GPU by NVIDIA DALI (``data.dali=true``, the ``dali`` extra).

The host does what is cheap and must stay exact: it reads this rank's records in the order of
``rank_batches`` (the same shards and shuffles as the CPU loader), runs the checks that need no
decoding (empty image, truncated JPEG, unreadable record) and draws each sample's augmentation
from the same ``(seed, epoch, rank, step)`` generator as the CPU workers. DALI decodes the JPEGs
(nvJPEG and the hardware decoder: ``mixed`` device) and resizes off-size images to 112x112; the
augmentations and normalisation then run on the batch in torch on the GPU (``device_augment``).
Without a GPU device DALI decodes on the CPU, which is how the tests run it. Records are read
on the training thread when DALI asks for a batch (a ``pread`` per record: fast on local disks;
on slow network storage the CPU loader's worker processes hide read latency better).

A GPU decoder is not a strict validator. When DALI reports a decode error, each record of the
batches it was working on is decoded alone by the same DALI decoder to find the ones it refuses;
those are bad from then on, whichever batch they fall in, so what is skipped does not depend on
the prefetch depth or on where a run was resumed. The pipeline is rebuilt and resumes at the
failed batch, so no batch is lost or repeated, and a bad record stops training (``bad_data=fail``)
or is skipped (``skip``) when its batch is reached, as in the CPU loader. A JPEG damaged inside
its entropy-coded data may decode on the GPU without an error; ``facescale data verify`` finds
those once, before training.
"""

from __future__ import annotations

import functools
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
from facescale.data.image_codec import check_encoded, decode_image, encode_jpeg
from facescale.data.loader import IMAGE_SIZE, EpochLoader, all_bad_message, donor_slots, rank_batches
from facescale.errors import DataError, FacescaleError
from facescale.models.preprocess import normalize

INSTALL_HINT = (
    "data.dali=true needs NVIDIA DALI, which is not installed: install the extra with "
    "`pip install 'facescale[dali]'` (CUDA 12; for CUDA 13 `pip install 'nvidia-dali-cuda130>=2'`), "
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
    error: str | None = None  # bad_data=fail: the problem to stop with when this batch is reached


class _Feed:
    """The batch bookkeeping: the plans DALI pulls, in order, and those it holds but has not returned.

    DALI pulls ``prefetch`` batches ahead of the one it returns, so its outputs come back in the
    order of ``in_flight`` and a failure concerns the oldest batch there. ``start`` hands it a
    fresh sequence of plans (a new epoch, or the failed batch onwards after a restart).
    """

    def __init__(self) -> None:
        self.in_flight: deque[_Plan] = deque()
        self._plans: Iterator[_Plan] = iter(())

    def start(self, plans: Iterator[_Plan]) -> None:
        self.in_flight.clear()
        self._plans = plans

    def pull(self) -> list[np.ndarray]:
        """DALI's source: the next batch's encoded images (StopIteration ends the epoch for DALI too)."""
        plan = next(self._plans)
        self.in_flight.append(plan)
        return plan.encoded

    def returned(self) -> _Plan:
        """The plan of the batch DALI has just returned."""
        return self.in_flight.popleft()


class DaliTrainLoader(EpochLoader):
    """Iterates ``(images float32 [B, 3, 112, 112] in [-1, 1], labels int64 [B])`` on ``device``.

    ``data.num_workers`` sets DALI's CPU threads and ``data.prefetch`` how many batches it
    decodes ahead. (Pinned host memory, an option of the CPU loader, does not apply: batches
    are decoded straight into device memory.)

    One batch's path: ``_plan`` reads its records and draws its augmentations on the host;
    DALI pulls the plan from ``_Feed.pull`` and decodes it; ``pipeline.run`` returns the images
    and ``_Feed.returned`` the matching plan; ``_finish`` augments and normalises them on the
    device. When DALI fails, ``_find_refused_records`` marks the records it refuses and ``_start``
    hands a fresh pipeline the batches from the failed one on, re-planned: the only loop is the
    one in ``__iter__``.
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
        self._feed = _Feed()
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
                bad.append(str(e))
                if not self.skip_bad:
                    break  # the CPU loader stops at the first bad sample too
                continue
            draws[slot] = self.augmenter.draw(rng)
        indices = indices.copy()
        labels = self.dataset.labels[indices].copy()
        plan = _Plan(step, indices, encoded, labels, draws, bad)  # type: ignore[arg-type]
        if not bad:
            return plan
        good = [slot for slot, data in enumerate(encoded) if data is not None]
        if not self.skip_bad or not good:
            # The batch will stop training when it is reached (after the batches before it are
            # delivered). DALI still decodes the records before the bad one, in case it refuses
            # one of those (the CPU loader would name the first bad slot); stand-ins fill the rest.
            plan.error = bad[0] if not self.skip_bad else all_bad_message(bad)
            plan.encoded = [data if data is not None else _stand_in_jpeg() for data in encoded]
            plan.draws = [draw or _NO_AUGMENT for draw in draws]
            return plan
        bad_slots, donors = donor_slots(good, len(indices), rng)
        for slot, donor in zip(bad_slots, donors, strict=True):
            encoded[slot], draws[slot] = encoded[donor], draws[donor]
            indices[slot], labels[slot] = indices[donor], labels[donor]
        return plan

    def _decode_graph(self, encoded: Any) -> Any:
        """The DALI ops from encoded bytes to uint8 ``[3, 112, 112]`` images (on the GPU if any)."""
        fn, types = self._dali.fn, self._dali.types
        images = fn.decoders.image(encoded, device="mixed" if self.on_gpu else "cpu", output_type=types.RGB)
        # Identity for images already 112x112 (the usual case); others are resampled.
        images = fn.resize(images, size=list(IMAGE_SIZE), antialias=True)
        return fn.transpose(images, perm=[2, 0, 1])

    def _build_pipeline(self) -> Any:
        """A DALI pipeline pulling ``self._feed`` in order, decoding to uint8 ``[B, 3, 112, 112]``."""
        dali = self._dali

        @dali.pipeline_def(
            batch_size=self.cfg.batch_size,
            num_threads=max(1, self.cfg.num_workers),
            device_id=self._device_index(),
            prefetch_queue_depth=self.cfg.prefetch,
            exec_dynamic=True,  # outputs can be bound to torch's stream (DALI 2's default executor)
        )
        def decode() -> Any:
            encoded = dali.fn.external_source(
                source=self._feed.pull, batch=True, dtype=dali.types.UINT8, ndim=1
            )
            return self._decode_graph(encoded)

        pipeline = decode()
        pipeline.build()
        return pipeline

    def _build_checker(self) -> Any:
        """A one-image pipeline with the same decoder, fed by hand, to test records one by one."""
        dali = self._dali

        @dali.pipeline_def(
            batch_size=1, num_threads=1, device_id=self._device_index(), prefetch_queue_depth=1
        )
        def check() -> Any:
            return self._decode_graph(dali.fn.external_source(name="encoded", dtype=dali.types.UINT8, ndim=1))

        checker = check()
        checker.build()
        return checker

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
        if self.start_batch >= self.steps:
            return
        self._start(epoch, batches, self.start_batch)
        stream = torch.cuda.current_stream(self.device) if self.on_gpu else None
        while True:
            failed_step = None
            try:
                # On a GPU the outputs are bound to torch's stream: DALI reuses their buffers
                # only after the copy queued on that stream in ``_finish``.
                (decoded,) = self._pipeline.run(stream)
            except StopIteration:  # the feed ran out: the epoch is complete
                self._pipeline.reset()
                self._pipeline_idle = True
                return
            except RuntimeError as error:
                # The failed batch is the oldest in flight; every batch before it was returned.
                failed_step = self._feed.in_flight[0].step
                self._find_refused_records(error)
            if failed_step is not None:
                # Restarted outside the handler: its traceback holds the failed pipeline, which
                # must be freed before the next one is built. Nothing is lost or repeated.
                self._start(epoch, batches, failed_step)
                continue
            plan = self._feed.returned()
            if plan.error is not None:
                raise DataError(plan.error)
            yield self._finish(decoded, plan, epoch, stream)

    def _start(self, epoch: int, batches: list[np.ndarray], step: int) -> None:
        """Feed the plans of ``batches[step:]`` to a pipeline ready to decode them."""
        self._feed.start(self._plan(epoch, k, batches[k]) for k in range(step, self.steps))
        # A pipeline that ended its last epoch cleanly is reused; one left part way (a loop that
        # stopped early) still holds decoded batches ahead, and one that failed holds an error:
        # those are replaced.
        if not self._pipeline_idle:
            self._pipeline = None  # free its buffers before building the next one
            self._pipeline = self._build_pipeline()
        self._pipeline_idle = False

    def _finish(
        self, decoded: Any, plan: _Plan, epoch: int, stream: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DALI's uint8 batch -> augmented, normalised float images on the device, with labels."""
        from nvidia.dali.plugin.pytorch import feed_ndarray

        device = self.device if self.on_gpu else torch.device("cpu")
        images = torch.empty((len(plan.indices), 3, *IMAGE_SIZE), dtype=torch.uint8, device=device)
        feed_ndarray(decoded.as_tensor(), images, cuda_stream=stream)
        if any(draw != _NO_AUGMENT for draw in plan.draws):
            images = augment_batch(images, plan.draws)
        self._record_bad(epoch, plan.bad)
        labels = torch.from_numpy(plan.labels).to(device, non_blocking=True)
        return normalize(images), labels

    def _find_refused_records(self, error: RuntimeError) -> None:
        """After DALI failed on a batch: decode each record in flight alone to find those it refuses.

        They go to ``_known_bad`` (named with the strict host decoder's diagnosis when it has one),
        and the re-planned batches treat them as bad. A failure that is no data problem (the
        decoder refuses even a plain JPEG, or no record alone) is raised with the records in flight.
        """
        checker = self._build_checker()
        names = ", ".join(self.dataset.describe(i) for i in self._feed.in_flight[0].indices[:3].tolist())
        in_flight = f"DALI failed on a batch holding {names}, ..."
        if _refusal(checker, _stand_in_jpeg()) is not None:
            raise FacescaleError(
                f"{in_flight} and cannot decode a plain JPEG either: {_dali_reason(error)}"
            ) from error
        refused: dict[int, str] = {}
        for plan in self._feed.in_flight:
            for slot, i in enumerate(plan.indices.tolist()):
                if i in self._known_bad or i in refused or plan.encoded[slot] is _stand_in_jpeg():
                    continue
                refusal = _refusal(checker, plan.encoded[slot])
                if refusal is not None:
                    refused[i] = self._diagnose(i, plan.encoded[slot], refusal)
                    checker = self._build_checker()  # DALI: "pipeline object is no longer valid"
        if not refused:
            raise FacescaleError(
                f"{in_flight} but decodes each of its records alone, so no bad record explains it: "
                f"{_dali_reason(error)}"
            ) from error
        self._known_bad.update(refused)

    def _diagnose(self, i: int, encoded: np.ndarray, error: RuntimeError) -> str:
        """Why record ``i`` is bad: the strict host decoder's words, else DALI's."""
        try:
            decode_image(encoded.tobytes(), self.dataset.describe(i))
        except DataError as e:
            return f"{e} (refused by the DALI decoder)"
        return f"{self.dataset.describe(i)}: the DALI decoder refuses it: {_dali_reason(error)}"


def _refusal(checker: Any, encoded: np.ndarray) -> RuntimeError | None:
    """The error of the one-image ``checker`` pipeline on ``encoded``; None if it decodes."""
    try:
        checker.feed_input("encoded", [encoded])
        checker.run()
    except RuntimeError as e:
        return e
    return None


def _dali_reason(error: BaseException) -> str:
    """The informative line of a DALI error (it follows "encountered:"), else its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "encountered:" in lines:
        after = lines[lines.index("encountered:") + 1 :]
        if after:
            return after[0]
    return lines[0] if lines else type(error).__name__


@functools.cache
def _stand_in_jpeg() -> np.ndarray:
    """A decodable grey face-sized JPEG: fills a batch whose every sample is bad (never yielded)."""
    return np.frombuffer(encode_jpeg(np.full((*IMAGE_SIZE, 3), 128, dtype=np.uint8)), dtype=np.uint8)


_NO_AUGMENT = SampleAugment()
