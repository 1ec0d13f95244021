"""The 10-fold verification protocol: known answers, and insightface's computation written naively."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold
from tar_reference import eval_ijbc_tar, naive_conservative_tar

from facescale.eval.verification import (
    evaluate_verification,
    fold_bounds,
    format_result,
    protocol_embeddings,
    verify_distances,
)


def naive_protocol(embeddings: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """insightface's calculate_roc/calculate_accuracy, loop by loop, with sklearn's KFold."""
    e1, e2 = embeddings[0::2].astype(np.float64), embeddings[1::2].astype(np.float64)
    dist = np.sum(np.square(e1 - e2), 1)
    thresholds = np.arange(0, 4, 0.01)

    def accuracy(t: float, d: np.ndarray, same: np.ndarray) -> float:
        predict = np.less(d, t)
        tp = np.sum(predict & same)
        tn = np.sum(~predict & ~same)
        return (tp + tn) / d.size

    accs = []
    for train, test in KFold(n_splits=10, shuffle=False).split(np.arange(len(issame))):
        train_acc = [accuracy(t, dist[train], issame[train]) for t in thresholds]
        best = thresholds[int(np.argmax(train_acc))]
        accs.append(accuracy(best, dist[test], issame[test]))
    return float(np.mean(accs)), float(np.std(accs))


def random_projection_embed(dim: int = 16, seed: int = 0):
    """A deterministic "model": a fixed linear map of the pixels (not mirror symmetric)."""
    weights = np.random.default_rng(seed).normal(size=(8 * 8 * 3, dim)).astype(np.float32)

    def embed(images: np.ndarray) -> np.ndarray:
        assert images.dtype == np.uint8 and images.ndim == 4
        return (images.reshape(len(images), -1).astype(np.float32) / 255.0) @ weights

    return embed


@pytest.mark.parametrize("num_pairs", [10, 57, 300])
def test_fold_bounds_match_sklearn_kfold(num_pairs: int) -> None:
    expected = [(t[0], t[-1] + 1) for _, t in KFold(n_splits=10, shuffle=False).split(np.arange(num_pairs))]
    assert fold_bounds(num_pairs) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_protocol_matches_naive_insightface(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 203  # not a multiple of 10: uneven folds
    issame = rng.random(n) < 0.5
    base = rng.normal(size=(n, 8))
    other = np.where(issame[:, None], base + 0.6 * rng.normal(size=(n, 8)), rng.normal(size=(n, 8)))
    emb = np.empty((2 * n, 8))
    emb[0::2], emb[1::2] = base, other
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    dist = np.sum((emb[0::2] - emb[1::2]) ** 2, 1)
    result = verify_distances(dist, issame)
    mean, std = naive_protocol(emb, issame)
    assert result.accuracy_mean == pytest.approx(mean, abs=1e-12)
    assert result.accuracy_std == pytest.approx(std, abs=1e-12)


def test_perfect_separation_scores_one() -> None:
    issame = np.tile([True, False], 1000)
    dist = np.where(issame, 0.3, 2.5)
    r = verify_distances(dist, issame)
    assert r.accuracy_mean == 1.0 and r.accuracy_std == 0.0 and r.accuracy_highest == 1.0
    assert r.roc_auc == 1.0 and r.eer == 0.0 and r.tar_at_far_1e3 == r.tar_at_far_1e3_conservative == 1.0


def test_tar_at_1e3_is_the_papers_rule_with_the_conservative_beside_it() -> None:
    rng = np.random.default_rng(2)
    issame = np.tile([True, False], 3000)
    dist = np.round(rng.uniform(0, 4, 6000) - 1.2 * issame, 2)
    r = verify_distances(dist, issame)
    assert r.num_impostor == 3000
    assert r.tar_at_far_1e3 == eval_ijbc_tar(-dist, issame, 1e-3)
    assert r.tar_at_far_1e3_conservative == naive_conservative_tar(-dist, issame, 1e-3)
    assert "curve" not in r.to_dict() and r.to_dict()["tar_at_far_1e3_conservative"] is not None
    assert f"TAR@FAR=1e-3: {r.tar_at_far_1e3:.5f} (FAR<=1e-3: " in format_result("x", r)


def test_tar_at_1e3_on_fewer_than_1000_impostor_pairs_is_na() -> None:
    issame = np.tile([True, False], 300)
    r = verify_distances(np.where(issame, 0.3, 2.5), issame)
    assert r.tar_at_far_1e3 is None and r.tar_at_far_1e3_conservative is None
    assert "TAR@FAR=1e-3: n/a (300 impostor pairs)" in format_result("x", r)
    assert 0.3 < r.best_threshold <= 2.5


def test_chance_when_distances_carry_no_information() -> None:
    issame = np.tile([True, False], 50)  # every fold balanced
    r = verify_distances(np.ones(100), issame)
    assert r.accuracy_mean == 0.5 and r.accuracy_highest == 0.5
    assert r.roc_auc == 0.5 and r.eer == pytest.approx(0.5)


def test_known_threshold() -> None:
    # same pairs at 1.000..1.185, different at 1.195..1.4: only the grid threshold 1.19 separates
    # them (predict same when distance < 1.19), on the whole set and on every 9-fold training part
    issame = np.tile([True, False], 100)
    dist = np.empty(200)
    dist[issame] = np.tile(np.linspace(1.0, 1.185, 10), 10)  # every fold spans the whole range
    dist[~issame] = np.tile(np.linspace(1.195, 1.4, 10), 10)
    r = verify_distances(dist, issame)
    assert r.accuracy_mean == 1.0
    assert r.best_threshold == pytest.approx(1.19)
    assert r.fold_thresholds == pytest.approx([1.19] * 10)


def test_flip_fusion_matches_naive_reference() -> None:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    embed = random_projection_embed()
    fused, xnorm = protocol_embeddings(embed, images, flip=True, batch_size=7)
    raw_norms = []
    for i, image in enumerate(images):
        f = embed(image[None])[0]
        g = embed(image[None, :, ::-1].copy())[0]  # mirrored left-right
        raw_norms += [np.linalg.norm(f), np.linalg.norm(g)]
        expected = (f + g) / np.linalg.norm(f + g)
        np.testing.assert_allclose(fused[i], expected, rtol=1e-5, atol=1e-6)
    assert xnorm == pytest.approx(np.mean(raw_norms), rel=1e-5)
    plain, xnorm_plain = protocol_embeddings(embed, images, flip=False, batch_size=64)
    f_all = embed(images)
    np.testing.assert_allclose(
        plain, f_all / np.linalg.norm(f_all, axis=1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    assert xnorm_plain == pytest.approx(np.linalg.norm(f_all, axis=1).mean(), rel=1e-5)


def test_evaluate_verification_end_to_end_matches_naive() -> None:
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(120, 8, 8, 3), dtype=np.uint8)
    images[1::4] = images[0::4]  # pairs 0, 2, 4, ... are identical images: same person
    issame = np.arange(60) % 2 == 0
    embed = random_projection_embed()
    calls: list[int] = []
    result = evaluate_verification(embed, images, issame, flip=True, batch_size=32, progress=calls.append)
    assert sum(calls) == 240
    f = embed(images) + embed(images[:, :, ::-1].copy())
    mean, std = naive_protocol(f / np.linalg.norm(f, axis=1, keepdims=True), issame)
    assert result.accuracy_mean == pytest.approx(mean) and result.accuracy_std == pytest.approx(std)
    assert result.accuracy_mean == 1.0 and result.num_pairs == 60
    line = format_result("toy", result)
    assert line.startswith("[toy] XNorm: ") and "Accuracy-Flip: 1.00000+-0.00000" in line
    assert set(result.to_dict()) >= {
        "accuracy_mean",
        "accuracy_std",
        "xnorm",
        "tar_at_far_1e3",
        "roc_auc",
        "eer",
    }


def test_bad_inputs_are_refused() -> None:
    embed = random_projection_embed()
    with pytest.raises(ValueError, match="pairs"):
        evaluate_verification(embed, np.zeros((5, 8, 8, 3), np.uint8), np.ones(2, bool))
    with pytest.raises(ValueError, match="10 folds"):
        verify_distances(np.ones(4), np.ones(4, bool))
