"""Datasets stay inside their root (16.10), labels with gaps are refused unless accepted (16.11),
and images above the pixel cap are refused from their header before decoding (16.12)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from datatest_utils import face_jpeg

from facescale.cli.main import main
from facescale.config import DataConfig
from facescale.data.datasets import open_dataset
from facescale.data.image_codec import decode_image, encode_jpeg, encode_png, image_size
from facescale.errors import DataError


def write_list(root: Path, entries: list[tuple[str, int]], images: dict[str, bytes]) -> Path:
    for name, data in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "label.txt").write_text("".join(f"{name}\t{label}\n" for name, label in entries))
    return root


@pytest.mark.parametrize("escape", ["../outside.jpg", "ABSOLUTE"])
def test_listed_paths_that_leave_the_root_are_bad_records(tmp_path, escape, capsys):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"SECRET-CONTENT-OF-A-FOREIGN-FILE")
    target = str(outside) if escape == "ABSOLUTE" else escape
    root = write_list(
        tmp_path / "set",
        [("a.jpg", 0), (target, 1), ("b.jpg", 1)],
        {"a.jpg": face_jpeg(0), "b.jpg": face_jpeg(1)},
    )
    with pytest.raises(DataError) as info:
        open_dataset(DataConfig(format="label_txt", root=str(root)))
    assert f"label.txt:2: path {target!r}" in str(info.value)
    dataset = open_dataset(DataConfig(format="label_txt", root=str(root), bad_data="skip"))
    assert len(dataset) == 2 and dataset.excluded_count == 1
    # images2bin must not embed the foreign file, and no message may print its bytes.
    assert main(["data", "images2bin", str(root), str(tmp_path / "bins")]) == 1
    captured = capsys.readouterr()
    assert "SECRET" not in captured.err + captured.out and "53454352" not in captured.err


def test_a_symlink_out_of_the_root_is_refused_when_read(tmp_path, capsys):
    outside = tmp_path / "hostname"
    outside.write_bytes(b"SECRET-host")
    root = write_list(tmp_path / "set", [("a.jpg", 0), ("link.jpg", 0)], {"a.jpg": face_jpeg(0)})
    os.symlink(outside, root / "link.jpg")
    dataset = open_dataset(DataConfig(format="label_txt", root=str(root)))
    with pytest.raises(DataError, match="outside the dataset folder") as info:
        dataset.read(1)
    assert "link.jpg" in str(info.value) and "SECRET" not in str(info.value)
    assert main(["data", "images2bin", str(root), str(tmp_path / "bins")]) == 1
    assert "outside the dataset folder" in capsys.readouterr().err
    assert not (tmp_path / "bins").exists()


def test_one_stray_label_does_not_size_the_head(tmp_path, capsys):
    entries = [(f"{i}.jpg", i % 5) for i in range(10)] + [("stray.jpg", 999)]
    images = {name: face_jpeg(i) for i, (name, _) in enumerate(entries)}
    root = write_list(tmp_path / "set", entries, images)
    with pytest.raises(DataError) as info:
        open_dataset(DataConfig(format="label_txt", root=str(root)))
    message = str(info.value)
    assert "labels are not dense: 994 of the 1000 classes" in message
    assert "label (999" in message and "stray.jpg" in message and "data.num_classes=1000" in message
    assert main(["data", "images2rec", str(root), str(tmp_path / "rec")]) == 1
    assert "not dense" in capsys.readouterr().err and not (tmp_path / "rec").exists()
    # Accepted explicitly, by the flag or by the class count (which then makes 999 out of range).
    assert len(open_dataset(DataConfig(format="label_txt", root=str(root), sparse_labels=True))) == 11
    kept = open_dataset(DataConfig(format="label_txt", root=str(root), num_classes=5, bad_data="skip"))
    assert len(kept) == 10 and kept.num_classes == 5
    assert main(["data", "images2rec", str(root), str(tmp_path / "rec"), "--sparse-labels"]) == 0
    assert (tmp_path / "rec" / "property").read_text().startswith("1000,")


def huge_jpeg(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header claims ``width`` x ``height`` (what a bomb looks like)."""
    data = bytearray(encode_jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_header_sizes_are_read_without_decoding():
    image = np.zeros((37, 53, 3), np.uint8)
    assert image_size(encode_jpeg(image)) == (37, 53)
    assert image_size(encode_png(image)) == (37, 53)
    assert image_size(huge_jpeg(20000, 20000)) == (20000, 20000)


def test_images_above_the_pixel_cap_are_refused_before_decoding(tmp_path, capsys):
    bomb = huge_jpeg(20000, 20000)
    with pytest.raises(DataError, match=r"bomb\.jpg: image declares 20000x20000 = 400,000,000 pixels"):
        decode_image(bomb, "bomb.jpg")
    big_png = encode_png(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="64x64 = 4,096 pixels, above the cap of 1,000"):
        decode_image(big_png, "p.png", max_pixels=1000)
    assert decode_image(big_png, "p.png", max_pixels=0).shape == (64, 64, 3)  # 0: no cap

    root = write_list(
        tmp_path / "set", [("a.jpg", 0), ("bomb.jpg", 0)], {"a.jpg": face_jpeg(0), "bomb.jpg": bomb}
    )
    assert main(["data", "verify", str(root), "--format", "label_txt", "--workers", "0"]) == 1
    out = capsys.readouterr().out
    assert "bomb.jpg" in out and "20000x20000" in out and "PROBLEMS FOUND" in out
