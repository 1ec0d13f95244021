"""ROC, TAR@FAR, AUC, EER and the threshold sweep against naive references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from tar_reference import eval_ijbc_tar, measurable

from facescale.eval.metrics import accuracy_per_threshold, roc_curve, tar_at_fars


def naive_tar_at_far(scores: np.ndarray, genuine: np.ndarray, far: float) -> float:
    """Try every candidate threshold; keep the best TAR whose FAR is at most ``far``."""
    best = 0.0
    for t in np.unique(scores):
        fa = np.mean(scores[~genuine] >= t)
        if fa <= far:
            best = max(best, float(np.mean(scores[genuine] >= t)))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantised", [False, True])
def test_tar_at_far_matches_naive_search(seed: int, quantised: bool) -> None:
    rng = np.random.default_rng(seed)
    genuine = rng.random(3000) < 0.3
    scores = rng.normal(size=3000) + 1.5 * genuine
    if quantised:  # many ties
        scores = np.round(scores, 1)
    fars = (1e-3, 1e-2, 0.05, 0.1, 0.5)
    got = tar_at_fars(scores, genuine, fars, rule="conservative")
    for far in fars:
        assert got[far] == pytest.approx(naive_tar_at_far(scores, genuine, far), abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_headline_tar_is_eval_ijbc_nearest_point(seed: int) -> None:
    """The papers' figure: insightface eval_ijbc.py's rule on sklearn's ROC, ties and all."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2000, 5000))
    genuine = rng.random(n) < rng.uniform(0.05, 0.4)
    scores = rng.normal(size=n) + rng.uniform(0.5, 3) * genuine
    if seed % 2:
        scores = np.round(scores, 1)
    fars = (1e-3, 3e-3, 1e-2, 0.05, 0.1, 0.5)
    got = tar_at_fars(scores, genuine, fars)
    for far in fars:
        assert measurable(genuine, far)
        assert got[far] == eval_ijbc_tar(scores, genuine, far), far


def test_the_two_rules_differ_and_the_conservative_one_never_overshoots() -> None:
    # impostors 0..999; genuines 997.5 (one) and 5000 (three). At FAR 1e-3 the conservative rule
    # accepts one impostor (threshold 999): TAR 0.75. sklearn's ROC drops the collinear point
    # (1e-3, 0.75), so the points nearest FAR 1e-3 are at FAR 0 and 2e-3, equally near; the higher
    # TPR wins the tie: (2e-3, 1.0), an overshoot of the target.
    scores = np.concatenate([np.arange(1000.0), [997.5, 5000, 5000, 5000]])
    genuine = np.concatenate([np.zeros(1000, bool), np.ones(4, bool)])
    assert tar_at_fars(scores, genuine, [1e-3], rule="conservative")[1e-3] == 0.75
    assert tar_at_fars(scores, genuine, [1e-3])[1e-3] == eval_ijbc_tar(scores, genuine, 1e-3) == 1.0


def test_far_below_one_impostor_pair_is_not_measurable() -> None:
    rng = np.random.default_rng(0)
    genuine = np.r_[np.ones(50, bool), np.zeros(550, bool)]
    scores = rng.normal(size=600) + 2 * genuine
    for rule in ("nearest", "conservative"):
        got = tar_at_fars(scores, genuine, (1e-6, 1e-3, 1 / 550, 1e-2), rule=rule)
        assert got[1e-6] is None and got[1e-3] is None
        assert got[1 / 550] is not None and got[1e-2] is not None
    with pytest.raises(ValueError, match="rule"):
        tar_at_fars(scores, genuine, rule="best")


def test_roc_points_are_rates_of_accepting_at_threshold() -> None:
    rng = np.random.default_rng(3)
    genuine = rng.random(500) < 0.5
    scores = np.round(rng.normal(size=500) + genuine, 1)
    curve = roc_curve(scores, genuine)
    for t, fpr, tpr in zip(curve.thresholds[1:], curve.fpr[1:], curve.tpr[1:]):
        assert fpr == pytest.approx(np.mean(scores[~genuine] >= t))
        assert tpr == pytest.approx(np.mean(scores[genuine] >= t))
    assert curve.fpr[-1] == 1.0 and curve.tpr[-1] == 1.0


@pytest.mark.parametrize("seed", [0, 5])
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    genuine = rng.random(2000) < 0.4
    scores = np.round(rng.normal(size=2000) + genuine, 1)
    assert roc_curve(scores, genuine).auc() == pytest.approx(roc_auc_score(genuine, scores), abs=1e-12)


def test_perfect_separation_and_reversal() -> None:
    genuine = np.array([True] * 50 + [False] * 50)
    scores = np.where(genuine, 1.0, 0.0) + np.linspace(0, 0.1, 100)
    curve = roc_curve(scores, genuine)
    assert curve.auc() == 1.0 and curve.eer() == 0.0 and curve.tar_at_far(0.0) == 1.0
    reverse = roc_curve(-scores, genuine)
    assert reverse.auc() == 0.0 and reverse.eer() == 1.0 and reverse.tar_at_far(0.5) == 0.0


def test_eer_known_value() -> None:
    # impostors 0..9, genuines 7..16: accepting >= 7 gives FAR 0.3 and FRR 0.0; >= 8: FAR 0.2, FRR 0.1;
    # >= 9: FAR 0.1, FRR 0.2 -> the curves cross halfway between the last two: EER = 0.15
    impostor = np.arange(10.0)
    genuine_scores = np.arange(7.0, 17.0)
    scores = np.concatenate([impostor, genuine_scores])
    labels = np.concatenate([np.zeros(10, bool), np.ones(10, bool)])
    assert roc_curve(scores, labels).eer() == pytest.approx(0.15)


def test_roc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_curve(np.ones(4), np.ones(4, dtype=bool))


def test_accuracy_per_threshold_matches_naive() -> None:
    rng = np.random.default_rng(4)
    same = rng.random(700) < 0.5
    distances = np.round(rng.uniform(0, 4, 700), 2)  # values on the grid: strict "<" matters
    thresholds = np.arange(0, 4, 0.01)
    naive = np.array([np.mean((distances < t) == same) for t in thresholds])
    np.testing.assert_allclose(accuracy_per_threshold(distances, same, thresholds), naive)
