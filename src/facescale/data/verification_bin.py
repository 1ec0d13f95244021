"""LFW-style verification bins (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin`` ...).

A bin is a pickle of ``(list of 2N encoded images, list of N bools)``; pair i is images 2i and
2i+1. The published ones are Python 2 pickles whose ``str`` items load as ``bytes`` only with
``encoding="bytes"``. They load through ``safe_pickle`` so a crafted bin cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facescale import atomic
from facescale.data.image_codec import decode_image
from facescale.data.safe_pickle import safe_load_file
from facescale.errors import DataError


@dataclass
class VerificationPairs:
    """A verification set: ``images`` holds 2N encoded images, ``issame`` [N] bool."""

    name: str
    images: list[bytes]
    issame: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.issame)

    def decode(self) -> np.ndarray:
        """All images decoded: uint8 ``[2N, H, W, 3]`` RGB (every image must have the same size)."""
        if not self.images:
            raise DataError(f"{self.source or self.name}: the verification set holds no images")
        first = decode_image(self.images[0], f"{self.source} image 0")
        out = np.empty((len(self.images), *first.shape), dtype=np.uint8)
        out[0] = first
        for i in range(1, len(self.images)):
            image = decode_image(self.images[i], f"{self.source} image {i}")
            if image.shape != first.shape:
                raise DataError(
                    f"{self.source} image {i}: shape {image.shape} differs from image 0's {first.shape}"
                )
            out[i] = image
        return out


def _as_bytes(item: object, where: str) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    if isinstance(item, str):  # a Python 2 str unpickled as text: the bytes come back through latin-1
        return item.encode("latin1")
    raise DataError(f"{where}: expected encoded image bytes, found {type(item).__name__}")


def load_verification_bin(path: str | Path) -> VerificationPairs:
    """Read a verification bin (Python 2 or 3 pickle); DataError naming the file if malformed."""
    path = Path(path)
    value = safe_load_file(path, encoding="bytes")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise DataError(f"{path}: expected a pickled (images, issame) pair, found {type(value).__name__}")
    raw_images, raw_issame = value
    if not isinstance(raw_images, (list, tuple)):
        raise DataError(f"{path}: the image list is a {type(raw_images).__name__}")
    images = [_as_bytes(item, f"{path} image {i}") for i, item in enumerate(raw_images)]
    try:
        issame = np.asarray(raw_issame).astype(bool).ravel()
    except (TypeError, ValueError):
        raise DataError(f"{path}: the pair labels are not booleans") from None
    if len(images) != 2 * len(issame):
        raise DataError(f"{path}: {len(images)} images for {len(issame)} pairs (expected {2 * len(issame)})")
    return VerificationPairs(name=path.stem, images=images, issame=issame, source=str(path))


def save_verification_bin(
    path: str | Path, images: Sequence[bytes], issame: Sequence[bool] | np.ndarray
) -> None:
    """Write ``(images, issame)`` as the published bins hold them (atomically)."""
    flags = [bool(x) for x in np.asarray(issame).ravel()]
    if len(images) != 2 * len(flags):
        raise ValueError(f"{len(images)} images for {len(flags)} pairs (expected {2 * len(flags)})")
    data = pickle.dumps(([bytes(b) for b in images], flags), protocol=pickle.HIGHEST_PROTOCOL)
    atomic.write_bytes_atomic(path, data)
