"""Arcface-Paddle's per-image bin: one file per image, listed with labels in ``label.txt``.

A file is ``uint32 keylen | key (the image's file name) | uint32 vallen | pickle of the encoded
image bytes`` (little-endian). The pickle is loaded through the restricted unpickler.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

from facescale import atomic
from facescale.data.safe_pickle import safe_loads
from facescale.errors import DataError

_LENGTH = struct.Struct("<I")
_MAX_KEY = 5000  # Arcface-Paddle refuses longer keys too: a larger value means a wrong file


def unpack_image_bin(data: bytes, where: str) -> tuple[str, bytes]:
    """``(key, encoded image)`` from the bytes of one per-image bin file."""
    if len(data) < 4:
        raise DataError(f"{where}: per-image bin of {len(data)} bytes has no key length")
    (key_length,) = _LENGTH.unpack_from(data, 0)
    if key_length > _MAX_KEY or 8 + key_length > len(data):
        raise DataError(f"{where}: key length {key_length} does not fit a {len(data)}-byte per-image bin")
    key = data[4 : 4 + key_length].decode("utf-8", errors="replace")
    (value_length,) = _LENGTH.unpack_from(data, 4 + key_length)
    start = 8 + key_length
    if start + value_length > len(data):
        raise DataError(
            f"{where}: truncated per-image bin: value of {value_length} bytes announced, "
            f"{len(data) - start} present"
        )
    image = safe_loads(data[start : start + value_length], where)
    if isinstance(image, bytearray):
        image = bytes(image)
    if not isinstance(image, bytes):
        raise DataError(f"{where}: the pickled value is a {type(image).__name__}, not encoded image bytes")
    return key, image


def pack_image_bin(key: str, image: bytes) -> bytes:
    """The bytes of a per-image bin holding ``image`` under ``key`` (as Arcface-Paddle writes it)."""
    name = key.encode("utf-8")
    value = pickle.dumps(bytes(image), protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(name)) + name + _LENGTH.pack(len(value)) + value


def read_image_bin(path: str | Path) -> tuple[str, bytes]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return unpack_image_bin(data, str(path))


def write_image_bin(path: str | Path, key: str, image: bytes) -> None:
    atomic.write_bytes_atomic(path, pack_image_bin(key, image))
