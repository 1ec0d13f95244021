"""IJB templates: image features -> media means -> template features, and pair scoring.

A template is a set of faces from several media (a photo, or the frames of one video). Its
feature is the sum over its media of the mean of that media's image features, L2-normalised,
so a 300-frame video weighs as much as one photo. A pair's score is the dot product of its two
template features (their cosine similarity).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse

from facescale.errors import DataError

SCORE_CHUNK = 2048  # pairs per gather; two [chunk, D] float32 buffers stay in the CPU cache


def image_level_features(
    features: np.ndarray,
    flipped: np.ndarray | None,
    faceness: np.ndarray,
    flip: bool = True,
    keep_norm: bool = True,
    use_score: bool = True,
) -> np.ndarray:
    """The per-image feature entering the template, ``[M, D]`` float32.

    ``features``/``flipped``: raw model outputs ``[M, D]`` of each aligned face and its mirror;
    ``faceness``: ``[M]`` detector scores. ``flip``: add the mirror's feature; ``keep_norm``: keep
    the feature norm as a quality weight (False: L2-normalise first); ``use_score``: multiply by
    the faceness score.
    """
    x = features.astype(np.float32, copy=True)
    if flip:
        if flipped is None:
            raise ValueError("flip=True needs the mirrored images' features")
        x += flipped
    if not keep_norm:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if use_score:
        x *= np.asarray(faceness, dtype=np.float32)[:, None]
    return x


def pool_templates(
    image_features: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(template ids [T] sorted, unit template features [T, D] float32)``.

    ``image_features``: ``[M, D]``; ``templates``, ``medias``: ``[M]`` ids of each image. Done as
    one sparse ``[T, M]`` x ``[M, D]`` product whose weights are 1 / (images of that media in
    that template), so no image feature is copied.
    """
    templates = np.asarray(templates, dtype=np.int64)
    medias = np.asarray(medias, dtype=np.int64)
    if not (len(templates) == len(medias) == len(image_features)):
        raise ValueError(
            f"{len(image_features)} features, {len(templates)} template and {len(medias)} media ids"
        )
    template_ids, template_row = np.unique(templates, return_inverse=True)
    # a media is counted within its template: the same media id in two templates is two groups
    lowest = int(medias.min()) if len(medias) else 0
    media_span = int(medias.max()) - lowest + 1 if len(medias) else 1
    key = template_row.astype(np.int64) * media_span + (medias - lowest)
    _, group, group_size = np.unique(key, return_inverse=True, return_counts=True)
    group = group.ravel()
    weights = 1.0 / group_size[group]
    pooling = scipy.sparse.csr_matrix(
        (weights.astype(np.float32), (template_row, np.arange(len(templates)))),
        shape=(len(template_ids), len(templates)),
    )
    pooled = np.asarray(pooling @ np.asarray(image_features, dtype=np.float32), dtype=np.float32)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return template_ids, pooled


def template_rows(template_ids: np.ndarray, wanted: np.ndarray, where: str) -> np.ndarray:
    """Row of each id of ``wanted`` in sorted ``template_ids``; DataError naming ``where`` if absent."""
    wanted = np.asarray(wanted, dtype=np.int64)
    if len(template_ids) == 0:
        raise DataError(f"{where}: no templates to look up {len(wanted)} ids in")
    lowest, highest = int(template_ids[0]), int(template_ids[-1])
    if highest - lowest < 64 * len(template_ids) + 1_000_000:
        # ids are dense enough for a direct table: one gather instead of a binary search per id
        table = np.full(highest - lowest + 2, -1, dtype=np.intp)  # last slot: out of range
        table[template_ids - lowest] = np.arange(len(template_ids))
        offsets = wanted - lowest
        offsets[(offsets < 0) | (offsets > highest - lowest)] = len(table) - 1
        rows = table[offsets]
        missing = np.flatnonzero(rows < 0)
    else:
        rows = np.minimum(np.searchsorted(template_ids, wanted), len(template_ids) - 1)
        missing = np.flatnonzero(template_ids[rows] != wanted)
    if len(missing):
        raise DataError(
            f"{where}: template {int(wanted[missing[0]])} has no face in the face list "
            f"({len(missing)} references to unknown templates)"
        )
    return rows


def _score_range(features: np.ndarray, rows1: np.ndarray, rows2: np.ndarray, out: np.ndarray) -> None:
    """Pairs in any order: gather both rows of each pair in chunks, row-wise dot."""
    dim = features.shape[1]
    a = np.empty((SCORE_CHUNK, dim), dtype=np.float32)
    b = np.empty((SCORE_CHUNK, dim), dtype=np.float32)
    for start in range(0, len(rows1), SCORE_CHUNK):
        end = min(start + SCORE_CHUNK, len(rows1))
        n = end - start
        np.take(features, rows1[start:end], axis=0, out=a[:n])
        np.take(features, rows2[start:end], axis=0, out=b[:n])
        np.einsum("ij,ij->i", a[:n], b[:n], out=out[start:end])


def _score_groups(
    features: np.ndarray,
    first: np.ndarray,
    rows2: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
) -> None:
    """Pairs sorted by their first row: one matrix-vector product per group sharing that row."""
    b = np.empty((SCORE_CHUNK, features.shape[1]), dtype=np.float32)
    for row, group_start, group_end in zip(first, starts, ends):
        anchor = features[row]
        for start in range(group_start, group_end, SCORE_CHUNK):
            end = min(start + SCORE_CHUNK, group_end)
            np.take(features, rows2[start:end], axis=0, out=b[: end - start])
            np.matmul(b[: end - start], anchor, out=out[start:end])


def _run(threads: int, jobs: list) -> None:
    if threads == 1 or len(jobs) == 1:
        for fn, *args in jobs:
            fn(*args)
        return
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(fn, *args) for fn, *args in jobs]:
            future.result()


def score_pairs(
    features: np.ndarray, rows1: np.ndarray, rows2: np.ndarray, threads: int | None = None
) -> np.ndarray:
    """Dot product of rows ``rows1[p]`` and ``rows2[p]`` of ``features`` ``[T, D]`` -> ``[P]`` float32.

    Pairs are sorted by their first row, so each template's row is read once and the pairs that
    share it become one matrix-vector product over gathered second rows (half the memory
    traffic of gathering both sides). When few pairs share a first row, both rows are gathered
    in cache-sized chunks instead. Work is split across ``threads`` (default: all cores); numpy
    releases the GIL in ``take``, ``matmul`` and ``einsum``.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    rows1 = np.asarray(rows1, dtype=np.intp)
    rows2 = np.asarray(rows2, dtype=np.intp)
    num_pairs = len(rows1)
    threads = max(1, threads or os.cpu_count() or 1)
    pieces = min(num_pairs // SCORE_CHUNK + 1, threads * 4)
    order = np.argsort(rows1, kind="stable")
    sorted1 = rows1[order]
    group_starts = np.flatnonzero(np.concatenate([[True], sorted1[1:] != sorted1[:-1]]))
    if len(group_starts) * 16 > num_pairs:  # groups too small to pay off (or no pairs at all)
        scores = np.empty(num_pairs, dtype=np.float32)
        bounds = np.linspace(0, num_pairs, pieces + 1).astype(np.int64)
        spans = [(int(s), int(e)) for s, e in itertools.pairwise(bounds) if e > s]
        _run(threads, [(_score_range, features, rows1[s:e], rows2[s:e], scores[s:e]) for s, e in spans])
        return scores
    sorted2 = rows2[order]
    group_ends = np.append(group_starts[1:], num_pairs)
    # cut the group list where the pair count crosses each of `pieces` equal shares
    cuts = np.searchsorted(group_starts, np.linspace(0, num_pairs, pieces + 1)[1:-1])
    edges = np.unique(np.concatenate([[0], cuts, [len(group_starts)]]))
    sorted_scores = np.empty(num_pairs, dtype=np.float32)
    jobs = [
        (
            _score_groups,
            features,
            sorted1[group_starts[g0:g1]],
            sorted2,
            group_starts[g0:g1],
            group_ends[g0:g1],
            sorted_scores,
        )
        for g0, g1 in itertools.pairwise(edges)
    ]
    _run(threads, jobs)
    scores = np.empty(num_pairs, dtype=np.float32)
    scores[order] = sorted_scores
    return scores
