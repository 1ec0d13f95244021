"""Verification sets by name or path, from bins in both pickle flavours."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from facescale.errors import DataError, FacescaleError
from facescale.eval.sets import load_set, resolve_set
from facescale.eval.verification import evaluate_verification

FIXTURES = Path("/work/shared/fixtures/mxnet_rec")
if not FIXTURES.is_dir():  # the repository's own copy, when the shared folder is not mounted
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mxnet_rec"


def mean_colour_embed(images: np.ndarray) -> np.ndarray:
    """A tiny deterministic "model": mean colour of each image quadrant (12-d)."""
    n, h, w, _ = images.shape
    quads = images.reshape(n, 2, h // 2, 2, w // 2, 3).astype(np.float32).mean(axis=(2, 4))
    return quads.reshape(n, 12) - 127.5


@pytest.mark.parametrize("flavour", ["verify_py2.bin", "verify_py3.bin"])
def test_both_pickle_flavours_load_and_evaluate(flavour: str, tmp_path: Path) -> None:
    source = FIXTURES / flavour
    if not source.is_file():
        pytest.skip(f"fixture {source} is not available")
    shutil.copy(source, tmp_path / "lfw.bin")
    by_name = load_set("lfw", tmp_path)
    by_path = load_set(str(source))
    expected = np.load(FIXTURES / "expected_issame.npy")
    for s in (by_name, by_path):
        np.testing.assert_array_equal(s.issame, expected)
        assert s.images.shape == (2 * len(expected), 112, 112, 3) and s.images.dtype == np.uint8
    assert by_name.name == "lfw"
    np.testing.assert_array_equal(by_name.images, by_path.images)
    result = evaluate_verification(mean_colour_embed, by_name.images, by_name.issame, batch_size=16)
    assert 0.0 <= result.accuracy_mean <= 1.0 and result.num_pairs == len(expected)
    assert result.xnorm > 0


def test_names_resolve_in_bin_dir(tmp_path: Path) -> None:
    (tmp_path / "cfp_fp.bin").write_bytes(b"")
    assert resolve_set("cfp_fp", tmp_path) == tmp_path / "cfp_fp.bin"
    assert resolve_set("cfp_fp.bin", tmp_path) == tmp_path / "cfp_fp.bin"
    with pytest.raises(FacescaleError, match=r"agedb_30\.bin does not exist.*cfp_fp"):
        resolve_set("agedb_30", tmp_path)
    with pytest.raises(FacescaleError, match="--bin-dir"):
        resolve_set("lfw")


def test_bad_bin_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.bin"
    bad.write_bytes(pickle.dumps(([b"not a jpeg"] * 20, [True] * 10)))
    with pytest.raises(DataError, match=r"broken\.bin image 0"):
        load_set(str(bad))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01 definitely not a pickle")
    with pytest.raises(DataError, match=r"garbage\.bin"):
        load_set(str(garbage))


def test_runner_with_two_models_and_no_flip(tmp_path: Path) -> None:
    from facescale.eval.runner import EvalRequest, OpenedModel, run_evaluation

    source = FIXTURES / "verify_py3.bin"
    if not source.is_file():
        pytest.skip(f"fixture {source} is not available")
    shutil.copy(source, tmp_path / "lfw.bin")
    request = EvalRequest(sources=["a/model.onnx", "b/model.onnx"], out=tmp_path / "out", bins=["lfw"])
    request.bin_dir, request.flip = str(tmp_path), False
    lines: list[str] = []

    def opener(source: str) -> OpenedModel:
        scale = 1.0 if source.startswith("a") else 2.0
        return OpenedModel("model", 12, lambda images: scale * mean_colour_embed(images))

    report = run_evaluation(request, log=lines.append, opener=opener)
    names = [m["name"] for m in report["models"]]
    assert names == ["model (a/model.onnx)", "model (b/model.onnx)"]
    a, b = (m["verification"]["lfw"] for m in report["models"])
    assert not a["flip"] and a["accuracy_mean"] == b["accuracy_mean"]  # the scale cancels out
    assert b["xnorm"] == pytest.approx(2 * a["xnorm"])
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| model (a/model.onnx) | lfw (no flip) | 20 |" in markdown


def test_bench_problem_agrees_with_baseline() -> None:
    from facescale.bench.eval import format_bench, run_scoring_bench

    bench = run_scoring_bench(num_templates=60, num_pairs=5000, dim=8, baseline_pairs=1200, threads=2)
    assert bench.max_abs_difference < 1e-5
    assert "extrapolated" in format_bench(bench)
