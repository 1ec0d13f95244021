"""Reading a gallery file and refusing any file that is not exactly what ``Gallery.save`` writes.

A gallery is a safetensors file (a JSON header and raw little-endian arrays: loading runs no
code). A damaged or crafted one must fail with one line naming the file and the fault, never
with a traceback or, worse, a gallery that answers wrongly: bad JSON, a missing or mistyped key,
``names`` that is not a list of distinct strings, arrays whose shapes disagree with the names or
the embedding size, NaN or infinite vectors, an index entry that does not fit its arrays.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from facescale.deploy.gallery_index import IndexSpec
from facescale.errors import DataError, FacescaleError

GALLERY_KEY = "facescale.gallery"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: exact search only, no index entry
REQUIRED_TENSORS = {"sums", "counts"}
IVF_TENSORS = {"ivf_centres", "ivf_lists"}
EMBEDDER_KEYS = ("name", "fingerprint", "embedding_size")


def _require(header: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in header:
        raise DataError(f"{where}: the gallery header has no {key!r} entry")
    value = header[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(
            f"{where}: gallery entry {key!r} should be {names}, got {type(value).__name__} {value!r:.60}"
        )
    return value


def _read_safetensors(path: Path) -> tuple[str | None, dict[str, np.ndarray]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = (f.metadata() or {}).get(GALLERY_KEY)
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # safetensors' own errors name no file
        raise DataError(f"{path} is not a facescale gallery (safetensors): {e}") from None
    return meta, tensors


def _check_tensor(tensors: dict[str, np.ndarray], key: str, dtype: type, ndim: int, where: str) -> np.ndarray:
    array = tensors[key]
    if array.dtype != dtype or array.ndim != ndim:
        raise DataError(
            f"{where}: gallery array {key!r} is {array.dtype} with shape {list(array.shape)}, "
            f"expected {np.dtype(dtype)} with {ndim} dimension(s)"
        )
    return array


def read_gallery_file(path: str | Path) -> dict[str, Any]:
    """The keyword arguments of ``Gallery(...)`` read and validated from ``path``."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FacescaleError(f"gallery {path} does not exist (make one with `facescale gallery build`)")
    meta, tensors = _read_safetensors(path)
    if meta is None:
        raise DataError(f"{path} is a safetensors file but not a facescale gallery (no {GALLERY_KEY} entry)")
    try:
        header = json.loads(meta)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: the gallery header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: the gallery header is a JSON {type(header).__name__}, not an object")
    version = header.get("version")
    if version not in READABLE_VERSIONS:
        raise DataError(f"{path}: gallery format version {version!r} is not one of {READABLE_VERSIONS}")
    missing = REQUIRED_TENSORS - set(tensors)
    extra = set(tensors) - REQUIRED_TENSORS - IVF_TENSORS
    if missing or extra:
        raise DataError(
            f"{path}: gallery arrays {sorted(tensors)}; expected sums, counts (and ivf_centres, ivf_lists)"
        )

    names = _require(header, "names", list, where)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise DataError(f"{path}: gallery 'names' holds {bad[0]!r}, not a non-empty string")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: gallery name {twice!r} appears more than once")
    embedder = _require(header, "embedder", dict, where)
    for key in EMBEDDER_KEYS:
        _require(embedder, key, int if key == "embedding_size" else str, f"{where} (embedder)")
    size = int(embedder["embedding_size"])
    if size < 1:
        raise DataError(f"{path}: embedding_size {size} is not positive")
    threshold = _require(header, "threshold", (int, float), where)
    if not math.isfinite(threshold):
        raise DataError(f"{path}: gallery threshold {threshold} is not a finite number")

    sums = _check_tensor(tensors, "sums", np.float32, 2, where)
    counts = _check_tensor(tensors, "counts", np.int64, 1, where)
    if sums.shape[1] != size and len(sums):
        raise DataError(f"{path}: vectors are {sums.shape[1]}-d but the header says {size}-d")
    if len(sums) != len(names) or len(counts) != len(names):
        raise DataError(f"{path}: {len(names)} names but {len(sums)} vectors and {len(counts)} photo counts")
    rows = np.flatnonzero(~np.isfinite(sums).all(axis=1))
    if len(rows):
        raise DataError(
            f"{path}: the vector of {names[rows[0]]!r} holds NaN or infinity ({len(rows)} bad vector(s))"
        )
    if len(counts) and counts.min() < 1:
        raise DataError(f"{path}: {names[int(np.argmin(counts))]!r} has photo count {int(counts.min())}")

    choice = header.get("index_choice", "auto")
    if choice not in ("auto", "flat", "ivf"):
        raise DataError(f"{path}: gallery index_choice {choice!r} is not auto, flat or ivf")
    spec = IndexSpec.from_dict(header["index"], where) if "index" in header else None
    centres = lists = None
    if spec is not None and spec.kind == "ivf":
        if not set(tensors) >= IVF_TENSORS:
            raise DataError(f"{path}: an ivf index without its arrays ivf_centres and ivf_lists")
        centres = _check_tensor(tensors, "ivf_centres", np.float32, 2, where)
        lists = _check_tensor(tensors, "ivf_lists", np.int64, 1, where)
        if centres.shape != (spec.nlist, size) or len(lists) != len(names):
            raise DataError(
                f"{path}: ivf arrays {list(centres.shape)} and [{len(lists)}] do not fit nlist {spec.nlist}, "
                f"{size}-d and {len(names)} names"
            )
        if not np.isfinite(centres).all() or (len(lists) and (lists.min() < -1 or lists.max() >= spec.nlist)):
            raise DataError(f"{path}: ivf centres hold NaN or list numbers fall outside [0, {spec.nlist})")
    source = header.get("threshold_source", "")
    return {
        "embedder": embedder,
        "threshold": float(threshold),
        "names": list(names),
        "sums": sums.astype(np.float32).reshape(-1, size),
        "counts": counts.astype(np.int64),
        "threshold_source": source if isinstance(source, str) else "",
        "index_choice": choice,
        "index_spec": spec,
        "ivf_centres": centres,
        "ivf_lists": lists,
    }
