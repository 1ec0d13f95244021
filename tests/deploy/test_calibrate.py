"""Gallery calibration on planted impostor scores, and measured thresholds written with the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from deploy_testnets import FakeEmbedder

from facescale.deploy.calibrate import best_impostor_scores, calibrate, impostor_scores, threshold_for_far
from facescale.deploy.gallery import Gallery
from facescale.eval.metrics import roc_curve
from facescale.eval.thresholds import (
    pick_threshold,
    read_thresholds,
    thresholds_from_curve,
    thresholds_from_distances,
    write_thresholds,
)


def test_threshold_for_far_lets_exactly_the_allowed_share_through() -> None:
    scores = np.random.default_rng(0).permutation(np.arange(10_000) / 10_000)
    for far in (1e-2, 1e-3, 1e-4):
        t = threshold_for_far(scores, far)
        assert t is not None and np.sum(scores >= t) == round(far * 10_000)
        assert np.sum(scores >= np.nextafter(t, -np.inf) - 1e-4) > far * 10_000  # any lower lets more in
    assert threshold_for_far(scores, 1e-5) is None  # below one pair's worth: not measurable


def planted_gallery(planted: list[float]) -> Gallery:
    """200 orthogonal people (impostor cosine 0), with some pairs planted at the given cosines."""
    gallery = Gallery.for_embedder(FakeEmbedder(embedding_size=256), 0.5)
    basis = np.eye(256, dtype=np.float32)[:200]
    for k, cos in enumerate(planted):  # person 2k+1 moves towards person 2k
        a = basis[2 * k]
        b = basis[2 * k + 1]
        basis[2 * k + 1] = cos * a + np.sqrt(1 - cos**2) * b
    for i, v in enumerate(basis):
        gallery.add(f"p{i}", v[None])
    return gallery


def test_calibration_finds_the_planted_impostors() -> None:
    gallery = planted_gallery([0.9, 0.8, 0.7])
    scores = impostor_scores(gallery.centroids())
    assert len(scores) == 200 * 199 // 2
    np.testing.assert_allclose(np.sort(scores)[-3:], [0.7, 0.8, 0.9], atol=1e-6)
    result = calibrate(gallery, [1e-4, 2e-4, 1e-3])
    # 19,900 pairs: FAR 1e-4 allows 1 pair (0.9), 2e-4 allows 3 (all planted), 1e-3 allows 19
    assert result.per_comparison[1e-4] == pytest.approx(0.8, abs=1e-6)
    assert result.per_comparison[1e-4] > 0.8
    assert result.per_comparison[2e-4] == pytest.approx(0.0, abs=1e-6)
    # best impostor per person: 6 people have a planted partner, 194 score 0
    best = np.sort(best_impostor_scores(gallery))
    np.testing.assert_allclose(best[-6:], [0.7, 0.7, 0.8, 0.8, 0.9, 0.9], atol=1e-6)
    assert result.stranger_named[1e-3] is None  # 200 people cannot measure 1e-3


def test_calibration_pools_a_bins_impostor_scores() -> None:
    gallery = planted_gallery([0.9])
    extra = np.full(100, 0.95)
    result = calibrate(gallery, [5e-3], extra)
    assert result.impostor_pairs == 19_900 + 100 and result.bin_pairs == 100
    # 20,000 pairs at 5e-3 allow 100: the bin's 100 at 0.95 pass, the planted 0.9 does not
    assert result.per_comparison[5e-3] == pytest.approx(0.9, abs=1e-6)
    assert result.per_comparison[5e-3] > 0.9


def test_sampled_pairs_when_the_gallery_is_large() -> None:
    vectors = np.eye(64, dtype=np.float32)
    scores = impostor_scores(vectors, max_pairs=500)
    assert len(scores) == 500 and np.all(scores == 0)  # never a person with themself (score 1)


def test_verification_thresholds_from_planted_pairs() -> None:
    rng = np.random.default_rng(0)
    impostor_cos = rng.uniform(-0.2, 0.3, 5000)
    genuine_cos = rng.uniform(0.2, 0.9, 1000)
    cos = np.concatenate([impostor_cos, genuine_cos])
    issame = np.r_[np.zeros(5000, bool), np.ones(1000, bool)]
    found = thresholds_from_distances(2 - 2 * cos, issame)
    t = found["1e-03"]["cosine"]
    assert found["1e-03"]["impostor_pairs"] == 5000
    assert np.sum(impostor_cos >= t - 1e-9) <= 5 and np.sum(impostor_cos >= np.sort(impostor_cos)[-6]) == 6
    assert t == pytest.approx(np.sort(impostor_cos)[-6], abs=1e-9) or t > np.sort(impostor_cos)[-6]
    assert found["1e-03"]["tar"] == pytest.approx(np.mean(genuine_cos >= t - 1e-9), abs=1e-3)
    assert found["1e-04"]["cosine"] is None  # 5,000 impostors cannot measure 1e-4


def test_thresholds_round_trip_through_backbone_json(tmp_path: Path) -> None:
    (tmp_path / "backbone.json").write_text(json.dumps({"name": "mbf_tiny", "kwargs": {}}))
    scores = np.r_[np.linspace(-1, 0, 20_000), np.linspace(0.5, 1, 100)]
    issame = np.r_[np.zeros(20_000, bool), np.ones(100, bool)]
    entry = thresholds_from_curve(roc_curve(-(2 - 2 * scores), issame))
    written = write_thresholds(tmp_path, {"val": entry})
    assert written == tmp_path / "backbone.json"
    assert json.loads(written.read_text())["name"] == "mbf_tiny"  # the spec is kept
    assert read_thresholds(tmp_path) == read_thresholds(tmp_path / "backbone.pth") == {"val": entry}
    cosine, source = pick_threshold(read_thresholds(tmp_path))  # type: ignore[misc]
    assert source == "FAR=1e-04 on val" and cosine == entry["1e-04"]["cosine"]
    assert pick_threshold(read_thresholds(tmp_path), 1e-3)[1] == "FAR=1e-03 on val"  # type: ignore[index]
    assert write_thresholds(tmp_path / "model.onnx", {"val": entry}) is None
    assert read_thresholds(tmp_path / "elsewhere" / "ckpt.pt") == {}


@pytest.mark.parametrize(
    "entry, named",
    [
        ({"cosine": "0.3", "far": 1e-4}, "cosine"),
        ({"cosine": 0.3, "far": [1]}, "far"),
        ({"cosine": 0.3}, "key"),
    ],
)
def test_a_crafted_threshold_entry_is_named_not_a_traceback(tmp_path: Path, entry: dict, named: str) -> None:
    from facescale.errors import DataError

    key = "not-a-far" if named == "key" else "1e-04"
    spec = {"name": "mbf_tiny", "kwargs": {}, "verification_thresholds": {"val": {key: entry}}}
    (tmp_path / "backbone.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match=rf"\['val'\]\['{key}'\].*{named}.*not a finite number"):
        read_thresholds(tmp_path)


def test_calibrate_cli_prints_and_writes_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facescale.cli.main import main

    path = tmp_path / "planted.gallery"
    planted_gallery([0.9, 0.8, 0.7]).save(path)
    assert main(["gallery", "calibrate", str(path), "--far", "1e-4", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert (
        "19,900 impostor pairs (200 enrolled people)" in out
        and "FAR 0.0001 per comparison: threshold 0.8000" in out
    )
    assert Gallery.load(path).threshold == 0.5  # nothing written without --write
    assert main(["gallery", "calibrate", str(path), "--far", "1e-4", "--write", "comparison"]) == 0
    written = Gallery.load(path)
    assert (
        written.threshold == pytest.approx(0.8, abs=1e-6)
        and "gallery calibrate: FAR 0.0001" in written.threshold_source
    )
    assert main(["gallery", "calibrate", str(path), "--far", "1e-6", "--write", "comparison"]) == 1
    assert "not measurable" in capsys.readouterr().err
