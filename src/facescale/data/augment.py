"""Training augmentations on decoded uint8 RGB faces ``[H, W, 3]``.

insightface trains with a horizontal flip only; the stronger set (low resolution, blur, colour,
grayscale) helps models meant for surveillance-quality faces. Each transform fires with its own
probability from ``AugmentConfig``; all randomness comes from the generator passed in, so a
batch is augmented the same way whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facescale.config import AugmentConfig
from facescale.errors import ConfigError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cv2's RGB2GRAY
DOWNSCALE_RANGE = (0.4, 0.9)  # relative size of the shrunken face
BLUR_SIGMA_RANGE = (0.5, 1.5)  # pixels
JITTER_STRENGTH = 0.25  # each colour factor is drawn from 1 +- this


def hflip(image: np.ndarray) -> np.ndarray:
    return image[:, ::-1]


def downscaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The ``(height, width)`` a face is shrunk to by ``downscale`` (shared with the device path)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Shrink to ``scale`` of the size and back: a low-resolution face of the same shape."""
    h, w = image.shape[:2]
    small_h, small_w = downscaled_size(h, w, scale)
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with ``sigma`` pixels (OpenCV's kernel size and mirrored border)."""
    return cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigmaX=sigma)


def color_jitter(image: np.ndarray, saturation: float, contrast: float, brightness: float) -> np.ndarray:
    """Scale saturation (around the luma), contrast (around the mean luma) and brightness."""
    # The luma in float32, the rest in float64 (the factors are float64 scalars), as this has
    # always been computed: runs resumed across versions see the same pixels.
    saturation, contrast, brightness = np.float64(saturation), np.float64(contrast), np.float64(brightness)
    pixels: np.ndarray = image.astype(np.float32)
    gray = pixels @ LUMA
    pixels = gray[..., None] + (pixels - gray[..., None]) * saturation
    mean = float(gray.mean())
    pixels = (pixels - mean) * contrast + mean
    pixels *= brightness
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def grayscale(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=2)


@dataclass(frozen=True)
class SampleAugment:
    """The augmentation drawn for one sample: which transforms fire and with what strength.

    Drawing is separate from applying so the CPU workers (OpenCV) and the device path
    (``device_augment``, after GPU decoding) apply the very same draws for a given seed.
    """

    downscale: float | None = None  # relative size of the shrunken image
    blur_sigma: float | None = None
    jitter: tuple[float, float, float] | None = None  # saturation, contrast, brightness factors
    grayscale: bool = False
    hflip: bool = False


class Augmenter:
    """Draws and applies the transforms of an ``AugmentConfig`` with a given generator."""

    def __init__(self, cfg: AugmentConfig) -> None:
        for name in ("hflip", "downscale", "blur", "color_jitter", "grayscale"):
            p = getattr(cfg, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"data.augment.{name} is a probability in [0, 1], got {p}")
        self.cfg = cfg

    def draw(self, rng: np.random.Generator) -> SampleAugment:
        """One sample's augmentation; consumes the generator the same way whatever fires."""
        cfg = self.cfg
        fires = rng.random(5) < (cfg.downscale, cfg.blur, cfg.color_jitter, cfg.grayscale, cfg.hflip)
        return SampleAugment(
            downscale=rng.uniform(*DOWNSCALE_RANGE) if fires[0] else None,
            blur_sigma=rng.uniform(*BLUR_SIGMA_RANGE) if fires[1] else None,
            jitter=tuple(rng.uniform(1 - JITTER_STRENGTH, 1 + JITTER_STRENGTH, size=3).tolist())
            if fires[2]
            else None,
            grayscale=bool(fires[3]),
            hflip=bool(fires[4]),
        )

    @staticmethod
    def apply(image: np.ndarray, draw: SampleAugment) -> np.ndarray:
        """``image`` uint8 ``[H, W, 3]`` RGB -> augmented image of the same shape."""
        if draw.downscale is not None:
            image = downscale(image, draw.downscale)
        if draw.blur_sigma is not None:
            image = blur(image, draw.blur_sigma)
        if draw.jitter is not None:
            image = color_jitter(image, *draw.jitter)
        if draw.grayscale:
            image = grayscale(image)
        if draw.hflip:
            image = hflip(image)
        return image

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.draw(rng))
