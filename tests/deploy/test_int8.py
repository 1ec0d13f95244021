"""int8 export: static quantization calibrated on a dataset, checked against fp32 in the same command."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from facescale.bench.infer import calibrate_batchnorm
from facescale.cli.main import main
from facescale.deploy.onnx_export import random_faces
from facescale.eval.thresholds import read_thresholds
from facescale.models import build_backbone
from facescale.models.preprocess import to_model_input


@pytest.fixture(scope="module")
def synth_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    args = ["synth", str(root), "--identities", "10", "--images-per-identity", "2", "--val-identities", "40"]
    assert main([*args, "--val-pairs", "200", "--no-hard-pairs", "--workers", "1"]) == 0
    return root / "val.bin"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as training leaves it, with measured thresholds in backbone.json."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    module = calibrate_batchnorm(build_backbone("mbf_tiny"), to_model_input(random_faces(8, seed=0))).eval()
    torch.save(module.state_dict(), run / "backbone.pth")
    thresholds = {"val": {"1e-03": {"far": 0.001, "cosine": 0.42, "tar": 0.9, "impostor_pairs": 1500}}}
    spec = {"name": "mbf_tiny", "kwargs": {}, "verification_thresholds": thresholds}
    (run / "backbone.json").write_text(json.dumps(spec))
    return run


def test_int8_export_checks_parity_and_keeps_the_metadata(
    run_dir: Path, synth_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.onnx"
    args = ["export", str(run_dir), "--out", str(out), "--int8", "--calibrate", str(synth_bin)]
    assert main([*args, "--calibrate-images", "48", "--check-bins", str(synth_bin), "--max-drop", "100"]) == 0
    printed = capsys.readouterr().out
    assert "int8 vs fp32 cosine on 48 held-out faces" in printed and "[val] accuracy fp32" in printed
    cosine_mean = float(printed.split("mean ")[1].split(",")[0])
    assert 0.95 <= cosine_mean <= 1.0
    int8 = out.with_suffix(".int8.onnx")
    model = onnx.load(str(int8))
    ops = {node.op_type for node in model.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ: a statically quantized graph
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    # the measured thresholds travel with both exports
    assert read_thresholds(out) == read_thresholds(int8) == read_thresholds(run_dir)


def test_int8_export_that_fails_its_check_writes_nothing(
    run_dir: Path, synth_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.onnx"
    args = ["export", str(run_dir), "--out", str(out), "--int8", "--calibrate", str(synth_bin)]
    # an impossible bar: int8 must gain a point of accuracy
    code = main([*args, "--calibrate-images", "32", "--check-bins", str(synth_bin), "--max-drop", "-1"])
    assert code == 1
    assert "too far from fp32" in capsys.readouterr().err
    assert not out.with_suffix(".int8.onnx").exists()


def test_int8_needs_a_calibration_set(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 1
    assert "--calibrate DATASET" in capsys.readouterr().err


def test_bench_infer_json_has_int8_rows(capsys: pytest.CaptureFixture[str]) -> None:
    bench = (
        "bench infer --backbones mbf_tiny --repeats 2 --batch-repeats 1 --batch 4 --runtimes onnxruntime,int8"
    )
    code = main([*bench.split(), "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["runtime"] for r in rows] == ["onnxruntime (cpu)", "onnxruntime int8 qdq (cpu)"]
    assert all(r["latency_ms_batch1"] > 0 and r["images_per_s_batch4"] > 0 for r in rows)
