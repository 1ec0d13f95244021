"""A gallery of known people: one L2-normalised mean embedding per person, searched with faiss.

File format (no pickle anywhere; loading runs no code): one safetensors file holding
``sums`` float32 ``[P, D]`` (per person, the sum of the L2-normalised embeddings of their
photos, so more photos can be added exactly later) and ``counts`` int64 ``[P]`` (photos per
person), with a JSON header entry ``facescale.gallery``: names, the embedder that made the
vectors (name, fingerprint, size, the model source it was opened from), the match threshold and
where it came from, and the search index with its parameters. An approximate (ivf) index also
stores its trained list centres ``ivf_centres`` float32 ``[nlist, D]`` and each person's list
``ivf_lists`` int64 ``[P]``, so loading rebuilds it without training. A gallery refuses queries
from an embedder with another fingerprint: embeddings of two models live in unrelated spaces.

Search is inner product between L2-normalised vectors, i.e. cosine similarity, exact below
``gallery_index.EXACT_MAX`` people and approximate above (see ``facescale.deploy.gallery_index``);
a person is named when the best score reaches the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facescale.atomic import atomic_output
from facescale.deploy.embedder import Embedder
from facescale.deploy.gallery_file import FORMAT_VERSION, GALLERY_KEY, read_gallery_file
from facescale.deploy.gallery_index import (
    KINDS,
    IndexSpec,
    SearchIndex,
    assign_lists,
    choose_spec,
    train_centres,
)
from facescale.errors import FacescaleError
from facescale.models.embeddings import l2_normalize

__all__ = ["GALLERY_KEY", "UNKNOWN", "Gallery", "Match", "default_threshold"]

UNKNOWN = "unknown"
# Cosine similarity above which a face is named, for models that carry no measured threshold:
# ArcFace-style models put different people near 0 and the same person well above 0.3.
DEFAULT_THRESHOLD = 0.35


def default_threshold(embedder: Embedder) -> float:
    """The embedder's ``suggested_threshold`` when it has one, else :data:`DEFAULT_THRESHOLD`."""
    return float(getattr(embedder, "suggested_threshold", DEFAULT_THRESHOLD))


@dataclass
class Match:
    """The best gallery entry for one face: ``name`` is ``"unknown"`` below the threshold.

    ``nearest`` and ``score`` are the best entry and its cosine whatever the decision (``nearest``
    is None only when an approximate index reached no entry).
    """

    name: str
    score: float
    nearest: str | None
    threshold: float

    @property
    def known(self) -> bool:
        return self.name != UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decision": "known" if self.known else "unknown",
            "nearest": self.nearest,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
        }


@dataclass
class Gallery:
    """People known by name; ``sums[i]`` / ``counts[i]`` belong to ``names[i]``.

    ``index_choice``: ``auto`` (exact up to ``EXACT_MAX`` people, ivf above), ``flat`` or ``ivf``.
    ``index_spec``, ``ivf_centres`` ``[nlist, D]`` and ``ivf_lists`` ``[P]`` (-1: not assigned
    yet) describe the index as last built; they are saved so loading needs no training.
    """

    embedder: dict[str, Any]
    threshold: float
    names: list[str] = field(default_factory=list)
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    threshold_source: str = ""
    index_choice: str = "auto"
    index_spec: IndexSpec | None = None
    ivf_centres: np.ndarray | None = field(default=None, repr=False)
    ivf_lists: np.ndarray | None = field(default=None, repr=False)
    _index: SearchIndex | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.index_choice not in ("auto", *KINDS):
            raise FacescaleError(
                f"unknown gallery index {self.index_choice!r}; choose auto, {', '.join(KINDS)}"
            )

    @classmethod
    def for_embedder(
        cls,
        embedder: Embedder,
        threshold: float,
        source: str = "",
        threshold_source: str = "",
        index: str = "auto",
    ) -> Gallery:
        """An empty gallery tied to ``embedder`` (``source`` is how it was opened, for later commands)."""
        info = {
            "name": embedder.name,
            "fingerprint": embedder.fingerprint,
            "embedding_size": int(embedder.embedding_size),
            "source": source,
        }
        empty = np.zeros((0, embedder.embedding_size), np.float32)
        return cls(info, float(threshold), [], empty, threshold_source=threshold_source, index_choice=index)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def embedding_size(self) -> int:
        return int(self.embedder["embedding_size"])

    def check_embedder(self, embedder: Embedder, where: str = "gallery") -> None:
        """Raise unless ``embedder`` is the model this gallery was built with."""
        if int(embedder.embedding_size) != self.embedding_size:
            raise FacescaleError(
                f"{where} holds {self.embedding_size}-d embeddings of model {self.embedder['name']}, but "
                f"{embedder.name} makes {embedder.embedding_size}-d ones ({self.embedding_size}-d vs "
                f"{embedder.embedding_size}-d): use the gallery's model or rebuild the gallery"
            )
        if embedder.fingerprint != self.embedder["fingerprint"]:
            raise FacescaleError(
                f"{where} was built with model {self.embedder['name']} (fingerprint "
                f"{self.embedder['fingerprint']}), not {embedder.name} (fingerprint {embedder.fingerprint}); "
                "embeddings of different models cannot be compared: use the same model or rebuild the gallery"
            )

    def _lists(self) -> np.ndarray:
        if self.ivf_lists is None or len(self.ivf_lists) != len(self.names):
            return np.full(len(self.names), -1, np.int64)
        return self.ivf_lists

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
        if not np.isfinite(embeddings).all():
            raise FacescaleError(f"person {name!r}: an embedding holds NaN or infinity")
        total = l2_normalize(embeddings, dtype=np.float32).sum(0)
        lists = self._lists()
        if name in self.names:
            i = self.names.index(name)
            self.sums[i] += total
            self.counts[i] += len(embeddings)
            lists[i] = -1  # the person's vector moved: assign it to a list again
        else:
            self.names.append(name)
            self.sums = np.concatenate([self.sums.reshape(-1, self.embedding_size), total[None]])
            self.counts = np.concatenate([self.counts, [len(embeddings)]]).astype(np.int64)
            lists = np.concatenate([lists, [-1]]).astype(np.int64)
        self.ivf_lists = lists
        self._index = None

    def remove(self, name: str) -> None:
        if name not in self.names:
            raise FacescaleError(f"no person named {name!r} in the gallery (it has: {_preview(self.names)})")
        i = self.names.index(name)
        lists = self._lists()
        del self.names[i]
        self.sums = np.delete(self.sums, i, axis=0)
        self.counts = np.delete(self.counts, i)
        self.ivf_lists = np.delete(lists, i)
        self._index = None

    def centroids(self) -> np.ndarray:
        """float32 ``[P, D]``: each person's mean normalised embedding, re-normalised."""
        return l2_normalize(self.sums.reshape(-1, self.embedding_size), dtype=np.float32)

    def _wanted_spec(self) -> IndexSpec:
        size = len(self)
        if self.index_choice == "auto":
            return choose_spec(size)
        if self.index_choice == "flat":
            return IndexSpec("flat")
        spec = choose_spec(size, exact_max=0)
        nlist = min(spec.nlist, max(1, size // 32))  # k-means needs a few dozen vectors per list
        return IndexSpec("ivf", nlist, min(spec.nprobe, nlist))

    def prepare_index(self) -> IndexSpec:
        """Bring the index description up to date with the people (training only when the kind changes
        or the gallery outgrew its lists 16-fold); the spec that search will use."""
        wanted, current = self._wanted_spec(), self.index_spec
        retrain = (
            current is None
            or current.kind != wanted.kind
            or (wanted.kind == "ivf" and (self.ivf_centres is None or wanted.nlist > 4 * current.nlist))
        )
        spec = wanted if retrain or current is None else current
        if spec.kind == "ivf":
            vectors = self.centroids()
            if retrain or self.ivf_centres is None:
                self.ivf_centres = train_centres(vectors, spec.nlist)
                self.ivf_lists = np.full(len(self), -1, np.int64)
            lists = self._lists().copy()
            stale = lists < 0
            if stale.any():
                lists[stale] = assign_lists(vectors[stale], self.ivf_centres)
            self.ivf_lists = lists
        else:
            self.ivf_centres, self.ivf_lists = None, None
        if spec != current:
            self._index = None
        self.index_spec = spec
        return spec

    def set_nprobe(self, nprobe: int) -> None:
        """Scan ``nprobe`` inverted lists per query (an ivf gallery only); saved with the gallery."""
        spec = self.prepare_index()
        if spec.kind != "ivf":
            raise FacescaleError(
                f"--nprobe applies to an approximate (ivf) gallery; this one is {spec.describe()}"
            )
        self.index_spec = IndexSpec("ivf", spec.nlist, nprobe)
        self._index = None

    def search_index(self) -> SearchIndex:
        """The faiss index over :meth:`centroids`, built on first use."""
        spec = self.prepare_index()
        if self._index is None:
            self._index = SearchIndex(self.centroids(), spec, self.ivf_centres, self.ivf_lists)
        return self._index

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
        threshold = self.threshold if threshold is None else threshold
        scores, indices = self.search_index().search(l2_normalize(embeddings, dtype=np.float32), 1)
        matches = []
        for score, index in zip(scores[:, 0], indices[:, 0]):
            if index < 0:  # an approximate index found nobody in the lists it scanned
                matches.append(Match(UNKNOWN, -1.0, None, threshold))
                continue
            nearest = self.names[int(index)]
            matches.append(
                Match(nearest if score >= threshold else UNKNOWN, float(score), nearest, threshold)
            )
        return matches

    def header(self) -> dict[str, Any]:
        spec = self.prepare_index()
        return {
            "version": FORMAT_VERSION,
            "names": self.names,
            "embedder": self.embedder,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "index_choice": self.index_choice,
            "index": spec.to_dict(),
        }

    def save(self, path: str | Path) -> None:
        """Write the gallery to ``path`` (safetensors) atomically."""
        from safetensors.numpy import save

        header = self.header()  # first: it may train or update the index description
        tensors: dict[str, np.ndarray] = {
            "sums": np.ascontiguousarray(self.sums.reshape(-1, self.embedding_size), dtype=np.float32),
            "counts": np.ascontiguousarray(self.counts, dtype=np.int64),
        }
        if self.ivf_centres is not None and self.ivf_lists is not None:
            tensors["ivf_centres"] = np.ascontiguousarray(self.ivf_centres, dtype=np.float32)
            tensors["ivf_lists"] = np.ascontiguousarray(self.ivf_lists, dtype=np.int64)
        data = save(tensors, metadata={GALLERY_KEY: json.dumps(header)})
        with atomic_output(path) as temp:
            temp.write_bytes(data)

    @classmethod
    def load(cls, path: str | Path) -> Gallery:
        """Read a gallery written by :meth:`save`; every inconsistency is a DataError naming ``path``."""
        return cls(**read_gallery_file(path))


def _preview(names: list[str], limit: int = 10) -> str:
    if not names:
        return "nobody"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
