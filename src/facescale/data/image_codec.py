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


# Images above this many pixels are refused before decoding: a 6 MB JPEG can declare
# 20000x20000 and decode to 1.2 GB. 64 megapixels (8192 x 8192) is far above any face crop and
# above the photos a phone takes; ``data.max_pixels`` (or ``--max-pixels``) changes it.
DEFAULT_MAX_PIXELS = 8192 * 8192

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame: the size lives here


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's start-of-frame segment, walking the marker segments."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS and pos + 9 <= len(data):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return height, width
        if marker == 0xDA or length < 2:  # scan data before any frame header: give up
            return None
        pos += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` declared in the header of a JPEG, PNG or BMP, without decoding; else None."""
    if data.startswith(_JPEG_START):
        return _jpeg_size(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data.startswith(b"BM") and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(height), abs(width)
    return None


def _check_pixels(height: int, width: int, where: str, max_pixels: int, declared: bool) -> None:
    if max_pixels > 0 and height * width > max_pixels:
        how = "declares" if declared else "decodes to"
        raise DataError(
            f"{where}: image {how} {width}x{height} = {height * width:,} pixels, above the cap of "
            f"{max_pixels:,} (data.max_pixels); refusing to decode it"
        )


def check_encoded(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """The checks that need no decoding (empty data, a truncated JPEG, a size in the header above
    ``max_pixels``; 0 = no cap); DataError naming ``where``.

    The DALI path runs them on the host before images go to the GPU decoder.
    """
    if len(data) == 0:
        raise DataError(f"{where}: empty image (0 bytes)")
    if is_truncated_jpeg(data):
        raise DataError(f"{where}: truncated JPEG ({len(data)} bytes, no end-of-image marker)")
    size = image_size(data)
    if size is not None:
        _check_pixels(size[0], size[1], where, max_pixels, declared=True)


def decode_image(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/BMP bytes to uint8 RGB ``[H, W, 3]``; raise DataError naming ``where``.

    Images above ``max_pixels`` (0 = no cap) are refused from their header, before decoding.
    """
    check_encoded(data, where, max_pixels)
    if simplejpeg is not None and data.startswith(_JPEG_START):
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as e:
            raise DataError(f"{where}: corrupt JPEG ({len(data)} bytes): {e}") from None
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{where}: not a decodable image ({len(data)} bytes, starts {data[:8].hex()})")
    # WebP and TIFF headers are not read above: their size is checked once decoded.
    _check_pixels(bgr.shape[0], bgr.shape[1], where, max_pixels, declared=False)
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
