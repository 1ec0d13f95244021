"""Calibrating a gallery's threshold from impostor scores: how alike do different people look here?

Every pair of enrolled people is an impostor pair: their cosine scores are the distribution a
stranger's scores come from (the model's, on this population). The threshold for a target
per-comparison false accept rate FAR is the lowest cosine ``t`` at which at most ``FAR`` of the
impostor scores are ``>= t``; a FAR below ``1 / impostor pairs`` is not measurable. A verification
bin's impostor pairs (scored with the gallery's model) can be pooled in.

For 1:N use, the second figure matters too: a stranger is compared with all P people at once, so
what names them is their *best* impostor score. Leaving each enrolled person out in turn and
taking their best score among the others gives that distribution; its quantile is the threshold
at which a stranger is named with at most a given probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facescale.deploy.gallery import Gallery
from facescale.errors import FacescaleError

# Above this many impostor pairs (P > ~4,500 people) a uniform sample of pairs is scored.
MAX_PAIRS = 10_000_000
# People left out in turn for the best-impostor distribution (all of them below this).
MAX_LEAVE_ONE_OUT = 20_000
# Pairs scored per gather: two [chunk, D] float32 copies, 128 MiB each at 512-d.
PAIR_CHUNK = 1 << 16


def impostor_scores(vectors: np.ndarray, max_pairs: int = MAX_PAIRS, seed: int = 0) -> np.ndarray:
    """Cosines of distinct pairs of the unit rows of ``vectors`` ``[P, D]`` -> float64 ``[pairs]``.

    All ``P (P - 1) / 2`` pairs when they are at most ``max_pairs``, else a uniform sample of
    ``max_pairs`` pairs (with replacement, never a row with itself).
    """
    count = len(vectors)
    if count < 2:
        raise FacescaleError(f"calibration needs at least 2 people in the gallery, it has {count}")
    if count * (count - 1) // 2 <= max_pairs:
        rows, cols = np.triu_indices(count, k=1)
    else:
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, count, max_pairs)
        cols = (rows + rng.integers(1, count, max_pairs)) % count  # uniform over the others
    scores = np.empty(len(rows), np.float64)
    for start in range(0, len(rows), PAIR_CHUNK):  # two [chunk, D] gathers, not a [P, P] matrix
        r, c = rows[start : start + PAIR_CHUNK], cols[start : start + PAIR_CHUNK]
        scores[start : start + len(r)] = np.einsum("ij,ij->i", vectors[r], vectors[c])
    return scores


def threshold_for_far(scores: np.ndarray, far: float) -> float | None:
    """The lowest cosine ``t`` with ``mean(scores >= t) <= far``; None when ``far < 1 / len(scores)``.

    ``t`` is just above the ``floor(far * n) + 1``-th highest score, so exactly ``floor(far * n)``
    impostor scores (ties included or excluded together) reach it.
    """
    scores = np.asarray(scores, np.float64).ravel()
    if not 0 < far < 1:
        raise FacescaleError(f"FAR must be in (0, 1), got {far}")
    allowed = int(np.floor(far * len(scores) + 1e-9))
    if allowed < 1:
        return None
    # the (allowed + 1)-th highest score: a linear-time selection, not a sort of every pair
    kth = len(scores) - 1 - allowed
    return float(np.nextafter(np.partition(scores, kth)[kth], np.inf))


def best_impostor_scores(gallery: Gallery, max_people: int = MAX_LEAVE_ONE_OUT, seed: int = 0) -> np.ndarray:
    """For (up to ``max_people``) enrolled people, their best cosine among the *other* people."""
    vectors = gallery.centroids()
    if len(vectors) < 2:
        raise FacescaleError(f"calibration needs at least 2 people in the gallery, it has {len(vectors)}")
    chosen = np.arange(len(vectors))
    if len(chosen) > max_people:
        chosen = np.sort(np.random.default_rng(seed).choice(len(vectors), max_people, replace=False))
    scores, ids = gallery.search_index().search(vectors[chosen], 2)
    # The person themself is the first hit (score 1); when an approximate index returns them
    # second (a duplicate vector) or misses them, take the best hit that is someone else.
    best = np.where(ids[:, 0] == chosen, scores[:, 1], scores[:, 0])
    return best.astype(np.float64)


@dataclass
class Calibration:
    """Thresholds per target FAR (None: not measurable) and what they were measured on."""

    fars: list[float]
    per_comparison: dict[float, float | None]
    stranger_named: dict[float, float | None]
    impostor_pairs: int
    bin_pairs: int = 0
    people: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"{self.impostor_pairs:,} impostor pairs ({self.people:,} enrolled people"
            + (f", {self.bin_pairs:,} from the verification bin)" if self.bin_pairs else ")")
        ]
        for far in self.fars:
            t = self.per_comparison[far]
            s = self.stranger_named[far]
            lines.append(
                f"FAR {far:g} per comparison: "
                + (f"threshold {t:.4f}" if t is not None else "not measurable (too few pairs)")
                + f"; a stranger named with probability <= {far:g}: "
                + (f"threshold {s:.4f}" if s is not None else "not measurable (too few people)")
            )
        return "\n".join(lines + self.notes)


def calibrate(
    gallery: Gallery,
    fars: list[float],
    extra_impostor_scores: np.ndarray | None = None,
    max_pairs: int = MAX_PAIRS,
) -> Calibration:
    """Thresholds at each of ``fars`` from the gallery's impostor pairs (plus ``extra_impostor_scores``,
    e.g. a verification bin's impostor cosines with the same model)."""
    scores = impostor_scores(gallery.centroids(), max_pairs)
    pairs = len(scores)
    extra = 0
    if extra_impostor_scores is not None and len(extra_impostor_scores):
        extra = len(extra_impostor_scores)
        scores = np.concatenate([scores, np.asarray(extra_impostor_scores, np.float64)])
    best = best_impostor_scores(gallery)
    return Calibration(
        fars=list(fars),
        per_comparison={far: threshold_for_far(scores, far) for far in fars},
        stranger_named={far: threshold_for_far(best, far) for far in fars},
        impostor_pairs=pairs + extra,
        bin_pairs=extra,
        people=len(gallery),
    )
