"""IJB image features, template pooling, pair scoring and 1:N identification against naive loops."""

from __future__ import annotations

import numpy as np
import pytest

from facescale.errors import DataError
from facescale.eval.ijb_identification import identify
from facescale.eval.templates import image_level_features, pool_templates, score_pairs, template_rows


def naive_pool(features: np.ndarray, templates: np.ndarray, medias: np.ndarray):
    """insightface's image2template_feature, loop by loop."""
    unique = np.unique(templates)
    out = np.zeros((len(unique), features.shape[1]))
    for k, t in enumerate(unique):
        in_t = np.where(templates == t)[0]
        media_means = [features[in_t[medias[in_t] == m]].mean(0) for m in np.unique(medias[in_t])]
        out[k] = np.sum(media_means, 0)
    return unique, out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pooling_matches_naive_loop() -> None:
    rng = np.random.default_rng(0)
    m = 400
    templates = rng.choice([3, 17, 40, 41, 99, 1000], size=m)
    medias = rng.integers(500, 520, size=m)  # the same media id occurs in several templates
    features = rng.normal(size=(m, 24)).astype(np.float32) * rng.uniform(0.5, 3, size=(m, 1)).astype(
        np.float32
    )
    ids, pooled = pool_templates(features, templates, medias)
    ref_ids, ref = naive_pool(features.astype(np.float64), templates, medias)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(pooled, ref, rtol=1e-5, atol=1e-6)


def test_a_video_weighs_like_one_photo() -> None:
    # template 1: a photo [1, 0] and a 3-frame video of [0, 1]: the sum of means is [1, 1]
    features = np.array([[1, 0], [0, 1], [0, 1], [0, 1]], dtype=np.float32)
    _ids, pooled = pool_templates(features, np.array([1, 1, 1, 1]), np.array([7, 8, 8, 8]))
    np.testing.assert_allclose(pooled[0], [2**-0.5, 2**-0.5], rtol=1e-6)


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("keep_norm", [True, False])
@pytest.mark.parametrize("use_score", [True, False])
def test_image_level_feature_modes(flip: bool, keep_norm: bool, use_score: bool) -> None:
    rng = np.random.default_rng(1)
    f, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    score = rng.uniform(0.5, 1, size=5)
    got = image_level_features(f.astype(np.float32), g.astype(np.float32), score, flip, keep_norm, use_score)
    for i in range(5):
        x = f[i] + g[i] if flip else f[i]
        if not keep_norm:
            x = x / np.linalg.norm(x)
        if use_score:
            x = x * score[i]
        np.testing.assert_allclose(got[i], x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("num_templates", [7, 50, 5000])  # big groups, groups, nearly unique rows
def test_score_pairs_matches_naive(threads: int, num_templates: int) -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(num_templates, 16)).astype(np.float32)
    r1, r2 = rng.integers(0, num_templates, 9000), rng.integers(0, num_templates, 9000)
    naive = np.array([features[a] @ features[b] for a, b in zip(r1, r2)])
    np.testing.assert_allclose(score_pairs(features, r1, r2, threads=threads), naive, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_template_rows_lookup_and_unknown_ids(sparse: bool) -> None:
    ids = np.array([5, 9, 12, 10**12]) if sparse else np.array([5, 9, 12, 40])
    np.testing.assert_array_equal(
        template_rows(ids, np.array([12, 5, 5, ids[-1]]), "pairs.txt"), [2, 0, 0, 3]
    )
    for unknown in (7, 4, 10**13, -1):
        with pytest.raises(DataError, match=f"pairs.txt: template {unknown} "):
            template_rows(ids, np.array([5, unknown]), "pairs.txt")


def naive_open_set(probe, probe_subjects, gallery, gallery_subjects, fpir):
    """Per-probe loops: rank of the mate (ties against), TPIR at FPIR by trying every threshold."""
    sims = probe @ gallery.T
    subjects = sorted(set(gallery_subjects.tolist()))
    per_subject = np.array(
        [[sims[q, gallery_subjects == s].max() for s in subjects] for q in range(len(probe))]
    )
    mated = np.isin(probe_subjects, subjects)
    ranks, mate_scores = [], []
    for q in np.flatnonzero(mated):
        true = per_subject[q, subjects.index(probe_subjects[q])]
        ranks.append(int(np.sum(per_subject[q] >= true)))
        mate_scores.append(true)
    ranks, mate_scores = np.array(ranks), np.array(mate_scores)
    nonmated_best = per_subject[~mated].max(1)
    best_tpir = 0.0
    for t in np.concatenate([nonmated_best, [np.inf]]):
        if np.mean(nonmated_best > t) <= fpir:  # accepted when the score exceeds t
            best_tpir = max(best_tpir, float(np.mean((ranks == 1) & (mate_scores > t))))
    return ranks, best_tpir


@pytest.mark.parametrize("seed", [0, 1])
def test_identification_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, 8))
    gallery_subjects = np.repeat(np.arange(15), [2] + [1] * 14)  # subject 0 has two templates
    gallery = centres[gallery_subjects] + 0.5 * rng.normal(size=(16, 8))
    probe_subjects = rng.integers(0, 30, 300)  # subjects 15..29 are not enrolled
    probe = centres[probe_subjects] + 0.8 * rng.normal(size=(300, 8))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    result = identify(probe, probe_subjects, gallery, gallery_subjects, "G1", fpirs=(0.01, 0.1, 0.3))
    for fpir in (0.01, 0.1, 0.3):
        ranks, tpir = naive_open_set(probe, probe_subjects, gallery, gallery_subjects, fpir)
        assert result.tpir_at_fpir[fpir] == pytest.approx(tpir)
    for k in (1, 5, 10):
        assert result.rank[k] == pytest.approx(np.mean(ranks <= k))
    assert result.num_mated == int(np.sum(probe_subjects < 15)) and result.num_gallery_subjects == 15


def test_identification_perfect_features() -> None:
    eye = np.eye(6)
    result = identify(eye[[0, 1, 2, 3, 4, 5]], np.arange(6), eye[:3], np.arange(3), "G1")
    assert result.rank[1] == 1.0 and result.tpir_at_fpir[0.01] == 1.0
    assert (result.num_mated, result.num_nonmated) == (3, 3)
