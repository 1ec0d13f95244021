"""Embed every face of an IJB set: read the loose crop, align it with its 5 landmarks, embed it
and its mirror image.

Reading and aligning run in a thread pool a few batches ahead of the model (OpenCV releases the
GIL), so the model never waits on JPEG decoding when there are cores to spare.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facescale.errors import DataError
from facescale.eval.ijb_layout import IjbFaces
from facescale.eval.verification import EmbedFn, flip_images

ALIGNED_SIZE = 112


@dataclass
class FaceFeatures:
    """Raw model outputs of each face ``[M, D]`` and of its mirror (None when not computed)."""

    features: np.ndarray
    flipped: np.ndarray | None


def load_aligned(image_dir: Path, names: list[str], landmarks: np.ndarray) -> np.ndarray:
    """Read ``image_dir/name`` for each name and warp it onto the ArcFace template.

    ``landmarks``: ``[n, 5, 2]`` pixel coordinates -> uint8 ``[n, 112, 112, 3]`` RGB.
    """
    from facescale.data.image_codec import decode_image
    from facescale.deploy.alignment import align_face

    out = np.empty((len(names), ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    for i, name in enumerate(names):
        path = image_dir / name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read the face image ({e.strerror or e})") from None
        out[i] = align_face(decode_image(data, str(path)), landmarks[i], size=ALIGNED_SIZE)
    return out


def embed_faces(
    embed: EmbedFn,
    image_dir: Path,
    faces: IjbFaces,
    flip: bool = True,
    batch_size: int = 128,
    workers: int = 2,
    progress: Callable[[int], object] | None = None,
) -> FaceFeatures:
    """Raw features of every face in ``faces`` (``[M, D]`` float32), and of the mirror when ``flip``.

    ``progress``, when given, is called with the number of faces done after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    starts = range(0, len(faces), batch_size)
    features: list[np.ndarray] = []
    mirrored: list[np.ndarray] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: collections.deque[Future] = collections.deque()
        next_start = iter(starts)

        def submit_next() -> None:
            start = next(next_start, None)
            if start is not None:
                end = min(start + batch_size, len(faces))
                pending.append(
                    pool.submit(load_aligned, image_dir, faces.names[start:end], faces.landmarks[start:end])
                )

        for _ in range(max(1, workers) + 1):
            submit_next()
        while pending:
            batch = pending.popleft().result()
            submit_next()
            features.append(_checked(embed(batch), len(batch)))
            if flip:
                mirrored.append(_checked(embed(flip_images(batch)), len(batch)))
            if progress is not None:
                progress(len(batch))
    if not features:
        raise DataError(f"{image_dir}: the face list is empty")
    return FaceFeatures(
        features=np.concatenate(features),
        flipped=np.concatenate(mirrored) if flip else None,
    )


def _checked(output: np.ndarray, n: int) -> np.ndarray:
    out = np.asarray(output, dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(f"embed returned shape {out.shape} for a batch of {n} images")
    return out
