"""Crafted or damaged gallery files fail with one line naming the file and the fault (issue 16 pt 14),
and a gallery build skips an unreadable photo and reports it, or fails with --strict (pt 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deploy_testnets import FakeEmbedder
from safetensors.numpy import save

from facescale.cli.main import main
from facescale.deploy.faces import build_gallery
from facescale.deploy.gallery import GALLERY_KEY, Gallery
from facescale.errors import DataError, FacescaleError


def header(**changes: Any) -> dict[str, Any]:
    base = {
        "version": 2,
        "names": ["ann", "bob"],
        "embedder": {"name": "fake", "fingerprint": "0123456789abcdef", "embedding_size": 8, "source": ""},
        "threshold": 0.4,
        "index": {"kind": "flat"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def write(path: Path, meta: str, sums: np.ndarray | None = None, counts: np.ndarray | None = None) -> Path:
    tensors = {
        "sums": np.ones((2, 8), np.float32) if sums is None else sums,
        "counts": np.ones(2, np.int64) if counts is None else counts,
    }
    path.write_bytes(save(tensors, metadata={GALLERY_KEY: meta}))
    return path


CRAFTED = {
    "bad_json": ("{not json", None, None, "not valid JSON"),
    "missing_key": (json.dumps(header(threshold=None)), None, None, "no 'threshold' entry"),
    "names_a_string": (json.dumps(header(names="ann")), None, None, "'names' should be list, got str"),
    "wrong_size": (json.dumps(header()), np.ones((3, 8), np.float32), None, "2 names but 3 vectors"),
    "wrong_dim": (
        json.dumps(header()),
        np.ones((2, 4), np.float32),
        None,
        "vectors are 4-d but the header says 8-d",
    ),
    "nan_vector": (
        json.dumps(header()),
        np.array([[1.0] * 8, [np.nan] * 8], np.float32),
        None,
        "the vector of 'bob' holds NaN",
    ),
    "zero_count": (json.dumps(header()), None, np.array([1, 0], np.int64), "'bob' has photo count 0"),
    "bad_index": (json.dumps(header(index={"kind": "ivf", "nlist": 4, "nprobe": 9})), None, None, "nprobe"),
    "ivf_no_arrays": (
        json.dumps(header(index={"kind": "ivf", "nlist": 2, "nprobe": 1})),
        None,
        None,
        "without its arrays",
    ),
    "duplicate_name": (json.dumps(header(names=["ann", "ann"])), None, None, "'ann' appears more than once"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_gallery_is_one_clear_line_and_exit_1(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta, sums, counts, message = CRAFTED[case]
    path = write(tmp_path / f"{case}.gallery", meta, sums, counts)
    with pytest.raises(DataError, match=message):
        Gallery.load(path)
    assert main(["gallery", "list", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and message.split("'")[0] in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_the_valid_twin_of_the_crafted_files_loads(tmp_path: Path) -> None:
    """The crafted files differ from a good one only in their fault."""
    loaded = Gallery.load(write(tmp_path / "ok.gallery", json.dumps(header())))
    assert loaded.names == ["ann", "bob"] and loaded.threshold == 0.4


def test_a_gallery_of_another_model_says_both_sizes(tmp_path: Path) -> None:
    gallery = Gallery.for_embedder(FakeEmbedder(embedding_size=32), 0.5)
    gallery.add("ann", np.ones((1, 32), np.float32))
    with pytest.raises(FacescaleError, match="32-d vs 64-d"):
        gallery.check_embedder(FakeEmbedder(name="other", embedding_size=64))


def test_nan_embeddings_are_refused_on_add() -> None:
    gallery = Gallery.for_embedder(FakeEmbedder(), 0.5)
    with pytest.raises(FacescaleError, match="'ann': an embedding holds NaN"):
        gallery.add("ann", np.full((1, 8), np.nan, np.float32))
    assert len(gallery) == 0


class FakePipeline:
    """Every readable photo holds one face whose embedding is its mean pixel colour, tiled."""

    embedder = FakeEmbedder()

    def largest_face(self, image: np.ndarray) -> np.ndarray:
        return np.tile(image.reshape(-1, 3).mean(0), 3)[:8].astype(np.float32) + 1


def people(tmp_path: Path) -> Path:
    import cv2

    root = tmp_path / "people"
    for name, colour in (("ann", 40), ("bob", 200)):
        (root / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / name / f"{i}.jpg"), np.full((32, 32, 3), colour + i, np.uint8))
    (root / "bob" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_an_unreadable_photo_is_skipped_and_reported(tmp_path: Path) -> None:
    gallery, reports = build_gallery(people(tmp_path), FakePipeline(), 0.5)  # type: ignore[arg-type]
    assert gallery.names == ["ann", "bob"] and gallery.counts.tolist() == [2, 2]
    bob = reports[1]
    assert [Path(p).name for p, _ in bob.unreadable] == ["broken.jpg"]
    assert "broken.jpg" in bob.unreadable[0][1]


def test_strict_fails_on_the_unreadable_photo(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"broken\.jpg"):
        build_gallery(people(tmp_path), FakePipeline(), 0.5, strict=True)  # type: ignore[arg-type]
