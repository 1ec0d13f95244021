"""Training augmentations on decoded uint8 RGB faces ``[H, W, 3]``.

insightface trains with a horizontal flip only; the stronger set (low resolution, blur, colour,
grayscale) helps models meant for surveillance-quality faces. Each transform fires with its own
probability from ``AugmentConfig``; all randomness comes from the generator passed in, so a
batch is augmented the same way whatever the number of workers.
"""

from __future__ import annotations

import cv2
import numpy as np

from facescale.config import AugmentConfig
from facescale.errors import ConfigError

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cv2's RGB2GRAY


def hflip(image: np.ndarray) -> np.ndarray:
    return image[:, ::-1]


def downscale(image: np.ndarray, rng: np.random.Generator, low: float = 0.4, high: float = 0.9) -> np.ndarray:
    """Shrink to a random ``low..high`` of the size and back: a low-resolution face of the same shape."""
    h, w = image.shape[:2]
    scale = rng.uniform(low, high)
    small = cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur(image: np.ndarray, rng: np.random.Generator, low: float = 0.5, high: float = 1.5) -> np.ndarray:
    """Gaussian blur with a random sigma (pixels)."""
    return cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigmaX=rng.uniform(low, high))


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    """Random saturation, contrast and brightness, each a factor in ``1 +- strength``."""
    saturation, contrast, brightness = rng.uniform(1 - strength, 1 + strength, size=3)
    pixels = image.astype(np.float32)
    gray = pixels @ _LUMA
    pixels = gray[..., None] + (pixels - gray[..., None]) * saturation
    mean = float(gray.mean())
    pixels = (pixels - mean) * contrast + mean
    pixels *= brightness
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def grayscale(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=2)


class Augmenter:
    """Applies the transforms of an ``AugmentConfig`` to one image with a given generator."""

    def __init__(self, cfg: AugmentConfig) -> None:
        for name in ("hflip", "downscale", "blur", "color_jitter", "grayscale"):
            p = getattr(cfg, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"data.augment.{name} is a probability in [0, 1], got {p}")
        self.cfg = cfg

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` uint8 ``[H, W, 3]`` RGB -> augmented image of the same shape."""
        cfg = self.cfg
        draws = rng.random(5)  # the five coin flips first, whatever happens next
        if draws[0] < cfg.downscale:
            image = downscale(image, rng)
        if draws[1] < cfg.blur:
            image = blur(image, rng)
        if draws[2] < cfg.color_jitter:
            image = color_jitter(image, rng)
        if draws[3] < cfg.grayscale:
            image = grayscale(image)
        if draws[4] < cfg.hflip:
            image = hflip(image)
        return image
