"""A picture of a SynthFace seed: identities in rows, their images along each row.

The first column is each identity's clean frontal portrait; the others are training-style
images with nuisances, rendered exactly as ``generate_synthface`` renders them (same RNG
keys), so the preview shows the dataset a seed produces, not a look-alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facescale import atomic
from facescale.data.image_codec import encode_png
from facescale.data.synth.generate import TRAIN_TAG, image_rng
from facescale.data.synth.identity import sample_identity
from facescale.data.synth.render import render_face, render_frontal

_GAP = 2  # pixels between tiles


def preview_grid(
    seed: int = 0, identities: int = 8, images: int = 8, nuisance: float = 1.0, first_identity: int = 0
) -> np.ndarray:
    """uint8 RGB grid ``[rows * 114 - 2, (images + 1) * 114 - 2, 3]`` of 112x112 tiles."""
    if identities < 1 or images < 1:
        raise ValueError(f"a preview needs at least one identity and one image, got {identities} x {images}")
    tile = 112 + _GAP
    grid = np.full((identities * tile - _GAP, (images + 1) * tile - _GAP, 3), 255, dtype=np.uint8)
    for row in range(identities):
        identity = first_identity + row
        traits = sample_identity(seed, identity)
        tiles = [render_frontal(traits)]
        for index in range(images):
            tiles.append(
                render_face(traits, image_rng(seed, TRAIN_TAG, identity, index), nuisance=nuisance)[0]
            )
        for col, image in enumerate(tiles):
            grid[row * tile : row * tile + 112, col * tile : col * tile + 112] = image
    return grid


def write_preview(
    path: str | Path, seed: int = 0, identities: int = 8, images: int = 8, nuisance: float = 1.0
) -> None:
    """Write ``preview_grid(...)`` to ``path`` as a PNG (atomically)."""
    atomic.write_bytes_atomic(path, encode_png(preview_grid(seed, identities, images, nuisance)))
