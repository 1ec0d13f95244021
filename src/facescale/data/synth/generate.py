"""Write a SynthFace dataset: insightface RecordIO for training, LFW-style bins for verification.

Layout of ``out_dir``:

- ``train.rec``, ``train.idx``, ``property``: identities ``0 .. num_identities-1``, each with
  ``images_per_identity`` JPEG images, in the insightface layout (``InsightFaceRecWriter``).
- ``val.bin``: ``val_pairs`` pairs on ``val_identities`` identities that never appear in
  training, 10 folds in order, each fold half same-identity pairs then half different.
- ``val_hard.bin`` (optional): the same pair plan, but each pair is a near-frontal clean image
  against a strongly turned, occluded one (the cfp_fp idea).
- ``synthface.json``: counts, seed and parameters.

Every image is a pure function of ``(seed, identity, image index)`` through its own
``SeedSequence``, so the bytes do not depend on the number of workers. Workers render and
encode chunks of identities; the main process only writes, consuming chunks in order with a
bounded number in flight, so memory stays flat however large the dataset.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facescale import atomic
from facescale.data.image_codec import encode_jpeg
from facescale.data.recordio import InsightFaceRecWriter
from facescale.data.synth.identity import sample_identity
from facescale.data.synth.render import render_face
from facescale.data.verification_bin import save_verification_bin
from facescale.errors import FacescaleError

NUM_FOLDS = 10
# Held-out identities live in their own number range: no training identity of any dataset
# generated with the same seed can ever be one of them.
VAL_IDENTITY_BASE = 1 << 40
TRAIN_TAG, _PAIR_PLAN_TAG, _VAL_TAG, _HARD_TAG = 0, 1, 2, 3
_IMAGES_PER_CHUNK = 1000
OUTPUT_FILES = ("train.rec", "train.idx", "property", "val.bin", "val_hard.bin", "synthface.json")


def image_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one image, from the dataset seed and the image's key."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(k) for k in key)]))


@dataclass(frozen=True)
class _TrainChunk:
    seed: int
    first: int  # first identity
    stop: int
    images_per_identity: int
    nuisance: float
    quality: int


@dataclass(frozen=True)
class _PairChunk:
    seed: int
    tag: int  # _VAL_TAG or _HARD_TAG
    first: int  # first pair index
    identities: np.ndarray  # [n, 2] identity numbers of the pairs first .. first+n-1
    nuisance: float
    quality: int


def _render_train(chunk: _TrainChunk) -> list[tuple[int, bytes]]:
    out = []
    for identity in range(chunk.first, chunk.stop):
        traits = sample_identity(chunk.seed, identity)
        for index in range(chunk.images_per_identity):
            rng = image_rng(chunk.seed, TRAIN_TAG, identity, index)
            image, _ = render_face(traits, rng, nuisance=chunk.nuisance)
            out.append((identity, encode_jpeg(image, chunk.quality)))
    return out


def _render_pairs(chunk: _PairChunk) -> list[bytes]:
    out = []
    for k, (a, b) in enumerate(chunk.identities.tolist()):
        pair = chunk.first + k
        for side, identity in enumerate((a, b)):
            rng = image_rng(chunk.seed, chunk.tag, pair, side)
            traits = sample_identity(chunk.seed, identity)
            if chunk.tag == _HARD_TAG:  # a clean near-frontal shot against a turned, occluded one
                strength, hard = (0.5 * chunk.nuisance, False) if side == 0 else (chunk.nuisance, True)
            else:
                strength, hard = chunk.nuisance, False
            image, _ = render_face(traits, rng, nuisance=strength, hard=hard)
            out.append(encode_jpeg(image, chunk.quality))
    return out


def plan_pairs(seed: int, val_identities: int, num_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity numbers ``[num_pairs, 2]`` and ``issame`` ``[num_pairs]`` of the verification pairs.

    10 folds in order; in each fold the first half of the pairs are same-identity pairs and
    the second half pairs of two different identities, all drawn from the held-out range.
    """
    _check_pair_plan(val_identities, num_pairs)
    rng = image_rng(seed, _PAIR_PLAN_TAG)
    half = num_pairs // (2 * NUM_FOLDS)
    issame = np.tile(np.repeat([True, False], half), NUM_FOLDS)
    first = rng.integers(0, val_identities, num_pairs)
    # a different identity: shift by 1 .. val_identities-1 modulo the range
    other = (first + rng.integers(1, val_identities, num_pairs)) % val_identities
    second = np.where(issame, first, other)
    return np.stack([first, second], axis=1) + VAL_IDENTITY_BASE, issame


def _check_pair_plan(val_identities: int, num_pairs: int) -> None:
    if num_pairs % (2 * NUM_FOLDS) != 0:
        raise FacescaleError(
            f"val_pairs must be a multiple of {2 * NUM_FOLDS} (10 balanced folds), got {num_pairs}"
        )
    if val_identities < 2:
        raise FacescaleError(f"val_identities must be at least 2 to form pairs, got {val_identities}")


def _ordered_map(pool: Any, fn: Callable[[Any], Any], tasks: Iterable[Any], window: int) -> Iterator[Any]:
    """``pool.imap(fn, tasks)`` with at most ``window`` tasks submitted but not yet consumed.

    ``Pool.imap`` would queue every task at once and keep every finished result in memory
    while the consumer lags; this keeps memory bounded by ``window`` chunks.
    """
    if pool is None:
        yield from map(fn, tasks)
        return
    pending: deque = deque()
    iterator = iter(tasks)
    for task in iterator:
        pending.append(pool.apply_async(fn, (task,)))
        if len(pending) >= window:
            break
    while pending:
        result = pending.popleft().get()
        task = next(iterator, None)
        if task is not None:
            pending.append(pool.apply_async(fn, (task,)))
        yield result


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend


def _check_arguments(
    num_identities: int, images_per_identity: int, val_identities: int, val_pairs: int, workers: int
) -> None:
    checks = [
        (num_identities >= 1, "num_identities", num_identities, "at least 1"),
        (images_per_identity >= 1, "images_per_identity", images_per_identity, "at least 1"),
        (val_identities >= 0, "val_identities", val_identities, "at least 0"),
        (val_pairs >= 0, "val_pairs", val_pairs, "at least 0"),
        (workers >= 1, "workers", workers, "at least 1"),
    ]
    for ok, name, value, need in checks:
        if not ok:
            raise FacescaleError(f"{name} must be {need}, got {value}")
    if val_pairs:
        _check_pair_plan(val_identities, val_pairs)


def generate_synthface(
    out_dir: str | Path,
    num_identities: int,
    images_per_identity: int,
    val_identities: int,
    val_pairs: int,
    seed: int,
    workers: int,
    *,
    nuisance: float = 1.0,
    hard_pairs: bool = True,
    jpeg_quality: int = 90,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Render and write a SynthFace dataset into ``out_dir`` (layout in the module docstring).

    Files already in ``out_dir`` are replaced only once every new file is complete.
    ``progress`` is called with the number of images just finished (training and pairs).
    Returns the summary written to ``synthface.json`` plus ``seconds`` and ``images_per_second``.
    """
    _check_arguments(num_identities, images_per_identity, val_identities, val_pairs, workers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".synthface-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = time.perf_counter()
    ids_per_chunk = max(1, _IMAGES_PER_CHUNK // images_per_identity)
    train_chunks = [
        _TrainChunk(
            seed,
            first,
            min(first + ids_per_chunk, num_identities),
            images_per_identity,
            nuisance,
            jpeg_quality,
        )
        for first in range(0, num_identities, ids_per_chunk)
    ]
    pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init) if workers > 1 else None
    try:
        with InsightFaceRecWriter(staging) as writer:
            for labelled in _ordered_map(pool, _render_train, train_chunks, window=2 * workers):
                for label, jpeg in labelled:
                    writer.add(label, jpeg)
                if progress is not None:
                    progress(len(labelled))
        bins = []
        if val_pairs:
            identities, issame = plan_pairs(seed, val_identities, val_pairs)
            sets = [("val.bin", _VAL_TAG)] + ([("val_hard.bin", _HARD_TAG)] if hard_pairs else [])
            pairs_per_chunk = max(1, _IMAGES_PER_CHUNK // 2)
            for name, tag in sets:
                chunks = [
                    _PairChunk(seed, tag, k, identities[k : k + pairs_per_chunk], nuisance, jpeg_quality)
                    for k in range(0, val_pairs, pairs_per_chunk)
                ]
                images: list[bytes] = []
                for part in _ordered_map(pool, _render_pairs, chunks, window=2 * workers):
                    images.extend(part)
                    if progress is not None:
                        progress(len(part))
                save_verification_bin(staging / name, images, issame)
                bins.append(name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    summary = {
        "format": "synthface",
        "version": 1,
        "seed": int(seed),
        "num_identities": int(num_identities),
        "images_per_identity": int(images_per_identity),
        "num_images": int(num_identities * images_per_identity),
        "val_identities": int(val_identities) if val_pairs else 0,
        "val_pairs": int(val_pairs),
        "verification_bins": bins,
        "nuisance": float(nuisance),
        "image_size": [112, 112],
        "jpeg_quality": int(jpeg_quality),
        "val_identity_base": VAL_IDENTITY_BASE,
    }
    atomic.write_text_atomic(staging / "synthface.json", json.dumps(summary, indent=2) + "\n")
    _publish(staging, out, ["train.rec", "train.idx", "property", *bins, "synthface.json"])
    seconds = time.perf_counter() - started
    total = num_identities * images_per_identity + 2 * val_pairs * len(bins)
    return {
        **summary,
        "out_dir": str(out),
        "seconds": seconds,
        "images_per_second": total / max(seconds, 1e-9),
    }


def _publish(staging: Path, out: Path, names: list[str]) -> None:
    """Move the finished files over the old ones; drop old outputs this run did not make."""
    for name in names:
        os.replace(staging / name, out / name)
    for name in OUTPUT_FILES:
        if name not in names and (out / name).exists():
            (out / name).unlink()  # e.g. a val_hard.bin from an earlier run with other settings
    shutil.rmtree(staging, ignore_errors=True)
