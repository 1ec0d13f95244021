"""Write a whole output folder or nothing: converters build into a fresh hidden sibling and
rename it into place at the end.

Writing straight into a folder that holds an earlier conversion mixes the two when the new one
fails part way (old labels pointing at new faces) and nothing notices. Here the target is
refused when it already holds files, unless ``overwrite`` is given; the new content is built
in ``.NAME.partial-PID`` beside it, and only a complete one replaces the target (the old one is
moved aside first and removed after), so a failure or a kill leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from facescale.atomic import fsync_path
from facescale.errors import FacescaleError


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir())
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise FacescaleError(f"{folder}: exists and is not a folder; choose another output") from None


@contextlib.contextmanager
def staged_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it becomes ``out``, on error it is removed.

    Raises FacescaleError before anything is written when ``out`` holds files and not ``overwrite``.
    """
    target = Path(out)
    present = _entries(target)
    if present and not overwrite:
        shown = ", ".join(present[:3]) + (" ..." if len(present) > 3 else "")
        raise FacescaleError(
            f"{target}: already holds {len(present)} entr{'y' if len(present) == 1 else 'ies'} ({shown}), "
            "perhaps an earlier conversion; choose an empty folder or pass --overwrite to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    fsync_path(target.parent)
    shutil.rmtree(old, ignore_errors=True)
