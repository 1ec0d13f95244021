"""Gallery search speed: faiss exact inner product beside a plain numpy matrix product.

Both answer the same question exactly (the best-scoring entry for each query among ``size``
L2-normalised random vectors), so their answers must agree; only the time differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facescale.bench.timing import median_ms
from facescale.deploy.gallery import FlatIPIndex
from facescale.eval.verification import l2_normalize


@dataclass
class SearchTiming:
    """Milliseconds for one query (median) and per query within a batch of ``batch`` queries."""

    method: str
    single_ms: float
    batched_ms_per_query: float


def _numpy_search(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.argmax(queries @ vectors.T, axis=1)


def random_gallery(size: int, dim: int, seed: int = 0) -> np.ndarray:
    """``[size, dim]`` unit vectors, generated in chunks to keep peak memory at the gallery's size."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, dim), dtype=np.float32)
    for start in range(0, size, 100_000):
        stop = min(start + 100_000, size)
        out[start:stop] = l2_normalize(rng.standard_normal((stop - start, dim), dtype=np.float32))
    return out


def bench_search(
    size: int, dim: int, batch: int = 64, repeats: int = 10, seed: int = 0
) -> list[SearchTiming]:
    vectors = random_gallery(size, dim, seed)
    rng = np.random.default_rng(seed + 1)
    # Queries near known entries, as in recognition: an entry plus noise.
    targets = rng.integers(0, size, batch)
    queries = l2_normalize(
        vectors[targets] + 0.5 * rng.standard_normal((batch, dim), dtype=np.float32) / dim**0.5
    )
    index = FlatIPIndex(vectors)
    found = index.search(queries, 1)[1][:, 0]
    if not np.array_equal(found, _numpy_search(vectors, queries)) or not np.array_equal(found, targets):
        raise AssertionError("faiss and numpy disagree on the best match")
    return [
        SearchTiming(
            "numpy matmul + argmax (baseline)",
            median_ms(lambda: _numpy_search(vectors, queries[:1]), repeats),
            median_ms(lambda: _numpy_search(vectors, queries), max(1, repeats // 3)) / batch,
        ),
        SearchTiming(
            "faiss IndexFlatIP (facescale)",
            median_ms(lambda: index.search(queries[:1], 1), repeats),
            median_ms(lambda: index.search(queries, 1), max(1, repeats // 3)) / batch,
        ),
    ]


def format_table(rows: list[SearchTiming], size: int, dim: int, batch: int) -> str:
    lines = [
        f"exact search of {size:,} x {dim}-d entries",
        f"| method | 1 query (ms, median) | per query in a batch of {batch} (ms) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r.method} | {r.single_ms:.2f} | {r.batched_ms_per_query:.3f} |" for r in rows]
    return "\n".join(lines)
