"""Encoded image bytes <-> uint8 RGB arrays.

Face datasets store JPEGs (sometimes PNGs). OpenCV decodes a damaged JPEG "successfully": it
prints a libjpeg warning and returns a half-grey or scrambled face, which would train on wrong
data silently. JPEGs therefore go through simplejpeg (libjpeg-turbo, as fast as OpenCV) in
strict mode, where every libjpeg warning is an error; other formats through OpenCV. Without
simplejpeg installed, OpenCV decodes JPEGs too and only truncation (no end-of-image marker
after the last scan) is caught. Every failure names ``where`` (file and record).
"""

from __future__ import annotations

import cv2
import numpy as np

from facescale.errors import DataError

try:
    import simplejpeg
except ImportError:  # pragma: no cover - exercised only where the dependency is missing
    simplejpeg = None

_JPEG_START = b"\xff\xd8"
_JPEG_SCAN = b"\xff\xda"
_JPEG_END = b"\xff\xd9"


def is_truncated_jpeg(data: bytes) -> bool:
    """True for a JPEG whose last scan has no end-of-image marker after it.

    Inside entropy-coded data a 0xFF byte is always stuffed (0xFF00), so 0xFFD9 after the
    last start-of-scan can only be the real end marker; a thumbnail in EXIF comes before it.
    """
    if not data.startswith(_JPEG_START):
        return False
    last_scan = data.rfind(_JPEG_SCAN)
    return last_scan < 0 or data.find(_JPEG_END, last_scan + 2) < 0


def check_encoded(data: bytes, where: str) -> None:
    """The checks that need no decoding (empty data, a truncated JPEG); DataError naming ``where``.

    The DALI path runs them on the host before images go to the GPU decoder.
    """
    if len(data) == 0:
        raise DataError(f"{where}: empty image (0 bytes)")
    if is_truncated_jpeg(data):
        raise DataError(f"{where}: truncated JPEG ({len(data)} bytes, no end-of-image marker)")


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG/BMP bytes to uint8 RGB ``[H, W, 3]``; raise DataError naming ``where``."""
    check_encoded(data, where)
    if simplejpeg is not None and data.startswith(_JPEG_START):
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as e:
            raise DataError(f"{where}: corrupt JPEG ({len(data)} bytes): {e}") from None
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{where}: not a decodable image ({len(data)} bytes, starts {data[:8].hex()})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode uint8 RGB ``[H, W, 3]`` (or grey ``[H, W]``) as JPEG bytes."""
    image = np.ascontiguousarray(rgb)
    if image.dtype != np.uint8:
        raise ValueError(f"encode_jpeg needs uint8 pixels, got {image.dtype}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"encode_jpeg needs [H, W, 3] RGB, got shape {image.shape}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {rgb.shape} as JPEG")
    return buf.tobytes()


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode uint8 RGB ``[H, W, 3]`` as lossless PNG bytes."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {rgb.shape} as PNG")
    return buf.tobytes()
