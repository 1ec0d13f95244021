"""An ONNX model whose external data escapes its folder is refused with one line (issue 16 pt 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from facescale.cli.main import main
from facescale.deploy.embedder import OnnxEmbedder
from facescale.errors import FacescaleError


def tiny_model(folder: Path, location: str) -> Path:
    """[N, 3, 112, 112] -> Flatten -> MatMul by an external [37632, 4] weight -> [N, 4]."""
    weight = numpy_helper.from_array(np.full((3 * 112 * 112, 4), 1e-4, np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    if location != "weights.bin":  # point the tensor elsewhere, as a crafted file would
        saved = onnx.load(str(path), load_external_data=False)
        for entry in saved.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        path.write_bytes(saved.SerializeToString())
    return path


def test_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    embedder = OnnxEmbedder(tiny_model(tmp_path / "ok", "weights.bin"))
    assert embedder.embedding_size == 4


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"])
def test_external_data_outside_the_folder_is_refused(
    tmp_path: Path, location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secret.bin").write_bytes(np.zeros(3 * 112 * 112 * 4, np.float32).tobytes())
    path = tiny_model(tmp_path / "model", location)
    with pytest.raises(FacescaleError, match="outside the model's folder"):
        OnnxEmbedder(path)
    photos = tmp_path / "photos"
    photos.mkdir()
    assert main(["embed", str(photos), "--model", str(path), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err.strip()
    assert location in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "model", "weights.bin")
    (tmp_path / "elsewhere.bin").write_bytes((path.parent / "weights.bin").read_bytes())
    (path.parent / "weights.bin").unlink()
    (path.parent / "weights.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(FacescaleError, match="outside the model's folder"):
        OnnxEmbedder(path)
