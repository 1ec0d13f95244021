"""Embedders (torch, ONNX) against direct forward passes; export guards; bad-model messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from deploy_testnets import TinyNet
from onnx import TensorProto, helper
from safetensors import safe_open

from facescale.deploy.embedder import OnnxEmbedder, TorchEmbedder
from facescale.deploy.embedder_factory import open_embedder
from facescale.deploy.onnx_export import (
    describe_onnx,
    export_onnx,
    export_safetensors,
    random_faces,
)
from facescale.errors import FacescaleError
from facescale.models.loading import SAFETENSORS_SPEC_KEY
from facescale.models.preprocess import to_model_input


class DriftingNet(TinyNet):
    """Returns something different on every call: torch and its traced export disagree."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        DriftingNet.calls += 1
        return super().forward(x) + float(DriftingNet.calls)


def test_torch_embedder_matches_a_direct_forward_in_batches() -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    images = random_faces(7, seed=3)
    embedder = TorchEmbedder(net, "tiny", batch_size=3)
    with torch.no_grad():
        expected = net(to_model_input(images)).numpy()
    np.testing.assert_allclose(embedder.embed(images), expected, rtol=1e-5, atol=1e-5)
    assert embedder.embedding_size == 16
    empty = embedder.embed(images[:0])  # a photo without faces: stacks with the others
    assert empty.shape == (0, 16) and empty.dtype == np.float32


def test_onnx_export_runs_like_torch_and_shares_the_fingerprint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = TinyNet().half()  # as if saved after mixed-precision training
    net.amp_dtype = torch.float16  # a facescale backbone's autocast switch: export must turn it off
    path = tmp_path / "tiny.onnx"
    check = export_onnx(net, {"name": "tiny", "kwargs": {}}, path)
    assert check.passed and set(check.max_abs_diff) == {1, 3}
    info = describe_onnx(path)
    assert info["inputs"]["input"][1:] == [3, 112, 112] and isinstance(info["inputs"]["input"][0], str)
    assert not info["external_data"] and TensorProto.FLOAT16 not in info["initializer_dtypes"]
    assert "(pixel - 127.5) / 127.5" in info["metadata"]["facescale.input_convention"]
    assert json.loads(info["metadata"]["facescale.backbone"]) == {"kwargs": {}, "name": "tiny"}

    onnx_embedder = open_embedder(str(path), batch_size=4)
    torch_embedder = TorchEmbedder(net.float(), "tiny")
    images = random_faces(9, seed=5)
    np.testing.assert_allclose(
        onnx_embedder.embed(images), torch_embedder.embed(images), rtol=1e-4, atol=1e-4
    )
    assert onnx_embedder.fingerprint == torch_embedder.fingerprint


def test_export_that_disagrees_with_torch_fails_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "drift.onnx"
    with pytest.raises(FacescaleError, match="not written"):
        export_onnx(DriftingNet(), {"name": "drift", "kwargs": {}}, path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_safetensors_export_records_the_backbone_spec(tmp_path: Path) -> None:
    net = TinyNet().half()
    path = tmp_path / "tiny.safetensors"
    export_safetensors(net, {"name": "tiny", "kwargs": {"embedding_size": 16}}, path)
    with safe_open(str(path), framework="pt") as f:
        spec = json.loads(f.metadata()[SAFETENSORS_SPEC_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert spec == {"name": "tiny", "kwargs": {"embedding_size": 16}}
    assert set(tensors) == set(net.state_dict())
    assert all(t.dtype == torch.float32 for k, t in tensors.items() if "num_batches" not in k)


def write_onnx(path: Path, input_shape: list) -> Path:  # type: ignore[type-arg]
    """A hand-made model: global average pool of the input, any input shape."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["embedding"]),
        ],
        "pool",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [input_shape[0], input_shape[1]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_wrong_size_onnx_model_names_file_and_shape(tmp_path: Path) -> None:
    path = write_onnx(tmp_path / "retina.onnx", ["N", 3, 640, 640])
    with pytest.raises(FacescaleError, match=r"retina\.onnx.*\['N', 3, 640, 640\]"):
        OnnxEmbedder(path)


def test_fixed_batch_onnx_model_is_padded(tmp_path: Path) -> None:
    embedder = OnnxEmbedder(write_onnx(tmp_path / "b4.onnx", [4, 3, 112, 112]))
    images = random_faces(6, seed=7)
    expected = (images.astype(np.float32) - 127.5) / 127.5
    np.testing.assert_allclose(embedder.embed(images), expected.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)


def test_bad_inputs_give_clear_messages(tmp_path: Path) -> None:
    with pytest.raises(FacescaleError, match="does not exist"):
        open_embedder(str(tmp_path / "nothing.pth"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(FacescaleError, match=r"junk\.onnx"):
        open_embedder(str(tmp_path / "junk.onnx"))
    embedder = TorchEmbedder(TinyNet(), "tiny")
    with pytest.raises(FacescaleError, match=r"\[N, 112, 112, 3\]"):
        embedder.embed(np.zeros((2, 96, 96, 3), np.uint8))


def test_safetensors_export_loads_back_through_open_embedder(tmp_path: Path) -> None:
    from facescale.models import build_backbone

    torch.manual_seed(2)
    net = build_backbone("mbf_tiny").eval()
    path = tmp_path / "mbf_tiny.safetensors"
    export_safetensors(net, {"name": "mbf_tiny", "kwargs": {}}, path)
    embedder = open_embedder(str(path), device="cpu")
    images = random_faces(2, seed=9)
    np.testing.assert_allclose(
        embedder.embed(images), TorchEmbedder(net, "x").embed(images), rtol=1e-4, atol=1e-4
    )


def test_export_cli_writes_a_checked_onnx_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facescale.cli.main import main
    from facescale.models import build_backbone

    torch.manual_seed(3)
    weights = tmp_path / "in.safetensors"
    export_safetensors(build_backbone("mbf_tiny"), {"name": "mbf_tiny", "kwargs": {}}, weights)
    out = tmp_path / "model.onnx"
    args = ["export", str(weights), "--out", str(out), "--safetensors", str(tmp_path / "w.safetensors")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "max |diff| batch 1:" in printed and " ok" in printed
    assert OnnxEmbedder(out).fingerprint == open_embedder(str(weights), device="cpu").fingerprint
