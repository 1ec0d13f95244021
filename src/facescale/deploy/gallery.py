"""A gallery of known people: one L2-normalised mean embedding per person, searched with faiss.

File format (no pickle anywhere; loading runs no code): one safetensors file holding
``sums`` float32 ``[P, D]`` (per person, the sum of the L2-normalised embeddings of their
photos, so more photos can be added exactly later) and ``counts`` int64 ``[P]`` (photos per
person), with a JSON header entry ``facescale.gallery``: names, the embedder that made the
vectors (name, fingerprint, size, the model source it was opened from) and the match threshold.
A gallery refuses queries from an embedder with another fingerprint: embeddings of two models
live in unrelated spaces.

Search is exact inner product (faiss ``IndexFlatIP``) between L2-normalised vectors, i.e.
cosine similarity; a person is named when the best score reaches the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facescale.atomic import atomic_output
from facescale.deploy.embedder import Embedder
from facescale.errors import DataError, FacescaleError
from facescale.eval.verification import l2_normalize

GALLERY_KEY = "facescale.gallery"
FORMAT_VERSION = 1
UNKNOWN = "unknown"
# Cosine similarity above which a face is named, for models that do not suggest their own:
# ArcFace-style models put different people near 0 and the same person well above 0.3.
DEFAULT_THRESHOLD = 0.35


BLAS_MIN_QUERIES = 20


def default_threshold(embedder: Embedder) -> float:
    """The embedder's ``suggested_threshold`` when it has one, else :data:`DEFAULT_THRESHOLD`."""
    return float(getattr(embedder, "suggested_threshold", DEFAULT_THRESHOLD))


class FlatIPIndex:
    """Exact inner-product search over ``vectors`` (float32 ``[P, D]``) with faiss."""

    def __init__(self, vectors: np.ndarray) -> None:
        import faiss

        # Batches of at least this many queries are scored with one BLAS matrix product. Recent
        # faiss-cpu wheels ship 128000, so batched search fell back to a scan 5x slower; 20 is
        # faiss's long-standing default.
        faiss.cvar.distance_compute_blas_threshold = BLAS_MIN_QUERIES
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            self.index.add(vectors)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``[Q, D]`` -> (scores float32 ``[Q, k]``, indices int64 ``[Q, k]``), best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(queries, k)


@dataclass
class Match:
    """The best gallery entry for one face: ``name`` is ``"unknown"`` below the threshold."""

    name: str
    score: float
    nearest: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(self.score, 4), "nearest": self.nearest}


@dataclass
class Gallery:
    """People known by name; ``sums[i]`` / ``counts[i]`` belong to ``names[i]``."""

    embedder: dict[str, Any]
    threshold: float
    names: list[str] = field(default_factory=list)
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    _index: FlatIPIndex | None = field(default=None, repr=False, compare=False)

    @classmethod
    def for_embedder(cls, embedder: Embedder, threshold: float, source: str = "") -> Gallery:
        """An empty gallery tied to ``embedder`` (``source`` is how it was opened, for later commands)."""
        info = {
            "name": embedder.name,
            "fingerprint": embedder.fingerprint,
            "embedding_size": int(embedder.embedding_size),
            "source": source,
        }
        return cls(info, float(threshold), [], np.zeros((0, embedder.embedding_size), np.float32))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def embedding_size(self) -> int:
        return int(self.embedder["embedding_size"])

    def check_embedder(self, embedder: Embedder, where: str = "gallery") -> None:
        """Raise unless ``embedder`` is the model this gallery was built with."""
        if embedder.fingerprint != self.embedder["fingerprint"]:
            raise FacescaleError(
                f"{where} was built with model {self.embedder['name']} (fingerprint "
                f"{self.embedder['fingerprint']}), not {embedder.name} (fingerprint {embedder.fingerprint}); "
                "embeddings of different models cannot be compared: use the same model or rebuild the gallery"
            )

    def add(self, name: str, embeddings: np.ndarray) -> None:
        """Add photos' embeddings (``[K, D]``, raw) to person ``name`` (created when new)."""
        name = name.strip()
        if not name:
            raise FacescaleError("a person's name cannot be empty")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_size or len(embeddings) == 0:
            raise FacescaleError(
                f"person {name!r}: expected embeddings [K>=1, {self.embedding_size}], "
                f"got {list(embeddings.shape)}"
            )
        total = l2_normalize(embeddings, dtype=np.float32).sum(0)
        if name in self.names:
            i = self.names.index(name)
            self.sums[i] += total
            self.counts[i] += len(embeddings)
        else:
            self.names.append(name)
            self.sums = np.concatenate([self.sums.reshape(-1, self.embedding_size), total[None]])
            self.counts = np.concatenate([self.counts, [len(embeddings)]]).astype(np.int64)
        self._index = None

    def remove(self, name: str) -> None:
        if name not in self.names:
            raise FacescaleError(f"no person named {name!r} in the gallery (it has: {_preview(self.names)})")
        i = self.names.index(name)
        del self.names[i]
        self.sums = np.delete(self.sums, i, axis=0)
        self.counts = np.delete(self.counts, i)
        self._index = None

    def centroids(self) -> np.ndarray:
        """float32 ``[P, D]``: each person's mean normalised embedding, re-normalised."""
        return l2_normalize(self.sums.reshape(-1, self.embedding_size), dtype=np.float32)

    def identify(self, embeddings: np.ndarray, threshold: float | None = None) -> list[Match]:
        """The best match for each of the ``[Q, D]`` raw embeddings."""
        if not self.names:
            raise FacescaleError("the gallery is empty: add people with `facescale gallery add` first")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_size:
            raise FacescaleError(
                f"expected query embeddings [Q, {self.embedding_size}], got {embeddings.shape}"
            )
        if len(embeddings) == 0:
            return []
        if self._index is None:
            self._index = FlatIPIndex(self.centroids())
        threshold = self.threshold if threshold is None else threshold
        scores, indices = self._index.search(l2_normalize(embeddings, dtype=np.float32), 1)
        matches = []
        for score, index in zip(scores[:, 0], indices[:, 0]):
            nearest = self.names[int(index)]
            matches.append(Match(nearest if score >= threshold else UNKNOWN, float(score), nearest))
        return matches

    def header(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "names": self.names,
            "embedder": self.embedder,
            "threshold": self.threshold,
        }

    def save(self, path: str | Path) -> None:
        """Write the gallery to ``path`` (safetensors) atomically."""
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {
            "sums": np.ascontiguousarray(self.sums.reshape(-1, self.embedding_size), dtype=np.float32),
            "counts": np.ascontiguousarray(self.counts, dtype=np.int64),
        }
        data = save(tensors, metadata={GALLERY_KEY: json.dumps(self.header())})
        with atomic_output(path) as temp:
            temp.write_bytes(data)

    @classmethod
    def load(cls, path: str | Path) -> Gallery:
        """Read a gallery written by :meth:`save` (safetensors: plain tensors and a JSON header)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FacescaleError(f"gallery {path} does not exist (make one with `facescale gallery build`)")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = (f.metadata() or {}).get(GALLERY_KEY)
                tensors: dict[str, np.ndarray] = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
        except Exception as e:
            raise DataError(f"{path} is not a facescale gallery (safetensors): {e}") from e
        if meta is None or set(tensors) != {"sums", "counts"}:
            raise DataError(
                f"{path} is a safetensors file but not a facescale gallery (no {GALLERY_KEY} entry)"
            )
        header = json.loads(meta)
        if header.get("version") != FORMAT_VERSION:
            raise DataError(f"{path}: gallery format version {header.get('version')} is not {FORMAT_VERSION}")
        names = list(header["names"])
        if len(names) != len(tensors["sums"]) or len(names) != len(tensors["counts"]):
            raise DataError(f"{path}: {len(names)} names but {len(tensors['sums'])} vectors")
        size = int(header["embedder"]["embedding_size"])
        sums = tensors["sums"].reshape(-1, size).astype(np.float32)
        return cls(header["embedder"], float(header["threshold"]), names, sums, tensors["counts"])


def _preview(names: list[str], limit: int = 10) -> str:
    if not names:
        return "nobody"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
