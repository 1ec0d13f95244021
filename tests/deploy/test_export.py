"""ONNX export parity (onnxruntime vs torch) for every registered backbone, at two batch sizes.

An untrained network's batch-norm statistics make deep ResNets' outputs overflow, so each
model's statistics are first set from one random batch: outputs are then of ordinary size and
the relative difference means something. Exporting big models costs tens of seconds on one
core, so those share one test marked slow (still run by ``make test``).
"""

from __future__ import annotations

import onnx
import pytest
import torch

from facescale.bench.infer import calibrate_batchnorm
from facescale.deploy.onnx_export import check_parity, inference_copy, random_faces, to_onnx_bytes
from facescale.models import BACKBONES, build_backbone
from facescale.models.preprocess import to_model_input

SMALL = ("mbf_tiny", "mbf", "mbf_large", "r18", "r34", "r50", "vit_t", "vit_s")


def assert_parity(name: str, batch_sizes: tuple[int, ...], exporter: str = "torchscript") -> None:
    torch.manual_seed(0)
    module = calibrate_batchnorm(build_backbone(name), to_model_input(random_faces(4, seed=123)))
    module = inference_copy(module)
    data = to_onnx_bytes(module, {"name": name, "kwargs": {}}, exporter=exporter)
    check = check_parity(module, data, batch_sizes, tolerance=1e-4)
    assert check.max_abs_value > 1.0  # a network that outputs ~0 would pass anything
    assert check.passed, f"{name}: {check.describe()}"
    model = onnx.load_from_string(data)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # a named, dynamic batch axis
    reduced = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    assert not [t.name for t in model.graph.initializer if t.data_type in reduced]


@pytest.mark.parametrize("name", [n for n in BACKBONES.names() if n in SMALL])
def test_export_parity(name: str) -> None:
    assert_parity(name, (1, 3))


def test_export_parity_with_the_dynamo_exporter() -> None:
    assert_parity("mbf_tiny", (1, 3), exporter="dynamo")


@pytest.mark.slow
def test_export_parity_large_backbones() -> None:
    large = [n for n in BACKBONES.names() if n not in SMALL]
    assert large, "every backbone is in SMALL: nothing left for this test"
    for name in large:
        assert_parity(name, (1, 2))
