"""Converters never destroy data (issue 16.6-16.9): no overwritten image, no mixed old/new
output, no half split used for training, no corrupt file copied."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from datatest_utils import face_jpeg

from facescale.cli.main import main
from facescale.config import DataConfig
from facescale.data import convert
from facescale.data.datasets import open_dataset
from facescale.data.image_bin import write_image_bin
from facescale.errors import DataError


def label_txt(root: Path, images: list[bytes], labels: list[int]) -> Path:
    (root / "images").mkdir(parents=True)
    lines = []
    for i, (data, label) in enumerate(zip(images, labels, strict=True)):
        (root / "images" / f"{i:03d}.jpg").write_bytes(data)
        lines.append(f"images/{i:03d}.jpg\t{label}\n")
    (root / "label.txt").write_text("".join(lines))
    return root


def listing(root: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in (root / "label.txt").read_text().splitlines()]  # type: ignore[misc]


def test_bin2images_never_overwrites_an_image_when_stored_names_collide(tmp_path, capsys):
    """Bin 0 stores the name that bin 1's fallback would take: both images must survive."""
    src = tmp_path / "bins"
    (src / "images").mkdir(parents=True)
    keys = ["00000001.jpg", "", "a.jpg"]  # bin 1 has no usable name: its fallback is 00000001.jpg
    for i, key in enumerate(keys):
        write_image_bin(src / "images" / f"{i:08d}.bin", key, face_jpeg(i))
    (src / "label.txt").write_text("".join(f"images/{i:08d}.bin\t{i}\n" for i in range(3)))
    out = tmp_path / "out"
    assert main(["data", "bin2images", str(src), str(out)]) == 0
    rows = listing(out)
    names = [name for name, _ in rows]
    assert len(set(names)) == 3, rows
    for i, (name, label) in enumerate(rows):
        assert int(label) == i and (out / name).read_bytes() == face_jpeg(i), name


def test_a_failed_conversion_leaves_the_earlier_one_intact(tmp_path, capsys):
    good = label_txt(tmp_path / "good", [face_jpeg(i) for i in range(3)], [0, 1, 2])
    out = tmp_path / "rec"
    assert main(["data", "images2rec", str(good), str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # A target holding files is refused without --overwrite, naming it.
    assert main(["data", "images2rec", str(good), str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out}: already holds" in err and "--overwrite" in err

    # With --overwrite, a failure part way (image 2 is corrupt) leaves the old output untouched.
    bad = label_txt(tmp_path / "bad", [face_jpeg(7), face_jpeg(8), b"\xff\xd8garbage\xff\xd9"], [0, 1, 2])
    assert main(["data", "images2rec", str(bad), str(out), "--overwrite"]) == 1
    assert "images/002.jpg" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".rec.*"))  # no staging debris
    assert main(["data", "verify", str(out), "--workers", "0"]) == 0


def test_a_split_that_fails_part_way_leaves_no_parts_and_half_parts_are_refused(tmp_path, capsys):
    src = label_txt(
        tmp_path / "src", [face_jpeg(i) for i in range(5)] + [b"not an image"], [0, 1, 2, 0, 1, 2]
    )
    out = tmp_path / "parts"
    assert main(["data", "split", str(src), str(out), "--parts", "2", "--format", "label_txt"]) == 1
    err = capsys.readouterr().err
    assert "images/005.jpg" in err and "not a decodable image" in err
    assert not out.exists()

    # Parts without _SUCCESS (a split killed after part 0, or one from an older version) are refused.
    assert (
        main(
            [
                "data",
                "split",
                str(src),
                str(out),
                "--parts",
                "2",
                "--format",
                "label_txt",
                "--bad-data",
                "skip",
            ]
        )
        == 0
    )
    assert "skipped 1 bad record" in capsys.readouterr().out
    (out / "_SUCCESS").unlink()
    (out / "part-00001.rec").unlink()
    with pytest.raises(DataError, match=r"holds 1 part-\*\.rec file\(s\) but no _SUCCESS"):
        open_dataset(DataConfig(format="recordio", root=str(out)))


@pytest.mark.parametrize("command", ["images2bin", "rec2images", "split"])
@pytest.mark.parametrize(
    ("data", "problem"), [(b"", "empty image|holds no image"), (b"just some text", "not a decodable image")]
)
def test_every_converter_checks_records_and_applies_bad_data(tmp_path, capsys, command, data, problem):
    src = label_txt(tmp_path / "src", [face_jpeg(0), data, face_jpeg(2), face_jpeg(3)], [0, 1, 1, 0])
    if command == "rec2images":  # its input is RecordIO: convert the good images, then append the bad one
        rec = tmp_path / "rec"
        from facescale.data.recordio import RecordIOWriter, pack_payload

        rec.mkdir()
        with RecordIOWriter(rec / "train.rec", rec / "train.idx") as writer:
            for key, (image, label) in enumerate(
                [(face_jpeg(0), 0), (data, 1), (face_jpeg(2), 1), (face_jpeg(3), 0)]
            ):
                writer.write(key, pack_payload(float(label), image))
        args = ["data", "rec2images", str(rec)]
    else:
        args = ["data", command, str(src)] + (
            ["--format", "label_txt", "--parts", "2"] if command == "split" else []
        )
    out = tmp_path / "out"
    assert main([*args[:3], str(out), *args[3:]]) == 1
    err = capsys.readouterr().err
    assert re.search(problem, err) and ("images/001.jpg" in err or "record 1" in err), err
    assert not out.exists()
    assert main([*args[:3], str(out), *args[3:], "--bad-data", "skip"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 bad record(s)" in printed and re.search(problem, printed)
    kept = open_dataset(
        DataConfig(
            format="recordio"
            if command == "split"
            else ("image_bin" if command == "images2bin" else "label_txt"),
            root=str(out),
        )
    )
    assert len(kept) == 3


def test_record_check_keeps_the_first_few_skipped(tmp_path):
    src = label_txt(tmp_path / "src", [face_jpeg(0), b"", b""], [0, 0, 0])
    check = convert.RecordCheck(bad_data="skip")
    assert (
        convert.export_images(
            open_dataset(DataConfig(format="label_txt", root=str(src))), tmp_path / "o", check=check
        )
        == 1
    )
    assert check.skipped_count == 2 and "images/001.jpg" in check.skipped[0]
