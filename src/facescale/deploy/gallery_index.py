"""The search index behind a gallery: exact below a measured size, inverted lists above it.

Two kinds, both over L2-normalised float32 vectors ``[P, D]`` scored by inner product (cosine):

- ``flat``: faiss ``IndexFlatIP``, exact. One query reads every vector, so its time grows with
  the gallery (about 0.16 ms per 1,000 entries of 512-d on this project's 2-core machine).
- ``ivf``: faiss ``IndexIVFFlat``. k-means splits the vectors into ``nlist`` inverted lists; a
  query scans the ``nprobe`` lists whose centres score highest, about ``nprobe / nlist`` of the
  gallery. Approximate: the recall against exact search is measured by ``facescale bench gallery``.

Everything an index needs to be rebuilt without training again lives in plain arrays (the list
centres ``[nlist, D]`` and each vector's list number ``[P]``), so a gallery stores it in its
safetensors file (no pickle, no faiss serialisation) and loading a million-entry gallery costs a
memory copy, not a k-means. Adding or removing vectors keeps the trained centres: a new vector
is assigned to its nearest list, a removed one is dropped from its list.

Why IVF and not HNSW: measured with `facescale bench gallery --size 100000 --hnsw` here, faiss
HNSW (M 32, efConstruction 40) built in 14.5 s against the IVF's 8.7 s and reached recall@1 0.967
at efSearch 1024 (0.85 ms per query) where the IVF reached 0.992-0.997 in 0.2 ms. Its graph also
cannot be stored as plain arrays and rebuilt cheaply, and faiss cannot remove entries from it;
an IVF's lists are rebuilt from the stored list numbers with a memory copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from facescale.errors import DataError, FacescaleError

KINDS = ("flat", "ivf")
# Exact search up to this many entries: one exact query stays under 5 ms here (measured with
# `facescale bench gallery --size 10000,30000,50000,100000` on the 2-core CI machine: 0.6, 3.1,
# 5.4 and 10.7 ms for 10k, 30k, 50k and 100k x 512-d; IVF at recall@1 >= 0.99: 0.1-0.2 ms).
EXACT_MAX = 40_000
# faiss warns below 39 training vectors per centre; k-means quality needs about that many.
TRAIN_PER_LIST = 64
# Batches of at least this many queries are scored with one BLAS matrix product. Recent
# faiss-cpu wheels ship 128000, so batched exact search fell back to a scan 5x slower; 20 is
# faiss's long-standing default.
BLAS_MIN_QUERIES = 20


def default_nlist(size: int) -> int:
    """``4 * sqrt(size)`` lists rounded to a power of two (faiss's rule of thumb), at least 16."""
    return max(16, 2 ** round(math.log2(4 * math.sqrt(max(size, 1)))))


@dataclass(frozen=True)
class IndexSpec:
    """What index to build: ``kind`` (``flat`` | ``ivf``), and for ``ivf`` ``nlist`` and ``nprobe``."""

    kind: str = "flat"
    nlist: int = 0
    nprobe: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FacescaleError(
                f"unknown gallery index kind {self.kind!r}; choose one of {', '.join(KINDS)}"
            )
        if self.kind == "ivf" and not (1 <= self.nprobe <= self.nlist):
            raise FacescaleError(
                f"ivf index needs 1 <= nprobe <= nlist, got nprobe {self.nprobe}, nlist {self.nlist}"
            )

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "flat":
            return {"kind": "flat"}
        return {"kind": self.kind, "nlist": self.nlist, "nprobe": self.nprobe}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> IndexSpec:
        """Validate a spec read from a file; ``where`` names the file in errors."""
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            raise DataError(f"{where}: index entry {data!r} is not an object with a 'kind'")
        try:
            return cls(str(data["kind"]), int(data.get("nlist", 0)), int(data.get("nprobe", 0)))
        except (TypeError, ValueError, FacescaleError) as e:
            raise DataError(f"{where}: bad index entry {data!r}: {e}") from e

    def describe(self) -> str:
        if self.kind == "flat":
            return "exact (faiss IndexFlatIP)"
        return f"approximate (faiss IndexIVFFlat, nlist {self.nlist}, nprobe {self.nprobe})"


# Lists scanned per query, as a share of nlist: the recall needed grows slower than nlist, so the
# share shrinks with size. Measured with `facescale bench gallery` (held-out recall@1 on clustered
# 512-d embeddings): nlist 1024 needs 16-32 for 0.99 (50k-100k entries), nlist 4096 needs 64 (1M).
DEFAULT_NPROBE_FRACTION = 1 / 64
MIN_NPROBE = 32


def choose_spec(size: int, exact_max: int | None = None) -> IndexSpec:
    """Exact search up to ``exact_max`` (default :data:`EXACT_MAX`) entries, IVF above (sized by ``size``)."""
    if size <= (EXACT_MAX if exact_max is None else exact_max):
        return IndexSpec("flat")
    nlist = default_nlist(size)
    return IndexSpec("ivf", nlist, min(nlist, max(MIN_NPROBE, round(nlist * DEFAULT_NPROBE_FRACTION))))


def _faiss() -> Any:
    import faiss

    faiss.cvar.distance_compute_blas_threshold = BLAS_MIN_QUERIES
    return faiss


def train_centres(vectors: np.ndarray, nlist: int, seed: int = 0, niter: int = 10) -> np.ndarray:
    """k-means (inner product, spherical) list centres ``[nlist, D]`` from a sample of ``vectors``."""
    faiss = _faiss()
    if len(vectors) < nlist:
        raise FacescaleError(
            f"an ivf index with {nlist} lists needs at least {nlist} vectors, got {len(vectors)}"
        )
    rng = np.random.default_rng(seed)
    sample_size = min(len(vectors), nlist * TRAIN_PER_LIST)
    sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))]
    kmeans = faiss.Kmeans(
        vectors.shape[1],
        nlist,
        niter=niter,
        seed=seed,
        spherical=True,
        max_points_per_centroid=TRAIN_PER_LIST,
        min_points_per_centroid=1,  # a small forced-ivf gallery: no "too few points" chatter on stderr
    )
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def assign_lists(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """int64 ``[P]``: the list (highest-scoring centre) of each of ``vectors`` ``[P, D]``."""
    faiss = _faiss()
    if len(vectors) == 0:
        return np.zeros((0,), np.int64)
    quantizer = faiss.IndexFlatIP(centres.shape[1])
    quantizer.add(np.ascontiguousarray(centres, dtype=np.float32))
    return quantizer.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)[1][:, 0].astype(np.int64)


class SearchIndex:
    """A faiss index over ``vectors`` ``[P, D]`` (unit rows); ids are row numbers.

    For ``ivf``, ``centres`` ``[nlist, D]`` and ``lists`` ``[P]`` (each row's list) come from
    :func:`train_centres` / :func:`assign_lists`; pass them to rebuild without training.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        spec: IndexSpec,
        centres: np.ndarray | None = None,
        lists: np.ndarray | None = None,
    ) -> None:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.spec = spec
        dim = vectors.shape[1]
        if spec.kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
            if len(vectors):
                self.index.add(vectors)
            self.centres, self.lists = None, None
            return
        if centres is None:
            centres = train_centres(vectors, spec.nlist)
        if centres.shape != (spec.nlist, dim):
            raise FacescaleError(
                f"ivf centres have shape {list(centres.shape)}, expected [{spec.nlist}, {dim}]"
            )
        if lists is None:
            lists = assign_lists(vectors, centres)
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.ascontiguousarray(centres, dtype=np.float32))
        index = faiss.IndexIVFFlat(quantizer, dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True  # the quantizer holds the trained centres
        index.nprobe = spec.nprobe
        if len(vectors):
            from faiss.contrib.ivf_tools import add_preassigned

            add_preassigned(index, vectors, np.ascontiguousarray(lists, dtype=np.int64))
        self._quantizer = quantizer  # faiss holds a raw pointer: keep the Python owner alive
        self.index = index
        self.centres = np.ascontiguousarray(centres, dtype=np.float32)
        self.lists = np.ascontiguousarray(lists, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``[Q, D]`` -> (scores float32 ``[Q, k]``, row numbers int64 ``[Q, k]``), best first.

        Rows an approximate index did not reach have score ``-inf`` and number -1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.spec.kind == "ivf" and len(queries) == 1:
            scores, ids = self._search_one(queries, k)
        else:
            scores, ids = self.index.search(queries, k)
        scores[ids < 0] = -np.inf
        return scores, ids

    def _search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One query on one thread: scanning its ~nprobe * P / nlist vectors takes about a
        millisecond, less than OpenMP's cost of waking a second thread, and on a shared machine a
        team of threads waits for its slowest (measured on the 2-core CI machine, 200k x 512-d,
        nprobe 64, one core busy with another process: 5.3 ms on 2 threads, 1.2 ms on one)."""
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(query, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def set_nprobe(self, nprobe: int) -> None:
        """Scan ``nprobe`` lists per query from now on (ivf only)."""
        if self.spec.kind != "ivf":
            raise FacescaleError("nprobe applies to an ivf index only")
        self.spec = IndexSpec("ivf", self.spec.nlist, nprobe)
        self.index.nprobe = nprobe

    def nbytes(self) -> int:
        """Bytes the index holds: vectors (+ ids and centres for ivf)."""
        dim = self.index.d
        total = len(self) * dim * 4
        if self.spec.kind == "ivf":
            total += len(self) * 8 + self.spec.nlist * dim * 4
        return total
