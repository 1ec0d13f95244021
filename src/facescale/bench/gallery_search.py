"""Gallery search at scale: exact (faiss flat) beside approximate (faiss IVF), in one run.

Data (real-like, not uniform noise): ``size`` enrolled people whose unit vectors are grouped
around ``size / 1000`` random cluster centres (cosine about 0.5 to their centre, so people of
one cluster score about 0.25 with each other, as look-alikes do, and 0 with the rest). Queries
are new photos of enrolled people: their vector mixed with fresh noise so the genuine cosine is
drawn uniformly from [0.3, 0.8], the range a face model's same-person scores span.

Recall is computed, not assumed: exact search gives the true top-10 of every query; an
approximate index's recall@1 is the share of queries whose best entry is exact search's best,
recall@10 the mean overlap of the two top-10 lists. ``nprobe`` is tuned on one query set
(the smallest reaching the recall target) and every reported recall is measured on another,
held-out set.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from facescale.bench.timing import median_ms
from facescale.deploy.gallery_index import IndexSpec, SearchIndex, choose_spec
from facescale.models.embeddings import l2_normalize

PEOPLE_PER_CLUSTER = 1000
CENTRE_COSINE = 0.5
GENUINE_COSINE = (0.3, 0.8)
CHUNK = 100_000


@dataclass
class IndexRow:
    """One index at one gallery size; times in ms, ``bytes`` held by the index."""

    size: int
    index: str
    nlist: int
    nprobe: int
    build_s: float
    bytes: int
    ms_per_query: float
    ms_per_query_batched: float
    recall_at_1: float
    recall_at_10: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _mix(base: np.ndarray, weight: np.ndarray | np.floating, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at cosine ``weight`` to the unit rows of ``base`` (the noise is orthogonal on average)."""
    noise = l2_normalize(rng.standard_normal(base.shape, dtype=np.float32))
    return l2_normalize(base * weight + noise * np.sqrt(1 - weight**2))


def clustered_gallery(size: int, dim: int, seed: int = 0) -> np.ndarray:
    """``[size, dim]`` unit vectors around ``size / 1000`` cluster centres (peak memory: the gallery)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((max(1, size // PEOPLE_PER_CLUSTER), dim), dtype=np.float32))
    out = np.empty((size, dim), dtype=np.float32)
    for start in range(0, size, CHUNK):
        stop = min(start + CHUNK, size)
        cluster = rng.integers(0, len(centres), stop - start)
        out[start:stop] = _mix(centres[cluster], np.float32(CENTRE_COSINE), rng)
    return out


def new_photos(vectors: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries ``[count, D]``, the enrolled row each was made from ``[count]``)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, len(vectors), count)
    genuine = rng.uniform(*GENUINE_COSINE, (count, 1)).astype(np.float32)
    return _mix(vectors[targets], genuine, rng), targets


def recall(found: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """(recall@1, recall@10) of ``found`` ``[Q, >=10]`` ids against ``exact`` ``[Q, >=10]``."""
    at1 = float(np.mean(found[:, 0] == exact[:, 0]))
    at10 = float(np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact)]))
    return at1, at10


def _timings(index: SearchIndex, queries: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    single = median_ms(lambda: index.search(queries[:1], 1), repeats)
    batched = median_ms(lambda: index.search(queries[:batch], 1), max(1, repeats // 3)) / batch
    return single, batched


def tune_nprobe(index: SearchIndex, queries: np.ndarray, exact: np.ndarray, target: float) -> int:
    """The smallest power-of-two nprobe whose recall@1 on ``queries`` reaches ``target`` (else nlist)."""
    nprobe = 1
    while nprobe < index.spec.nlist:
        index.set_nprobe(nprobe)
        if recall(index.search(queries, 10)[1], exact)[0] >= target:
            return nprobe
        nprobe *= 2
    return index.spec.nlist


def bench_size(
    size: int,
    dim: int = 512,
    batch: int = 64,
    repeats: int = 20,
    queries: int = 1000,
    recall_target: float = 0.99,
    seed: int = 0,
    approximate: bool = True,
    hnsw: bool = False,
) -> list[IndexRow]:
    """Rows for exact search, (``approximate``) IVF at its tuned and default ``nprobe`` and
    (``hnsw``) faiss HNSW at its tuned ``efSearch`` (reported in the ``nprobe`` column)."""
    vectors = clustered_gallery(size, dim, seed)
    tuning, _ = new_photos(vectors, queries, seed + 1)
    held_out, _ = new_photos(vectors, queries, seed + 2)
    start = time.perf_counter()
    flat = SearchIndex(vectors, IndexSpec("flat"))
    build_s = time.perf_counter() - start
    exact_tuning = flat.search(tuning, 10)[1]
    exact = flat.search(held_out, 10)[1]
    single, batched = _timings(flat, held_out, batch, repeats)
    rows = [IndexRow(size, "flat (exact)", 0, 0, build_s, flat.nbytes(), single, batched, 1.0, 1.0)]
    del flat
    gc.collect()  # the exact index's copy of the vectors goes before the IVF's is made
    if hnsw:
        rows.append(_hnsw_row(vectors, tuning, exact_tuning, held_out, exact, batch, repeats, recall_target))
    if not approximate:
        return rows
    default = choose_spec(size, exact_max=0)
    start = time.perf_counter()
    ivf = SearchIndex(vectors, default)
    build_s = time.perf_counter() - start
    del vectors
    tuned = tune_nprobe(ivf, tuning, exact_tuning, recall_target)
    labels = {tuned: "ivf (tuned nprobe)", default.nprobe: "ivf (gallery default)"}
    if tuned == default.nprobe:
        labels = {tuned: "ivf (tuned = gallery default)"}
    for nprobe, label in sorted(labels.items()):
        ivf.set_nprobe(nprobe)
        at1, at10 = recall(ivf.search(held_out, 10)[1], exact)
        single, batched = _timings(ivf, held_out, batch, repeats)
        rows.append(
            IndexRow(size, label, default.nlist, nprobe, build_s, ivf.nbytes(), single, batched, at1, at10)
        )
    return rows


HNSW_M = 32  # graph neighbours per node (faiss's usual choice for 512-d)


def _hnsw_row(
    vectors: np.ndarray,
    tuning: np.ndarray,
    exact_tuning: np.ndarray,
    held_out: np.ndarray,
    exact: np.ndarray,
    batch: int,
    repeats: int,
    target: float,
) -> IndexRow:
    """faiss IndexHNSWFlat (M 32, efConstruction 40): build, then the smallest efSearch reaching
    ``target`` recall@1 on the tuning queries, measured on the held-out ones."""
    import faiss

    start = time.perf_counter()
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    build_s = time.perf_counter() - start
    ef = 16
    while ef < 1024:
        index.hnsw.efSearch = ef
        if recall(index.search(tuning, 10)[1], exact_tuning)[0] >= target:
            break
        ef *= 2
    index.hnsw.efSearch = ef
    at1, at10 = recall(index.search(held_out, 10)[1], exact)
    single = median_ms(lambda: index.search(held_out[:1], 1), repeats)
    batched = median_ms(lambda: index.search(held_out[:batch], 1), max(1, repeats // 3)) / batch
    graph = len(vectors) * HNSW_M * 2 * 4  # about 2M int32 neighbour ids per node over the levels
    size = len(vectors) * vectors.shape[1] * 4 + graph
    return IndexRow(len(vectors), "hnsw (tuned efSearch)", 0, ef, build_s, size, single, batched, at1, at10)


def format_table(rows: list[IndexRow], dim: int, batch: int) -> str:
    lines = [
        "| gallery | index | nlist | nprobe | build (s) | memory (MB) | 1 query (ms) "
        f"| per query, batch {batch} (ms) | recall@1 | recall@10 |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size:,} x {dim} | {r.index} | {r.nlist or '-'} | {r.nprobe or '-'} | {r.build_s:.1f} | "
            f"{r.bytes / 2**20:,.0f} | {r.ms_per_query:.2f} | {r.ms_per_query_batched:.3f} | "
            f"{r.recall_at_1:.3f} | {r.recall_at_10:.3f} |"
        )
    return "\n".join(lines)
