from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datatest_utils import face_jpeg

from facescale.cli.main import main
from facescale.config import DataConfig
from facescale.data.datasets import open_dataset
from facescale.data.image_codec import decode_image
from facescale.data.verification_bin import load_verification_bin


def decoded(root: Path, fmt: str) -> tuple[list[int], list[np.ndarray]]:
    dataset = open_dataset(DataConfig(format=fmt, root=str(root)))
    return dataset.labels.tolist(), [decode_image(dataset.read(i), "t") for i in range(len(dataset))]


def same(a: tuple[list[int], list[np.ndarray]], b: tuple[list[int], list[np.ndarray]]) -> bool:
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))


def test_rec_images_rec_round_trip(fixture_dir: Path, tmp_path: Path) -> None:
    original = decoded(fixture_dir, "recordio")
    assert main(["data", "rec2images", str(fixture_dir), str(tmp_path / "img")]) == 0
    assert same(decoded(tmp_path / "img", "label_txt"), original)
    assert main(["data", "images2rec", str(tmp_path / "img"), str(tmp_path / "rec")]) == 0
    assert same(decoded(tmp_path / "rec", "recordio"), original)
    assert (tmp_path / "rec" / "property").read_text() == "12,112,112"
    assert (tmp_path / "rec" / "train.rec").read_bytes() == (fixture_dir / "train.rec").read_bytes()


def test_folder_per_identity_and_bins_round_trip(tmp_path: Path) -> None:
    labels = [2, 0, 1, 0]  # folder names sort to labels 0..2
    for i, label in enumerate(labels):
        folder = tmp_path / "folders" / f"id_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.jpg").write_bytes(face_jpeg(i))
    original = decoded(tmp_path / "folders", "image_folder")
    assert original[0] == [0, 0, 1, 2]
    assert main(["data", "images2rec", str(tmp_path / "folders"), str(tmp_path / "rec")]) == 0
    assert same(decoded(tmp_path / "rec", "recordio"), original)
    assert main(["data", "images2bin", str(tmp_path / "folders"), str(tmp_path / "bins")]) == 0
    assert same(decoded(tmp_path / "bins", "image_bin"), original)
    assert main(["data", "bin2images", str(tmp_path / "bins"), str(tmp_path / "back")]) == 0
    assert same(decoded(tmp_path / "back", "label_txt"), original)
    assert sorted(p.name for p in (tmp_path / "back" / "images").iterdir()) == [
        "0.jpg",
        "1.jpg",
        "2.jpg",
        "3.jpg",
    ]


def test_bin_pairs_round_trip_with_flip(fixture_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    assert main(["data", "bin2pairs", str(fixture_dir / "verify_py2.bin"), str(out), "--flip"]) == 0
    lines = (out / "pairs.txt").read_text().splitlines()
    assert len(lines) == 20 and lines[0] == "images/000000.jpg\timages/000001.jpg\t1"
    image = decode_image((out / "images/000003.jpg").read_bytes(), "t")
    np.testing.assert_array_equal(
        decode_image((out / "images/000003_flip.png").read_bytes(), "t"), image[:, ::-1]
    )
    assert main(["data", "pairs2bin", str(out / "pairs.txt"), str(tmp_path / "new.bin")]) == 0
    original = load_verification_bin(fixture_dir / "verify_py2.bin")
    rebuilt = load_verification_bin(tmp_path / "new.bin")
    assert rebuilt.images == original.images
    np.testing.assert_array_equal(rebuilt.issame, np.load(fixture_dir / "expected_issame.npy"))


def test_split_parts_hold_each_record_once(fixture_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    assert main(["data", "split", str(fixture_dir), str(out), "--parts", "3", "--seed", "7"]) == 0
    assert json.loads((out / "_SUCCESS").read_text())["images"] == [20, 20, 20]
    assert sorted(p.name for p in out.glob("part-*")) == [
        f"part-0000{i}.{e}" for i in range(3) for e in ("idx", "rec")
    ]
    original = open_dataset(DataConfig(root=str(fixture_dir)))
    split = open_dataset(DataConfig(root=str(out)))
    assert split.num_classes == 12
    before = sorted((int(original.labels[i]), original.read(i)) for i in range(len(original)))
    after = sorted((int(split.labels[i]), split.read(i)) for i in range(len(split)))
    assert before == after
    assert split.labels.tolist() != original.labels.tolist()  # shuffled
    assert main(["data", "split", str(fixture_dir), str(out), "--parts", "2"]) == 1  # refuses to mix


def test_inspect_prints_counts_and_writes_sheet(
    fixture_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "inspect", str(fixture_dir), "--json", "--sheet", str(tmp_path / "s.png")]) == 0
    summary = json.loads(capsys.readouterr().out.split("contact sheet")[0])
    assert summary["images"] == 60 and summary["num_classes"] == 12
    assert (summary["per_class_min"], summary["per_class_median"], summary["per_class_max"]) == (5, 5.0, 5)
    sheet = decode_image((tmp_path / "s.png").read_bytes(), "t")
    assert sheet.shape == (8 * 112, 8 * 112, 3)
    assert np.array_equal(
        sheet[:112, :112], decode_image(open_dataset(DataConfig(root=str(fixture_dir))).read(0), "t")
    )


def test_cli_errors_exit_nonzero_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "rec2images", str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    assert "missing: no such file or folder" in capsys.readouterr().err
