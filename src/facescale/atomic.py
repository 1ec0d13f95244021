"""Crash-safe file writes, used by every part that writes files.

Each output goes to a temporary sibling, is fsynced, renamed over the final name (atomic within
one file system) and the folder is fsynced, so a reader sees the old file or the complete new
one, never a torn one, even if the process is killed or the machine loses power mid-write.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temp_name(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_path(path: str | Path) -> None:
    """fsync a file, or a folder (which makes a rename inside it durable)."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(temp: Path, final: Path) -> None:
    """fsync ``temp``, rename it to ``final`` and fsync the folder."""
    fsync_path(temp)
    os.replace(temp, final)
    fsync_path(final.parent)


def discard(temp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is deleted."""
    final = Path(path)
    temp = temp_name(final)
    try:
        yield temp
        commit(temp, final)
    except BaseException:
        discard(temp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as temp:
        temp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` so the file on disk appears whole or not at all."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())
