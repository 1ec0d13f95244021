"""ROC-based metrics for similarity scores: TAR at FAR, ROC AUC, EER, and the threshold grid search.

Convention: a higher score means "more likely the same person", and a pair is accepted when its
score is at or above the threshold. A ROC point is kept for every distinct score, so
``fpr[i]`` and ``tpr[i]`` are exactly the rates of accepting ``score >= thresholds[i]``.

TAR at FAR ``f``, two rules, both reported:

* **nearest** (the headline; the papers' rule): insightface's ``eval_ijbc.py``, which every published
  IJB table uses, takes sklearn's ``roc_curve`` (intermediate collinear points dropped), and reads
  the TPR of the point whose FPR is nearest to ``f``, the largest TPR among ties. Its FPR may be
  above ``f``.
* **conservative**: the best TAR over thresholds whose FAR is at most ``f``: with the impostor
  scores sorted in decreasing order and ``k = floor(f * n_impostors)``, the threshold sits just
  above the (k+1)-th largest impostor score. It never overshoots ``f``, so it is <= the nearest
  rule's figure wherever that point's FAR is above ``f``.

A FAR below ``1 / n_impostors`` cannot be measured (one false accept is already more); both rules
give None there, and reports print "n/a (N impostor pairs)".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

STANDARD_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class RocCurve:
    """A ROC curve over distinct score thresholds, starting at (0, 0) with threshold +inf.

    ``fpr``, ``tpr``: float64 ``[K]`` non-decreasing; ``thresholds``: ``[K]`` decreasing.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    num_genuine: int
    num_impostor: int
    _corners: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def tar_at_far(self, far: float) -> float:
        """Conservative rule: the highest TAR whose FAR does not exceed ``far`` (0 when none does)."""
        index = int(np.searchsorted(self.fpr, far, side="right")) - 1
        return float(self.tpr[index]) if index >= 0 else 0.0

    def measurable(self, far: float) -> bool:
        """Whether ``far`` is at least one impostor pair's worth (1 / num_impostor)."""
        return far * self.num_impostor >= 1.0

    def tar_at_far_nearest(self, far: float) -> float:
        """eval_ijbc.py's rule: the TPR of the ROC corner whose FPR is nearest ``far`` (the highest
        TPR among equally near points), on the curve sklearn's ``roc_curve`` returns."""
        fpr, tpr = self.corners()
        distance = np.abs(fpr - far)
        # eval_ijbc.py flips the curve and takes min((distance, index)): of equal distances the
        # one latest on the unflipped curve, i.e. the highest TPR
        nearest = np.flatnonzero(distance == distance.min())[-1]
        return float(tpr[nearest])

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, tpr)`` as sklearn's ``roc_curve(drop_intermediate=True)`` gives them: the first
        and last point, and every point where the curve's counts bend (a non-zero second
        difference of the false or true accept counts), after the (0, 0) start. Computed once."""
        if self._corners is not None:
            return self._corners
        fp = np.rint(self.fpr[1:] * self.num_impostor)
        tp = np.rint(self.tpr[1:] * self.num_genuine)
        if len(fp) > 2:
            keep = np.flatnonzero(np.r_[True, (np.diff(fp, 2) != 0) | (np.diff(tp, 2) != 0), True]) + 1
            index = np.concatenate([[0], keep])
        else:
            index = np.arange(len(self.fpr))
        self._corners = (self.fpr[index], self.tpr[index])
        return self._corners

    def tar_at_far_both(self, far: float) -> tuple[float | None, float | None]:
        """``(nearest, conservative)`` TAR at ``far``; ``(None, None)`` when ``far`` is not measurable."""
        if not self.measurable(far):
            return None, None
        return self.tar_at_far_nearest(far), self.tar_at_far(far)

    def auc(self) -> float:
        """Area under the ROC (trapezoids; ties count half, like the Mann-Whitney statistic)."""
        return float(np.sum(np.diff(self.fpr) * (self.tpr[1:] + self.tpr[:-1]) / 2.0))

    def eer(self) -> float:
        """Equal error rate: where FPR = FNR = 1 - TPR, linearly interpolated between ROC points."""
        gap = self.fpr - (1.0 - self.tpr)  # increases from -1 to +1 along the curve
        after = int(np.searchsorted(gap, 0.0, side="left"))
        if after == 0:
            return float(self.fpr[0])
        if after >= len(gap):
            return float(self.fpr[-1])
        g0, g1 = gap[after - 1], gap[after]
        w = 0.0 if g1 == g0 else -g0 / (g1 - g0)
        return float(self.fpr[after - 1] + w * (self.fpr[after] - self.fpr[after - 1]))

    def downsampled(self, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, tpr)`` thinned to about ``max_points`` points, log-spaced in FPR, for plots."""
        if len(self.fpr) <= max_points:
            return self.fpr, self.tpr
        positive = self.fpr[self.fpr > 0]
        lo = positive[0] if len(positive) else 1e-12
        grid = np.geomspace(lo, 1.0, max_points)
        index = np.clip(np.searchsorted(self.fpr, grid, side="right") - 1, 0, len(self.fpr) - 1)
        index = np.unique(np.concatenate([[0], index, [len(self.fpr) - 1]]))
        return self.fpr[index], self.tpr[index]


def roc_curve(scores: np.ndarray, is_genuine: np.ndarray) -> RocCurve:
    """The ROC of ``scores`` ``[P]`` (higher = same) against ``is_genuine`` ``[P]`` bool.

    Raises ValueError when either class is empty (no rate can be defined).
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(is_genuine, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores but {labels.shape[0]} labels")
    num_genuine = int(labels.sum())
    num_impostor = int(labels.size - num_genuine)
    if num_genuine == 0 or num_impostor == 0:
        raise ValueError(f"a ROC needs both classes: {num_genuine} genuine, {num_impostor} impostor pairs")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} scores are NaN (features with NaN or zero norm?)")
    # Sorting the two classes apart and merging is several times faster than one argsort:
    # numpy's value sort is vectorised, and the genuine class is tiny (IJB-C: 19,557 of 15.6M).
    impostor = np.sort(scores[~labels])
    genuine = np.sort(scores[labels])
    at = np.searchsorted(impostor, genuine, side="left") + np.arange(num_genuine)
    is_genuine_sorted = np.zeros(scores.size, dtype=bool)
    is_genuine_sorted[at] = True
    sorted_scores = np.empty(scores.size, dtype=scores.dtype)
    sorted_scores[at] = genuine
    sorted_scores[~is_genuine_sorted] = impostor
    sorted_scores, is_genuine_sorted = sorted_scores[::-1], is_genuine_sorted[::-1]  # descending
    true_accepts = np.cumsum(is_genuine_sorted, dtype=np.int64)
    # the last position of each run of equal scores: accepting ">= that score" takes the whole run
    last_of_run = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    last_of_run = np.append(last_of_run, sorted_scores.size - 1)
    tp = true_accepts[last_of_run]
    fp = (last_of_run + 1) - tp
    return RocCurve(
        fpr=np.concatenate([[0.0], fp / num_impostor]),
        tpr=np.concatenate([[0.0], tp / num_genuine]),
        thresholds=np.concatenate([[np.inf], sorted_scores[last_of_run].astype(np.float64)]),
        num_genuine=num_genuine,
        num_impostor=num_impostor,
    )


TAR_RULES = ("nearest", "conservative")


def tar_at_fars(
    scores: np.ndarray,
    is_genuine: np.ndarray,
    fars: Sequence[float] = STANDARD_FARS,
    rule: str = "nearest",
) -> dict[float, float | None]:
    """``{far: TAR}`` for each FAR in ``fars`` by ``rule`` (nearest | conservative; see the module
    docstring); None where the FAR is below 1 / #impostor pairs."""
    if rule not in TAR_RULES:
        raise ValueError(f"TAR rule {rule!r} is not one of {', '.join(TAR_RULES)}")
    curve = roc_curve(scores, is_genuine)
    return {float(f): curve.tar_at_far_both(f)[TAR_RULES.index(rule)] for f in fars}


def accuracy_per_threshold(distances: np.ndarray, is_same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of predicting "same" when ``distance < threshold``, for every threshold.

    ``distances``, ``is_same``: ``[N]``; ``thresholds``: ``[T]`` -> ``[T]`` accuracies. Computed
    from one sort and cumulative counts, so T x N comparisons are never materialised.
    """
    distances = np.asarray(distances, dtype=np.float64)
    is_same = np.asarray(is_same, dtype=bool)
    order = np.argsort(distances, kind="stable")
    sorted_distances = distances[order]
    same_below = np.concatenate([[0], np.cumsum(is_same[order], dtype=np.int64)])
    below = np.searchsorted(sorted_distances, thresholds, side="left")  # count of distance < t
    true_accepts = same_below[below]
    false_accepts = below - true_accepts
    true_rejects = (is_same.size - int(is_same.sum())) - false_accepts
    return (true_accepts + true_rejects) / max(is_same.size, 1)
