"""Verification sets by name (``lfw``, ``cfp_fp``, ...) or by path to any LFW-style bin."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facescale.errors import DataError, FacescaleError

STANDARD_SETS: tuple[str, ...] = ("lfw", "cfp_fp", "cfp_ff", "agedb_30", "calfw", "cplfw", "vgg2_fp")


@dataclass
class VerificationSet:
    """A decoded verification set: ``images`` uint8 ``[2N, H, W, 3]`` RGB, ``issame`` ``[N]`` bool."""

    name: str
    path: Path
    images: np.ndarray
    issame: np.ndarray


def resolve_set(name_or_path: str, bin_dir: str | Path | None = None) -> Path:
    """The bin file for ``name_or_path``.

    A path to an existing file is used as is. A bare name (``lfw`` or ``lfw.bin``) is looked up as
    ``<bin_dir>/<name>.bin``. A FacescaleError names what was looked for when nothing is found.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    stem = candidate.name[:-4] if candidate.name.endswith(".bin") else candidate.name
    looks_like_name = candidate.parent == Path(".") and stem
    if looks_like_name and bin_dir is not None:
        path = Path(bin_dir) / f"{stem}.bin"
        if path.is_file():
            return path
        known = sorted(p.stem for p in Path(bin_dir).glob("*.bin")) if Path(bin_dir).is_dir() else []
        hint = f"; bins there: {', '.join(known)}" if known else ""
        raise FacescaleError(f"verification set {name_or_path!r}: {path} does not exist{hint}")
    if looks_like_name and stem in STANDARD_SETS:
        raise FacescaleError(
            f"verification set {name_or_path!r}: no file {candidate} here; "
            f"pass --bin-dir DIR holding {stem}.bin, or the path to the bin"
        )
    raise FacescaleError(f"verification set {name_or_path!r}: file {candidate} does not exist")


def load_set(name_or_path: str, bin_dir: str | Path | None = None) -> VerificationSet:
    """Resolve, read and decode one verification set; DataError naming the file when it is bad."""
    from facescale.data.verification_bin import load_verification_bin

    path = resolve_set(name_or_path, bin_dir)
    pairs = load_verification_bin(path)
    if len(pairs.issame) < 10:
        raise DataError(f"{path}: {len(pairs.issame)} pairs; the 10-fold protocol needs at least 10")
    name = path.stem if path.suffix == ".bin" else path.name
    return VerificationSet(name=name, path=path, images=pairs.decode(), issame=np.asarray(pairs.issame))
