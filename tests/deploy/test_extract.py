"""``facescale embed`` over each input kind, checked against the embedder run on the decoded images."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_testnets import TinyNet

from facescale.data.file_datasets import IMAGE_SUFFIXES, open_image_folder, parse_label_file
from facescale.data.image_codec import encode_png
from facescale.data.recordio import InsightFaceRecWriter
from facescale.data.verification_bin import save_verification_bin
from facescale.deploy.embedder_factory import open_embedder
from facescale.deploy.extract import extract_embeddings, open_collection
from facescale.deploy.faces import list_photos
from facescale.deploy.onnx_export import export_onnx, random_faces
from facescale.errors import DataError


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(TinyNet(), {"name": "tiny", "kwargs": {}}, path)
    return path


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return random_faces(6, seed=11)


def expected_embeddings(model: Path, images: np.ndarray, normalize: bool = False) -> np.ndarray:
    out = open_embedder(str(model)).embed(images)
    return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


def test_folder_via_cli(
    tmp_path: Path, onnx_model: Path, faces: np.ndarray, facescale_cmd: list[str]
) -> None:
    for i, face in enumerate(faces):
        (tmp_path / "in" / f"id{i % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / f"id{i % 2}" / f"{i}.png").write_bytes(encode_png(face))
    out = tmp_path / "out"
    cmd = [*facescale_cmd, "embed", str(tmp_path / "in"), "--model", str(onnx_model), "--out", str(out)]
    cmd += ["--normalize", "--batch-size", "4", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    index = json.loads((out / "index.json").read_text())
    names = (out / "names.txt").read_text().splitlines()
    assert names == [item["name"] for item in index["items"]] == sorted(names)
    order = [int(Path(n).stem) for n in names]
    got = np.load(out / "embeddings.npy", allow_pickle=False)
    np.testing.assert_allclose(got, expected_embeddings(onnx_model, faces[order], True), rtol=1e-4, atol=1e-5)
    assert [item["label"] for item in index["items"]] == [f"id{i % 2}" for i in order]


def test_list_rec_and_bin_inputs(tmp_path: Path, onnx_model: Path, faces: np.ndarray) -> None:
    for i, face in enumerate(faces):
        (tmp_path / f"{i}.png").write_bytes(encode_png(face))
    (tmp_path / "list.txt").write_text("".join(f"{i}.png\t{i % 3}\n" for i in range(len(faces))))
    with InsightFaceRecWriter(tmp_path / "rec") as writer:
        for i, face in enumerate(faces):
            writer.add(i // 2, encode_png(face))
    issame = np.array([True, False, True])
    save_verification_bin(tmp_path / "pairs.bin", [encode_png(f) for f in faces], issame)
    embedder = open_embedder(str(onnx_model))
    expected = expected_embeddings(onnx_model, faces)
    for source, labels in [
        (tmp_path / "list.txt", [i % 3 for i in range(6)]),
        (tmp_path / "rec", [i // 2 for i in range(6)]),
        (tmp_path / "rec" / "train", [i // 2 for i in range(6)]),  # a prefix
        (tmp_path / "pairs.bin", [True, True, False, False, True, True]),
    ]:
        out = tmp_path / f"out-{source.name}"
        index = extract_embeddings(open_collection(source), embedder, out, batch_size=4, progress=False)
        np.testing.assert_allclose(np.load(out / "embeddings.npy"), expected, rtol=1e-4, atol=1e-5)
        assert [item["label"] for item in index["items"]] == labels, source


def test_unaligned_image_is_refused_with_a_hint(tmp_path: Path, onnx_model: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.png").write_bytes(encode_png(np.zeros((200, 150, 3), np.uint8)))
    with pytest.raises(DataError, match=r"big\.png.*150x200.*--detect"):
        extract_embeddings(
            open_collection(tmp_path / "in"), open_embedder(str(onnx_model)), tmp_path / "out", progress=False
        )
    assert not (tmp_path / "out" / "embeddings.npy").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_list_file_paths_with_spaces_and_optional_labels(tmp_path: Path, faces: np.ndarray) -> None:
    (tmp_path / "my photos").mkdir()
    for i, face in enumerate(faces[:5]):
        (tmp_path / "my photos" / f"face {i}.png").write_bytes(encode_png(face))
    absolute = tmp_path / "my photos" / "face 4.png"
    lines = [
        "# comment",
        "my photos/face 0.png\t7",  # a tab: the path may hold spaces
        "my photos/face 1.png\talice",  # names are labels too
        "my photos/face 2.png\t",  # a trailing tab: a path with spaces, no label
        "",
        "  my photos/face 3.png\t-2  ",
        f"{absolute}\t1",
    ]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    collection = open_collection(tmp_path / "list.txt")
    assert collection.names == [f"my photos/face {i}.png" for i in range(4)] + [str(absolute)]
    assert collection.labels == [7, "alice", None, -2, 1]
    assert [collection.read(i) for i in range(5)] == [encode_png(face) for face in faces[:5]]


def test_list_file_reads_like_a_training_label_file(tmp_path: Path, faces: np.ndarray) -> None:
    (tmp_path / "images").mkdir()
    names = ["images/a b.png", "images/c.png", "images/d  e.png"]
    for name, face in zip(names, faces):
        (tmp_path / name).write_bytes(encode_png(face))
    # Tab separated (paths with spaces), and Arcface-Paddle's space-separated form.
    (tmp_path / "label.txt").write_text("images/a b.png\t3\nimages/c.png 1\nimages/d  e.png\t0\n")
    paths, labels, _ = parse_label_file(tmp_path / "label.txt")
    collection = open_collection(tmp_path / "label.txt")
    assert collection.names == paths == names
    assert collection.labels == labels.tolist() == [3, 1, 0]


def test_list_file_without_a_tab_splits_at_the_last_space(tmp_path: Path) -> None:
    (tmp_path / "a b.png").write_bytes(encode_png(np.zeros((112, 112, 3), np.uint8)))
    (tmp_path / "list.txt").write_text("a b.png\n")  # read as path 'a', label 'b.png'
    with pytest.raises(DataError, match=r"line 1: .*/a does not exist \(a path with spaces needs a tab"):
        open_collection(tmp_path / "list.txt")


def test_embed_galleries_and_training_take_the_same_image_files(tmp_path: Path) -> None:
    face = encode_png(np.zeros((112, 112, 3), np.uint8))
    (tmp_path / "person").mkdir()
    for suffix in [*IMAGE_SUFFIXES, ".TIF", ".txt", ".json"]:
        (tmp_path / "person" / f"x{suffix}").write_bytes(face)
    expected = sorted(f"x{suffix}" for suffix in [*IMAGE_SUFFIXES, ".TIF"])
    assert {".tif", ".tiff"} <= set(IMAGE_SUFFIXES)
    assert sorted(Path(name).name for name in open_collection(tmp_path).names) == expected
    assert sorted(p.name for p in list_photos(tmp_path / "person")) == expected
    dataset = open_image_folder(tmp_path)
    assert sorted(dataset.file(i).name for i in range(len(dataset))) == expected
