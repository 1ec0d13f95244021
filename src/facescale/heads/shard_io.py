"""Per-rank Partial FC checkpoint files and re-sharding to another number of processes.

Each rank writes ``head-rank{r:05d}-of-{w:05d}.pt``: a dict with ``meta`` (format, num_classes,
embedding_size, world_size, rank, class_start, class_stop, dtypes, update mode, optimizer, step)
and ``tensors`` (``weight`` [n_r, D] and the optimizer state, rows aligned with the weight).
Files are written atomically (temp file, fsync, rename). Loading reads the metadata of every shard
in the folder, checks they form one complete checkpoint, and copies out just the rows of the
requested class range (memory-mapped, so a rank does not read the other ranks' rows).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from facescale.atomic import torch_save_atomic
from facescale.distributed.class_range import ClassRange, all_class_ranges
from facescale.errors import FacescaleError

SHARD_FORMAT = "facescale.partial_fc.v1"
SHARD_PATTERN = re.compile(r"^head-rank(\d{5})-of-(\d{5})\.pt$")


def shard_filename(rank: int, world_size: int) -> str:
    return f"head-rank{rank:05d}-of-{world_size:05d}.pt"


def write_shard(directory: str | Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Atomically write one rank's shard; returns its path. meta needs ``rank`` and ``world_size``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / shard_filename(meta["rank"], meta["world_size"])
    payload = {"meta": {"format": SHARD_FORMAT, **meta}, "tensors": {k: v.cpu() for k, v in tensors.items()}}
    torch_save_atomic(payload, path)
    return path


def remove_other_world_sizes(directory: str | Path, world_size: int) -> None:
    """Delete shard files written by a different number of processes (left from an older save)."""
    for path in Path(directory).iterdir():
        match = SHARD_PATTERN.match(path.name)
        if match and int(match.group(2)) != world_size:
            path.unlink(missing_ok=True)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a truncated or foreign file: name it
        raise FacescaleError(f"cannot read head shard {path}: {e}") from None
    if not isinstance(data, dict) or data.get("meta", {}).get("format") != SHARD_FORMAT:
        raise FacescaleError(f"{path} is not a facescale Partial FC shard (no {SHARD_FORMAT!r} metadata)")
    return data


def read_checkpoint(directory: str | Path) -> list[tuple[Path, dict[str, Any], dict[str, torch.Tensor]]]:
    """Every shard of the checkpoint in ``directory`` as (path, meta, tensors), in rank order.

    Tensors are memory-mapped. Raises FacescaleError naming the folder or file when shards are
    missing, come from different saves, or do not tile the class range.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FacescaleError(f"head checkpoint folder {directory} does not exist")
    paths = sorted(p for p in directory.iterdir() if SHARD_PATTERN.match(p.name))
    if not paths:
        raise FacescaleError(f"no head shard files (head-rank*-of-*.pt) in {directory}")
    worlds = sorted({int(SHARD_PATTERN.match(p.name).group(2)) for p in paths})  # type: ignore[union-attr]
    if len(worlds) > 1:
        raise FacescaleError(f"{directory} mixes head shards from world sizes {worlds}")
    world = worlds[0]
    ranks = [int(SHARD_PATTERN.match(p.name).group(1)) for p in paths]  # type: ignore[union-attr]
    missing = sorted(set(range(world)) - set(ranks))
    if missing:
        raise FacescaleError(
            f"head checkpoint {directory} written by {world} processes lacks ranks {missing}"
        )
    shards = []
    for path in paths:
        data = _load(path)
        shards.append((path, data["meta"], data["tensors"]))
    first = shards[0][1]
    for key in ("num_classes", "embedding_size", "optimizer", "step"):
        values = {meta[key] for _, meta, _ in shards}
        if len(values) > 1:
            raise FacescaleError(f"head shards in {directory} disagree on {key}: {sorted(map(str, values))}")
    expected = all_class_ranges(first["num_classes"], world)
    for (path, meta, tensors), want in zip(shards, expected):
        got = ClassRange(meta["class_start"], meta["class_stop"])
        if got != want or tensors["weight"].shape[0] != len(want):
            raise FacescaleError(
                f"head shard {path} holds classes [{got.start}, {got.stop}) with "
                f"{tensors['weight'].shape[0]} rows; expected [{want.start}, {want.stop})"
            )
    return shards


def rows_for_range(
    shards: list[tuple[Path, dict[str, Any], dict[str, torch.Tensor]]], wanted: ClassRange
) -> dict[str, torch.Tensor]:
    """The rows of classes [wanted.start, wanted.stop) of every saved tensor, concatenated from the shards."""
    pieces: dict[str, list[torch.Tensor]] = {}
    for _, meta, tensors in shards:
        overlap = wanted.intersect(ClassRange(meta["class_start"], meta["class_stop"]))
        if overlap is None:
            continue
        lo, hi = overlap.start - meta["class_start"], overlap.stop - meta["class_start"]
        for name, tensor in tensors.items():
            pieces.setdefault(name, []).append(tensor[lo:hi].clone())
    return {name: torch.cat(parts) for name, parts in pieces.items()}


def read_rows(
    directory: str | Path, classes: ClassRange, expected: dict[str, Any], names: set[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors ``names`` for ``classes`` from the checkpoint in ``directory``, and its metadata.

    ``expected`` maps metadata keys (num_classes, embedding_size, optimizer) to this run's values;
    a mismatch raises FacescaleError naming both.
    """
    shards = read_checkpoint(directory)
    meta = shards[0][1]
    for key, ours in expected.items():
        if meta[key] != ours:
            raise FacescaleError(
                f"head checkpoint {directory} has {key} {meta[key]!r}; this run has {ours!r}"
            )
    rows = rows_for_range(shards, classes)
    missing = sorted(names - set(rows))
    if missing:
        raise FacescaleError(f"head checkpoint {directory} lacks {', '.join(missing)}")
    return {k: rows[k] for k in names}, meta


# -- arcface_torch's per-rank checkpoints ----------------------------------------------------

ARCFACE_TORCH_PATTERN = re.compile(r"^checkpoint_gpu_(\d+)\.pt$")
ARCFACE_TORCH_HEAD_KEY = "state_dict_softmax_fc"


def _load_arcface_torch(path: Path) -> torch.Tensor:
    """The Partial FC weight [n_r, D] of one arcface_torch ``checkpoint_gpu_{rank}.pt``.

    weights_only=True: a checkpoint from elsewhere may not run code. mmap where the file allows it
    (torch's zip format), so the backbone and optimizer state in the same file are not read.
    """
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # the legacy (non-zip) format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, or a pickle that needs code: name the file
        raise FacescaleError(f"cannot read arcface_torch checkpoint {path}: {e}") from None
    head = data.get(ARCFACE_TORCH_HEAD_KEY) if isinstance(data, dict) else None
    weight = head.get("weight") if isinstance(head, dict) else None
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise FacescaleError(
            f"{path} is not an arcface_torch checkpoint with a Partial FC head: expected "
            f"{ARCFACE_TORCH_HEAD_KEY!r} holding 'weight' [classes, dim] (found {keys})"
        )
    return weight


def read_arcface_torch_centres(
    directory: str | Path, num_classes: int, embedding_size: int, classes: ClassRange
) -> torch.Tensor:
    """Rows ``classes`` of the class centres arcface_torch saved in ``directory``: float32 [len(classes), D].

    arcface_torch (``train_v2.py`` with ``save_all_states``) writes ``checkpoint_gpu_{rank}.pt`` per
    rank, its Partial FC ``weight`` [n_r, D] under ``state_dict_softmax_fc``; rank r holds classes
    [start_r, start_r + n_r) split as facescale splits them (the first C mod W ranks one more). Any
    number of ranks reads into any other. Raises FacescaleError naming the folder or file when
    ranks are missing, sizes disagree with this run's ``num_classes`` / ``embedding_size``, or the
    rows do not tile the classes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FacescaleError(f"arcface_torch checkpoint folder {directory} does not exist")
    found = {int(m.group(1)): p for p in directory.iterdir() if (m := ARCFACE_TORCH_PATTERN.match(p.name))}
    if not found:
        raise FacescaleError(f"no arcface_torch head files (checkpoint_gpu_{{rank}}.pt) in {directory}")
    world = max(found) + 1
    missing = sorted(set(range(world)) - set(found))
    if missing:
        raise FacescaleError(
            f"arcface_torch checkpoint {directory} has checkpoint_gpu_{{0..{world - 1}}}.pt "
            f"but lacks ranks {missing}"
        )
    expected = all_class_ranges(num_classes, world)
    pieces = []
    for rank, want in enumerate(expected):
        overlap = classes.intersect(want)
        weight = _load_arcface_torch(found[rank])  # every file is opened: its shape is checked
        if tuple(weight.shape) != (len(want), embedding_size):
            raise FacescaleError(
                f"{found[rank]} holds a head weight of shape {list(weight.shape)}; {num_classes} classes "
                f"over {world} ranks at embedding size {embedding_size} need "
                f"[{len(want)}, {embedding_size}] on rank {rank}"
            )
        if overlap is not None:
            lo, hi = overlap.start - want.start, overlap.stop - want.start
            pieces.append(weight[lo:hi].to(torch.float32).clone())
    return torch.cat(pieces) if pieces else torch.empty(0, embedding_size)
