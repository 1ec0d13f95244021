"""Gallery arithmetic, search and file format against naive numpy references."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from deploy_testnets import FakeEmbedder

from facescale.deploy.gallery import GALLERY_KEY, UNKNOWN, Gallery
from facescale.deploy.gallery_index import IndexSpec, SearchIndex
from facescale.errors import DataError, FacescaleError


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_gallery(rng: np.random.Generator, people: int = 5, photos: int = 3) -> tuple[Gallery, dict]:
    gallery = Gallery.for_embedder(FakeEmbedder(), threshold=0.5, source="model.onnx")
    raw = {f"p{i}": rng.standard_normal((photos, 8)).astype(np.float32) * (i + 1) for i in range(people)}
    for name, embeddings in raw.items():
        gallery.add(name, embeddings)
    return gallery, raw


def test_person_vector_is_renormalised_mean_of_normalised_photos() -> None:
    gallery, raw = make_gallery(np.random.default_rng(0))
    expected = np.stack([unit(unit(e).mean(0)) for e in raw.values()])
    np.testing.assert_allclose(gallery.centroids(), expected, rtol=1e-5, atol=1e-6)
    assert gallery.counts.tolist() == [3] * 5


def test_adding_photos_later_equals_adding_them_at_once() -> None:
    rng = np.random.default_rng(1)
    photos = rng.standard_normal((5, 8)).astype(np.float32)
    at_once = Gallery.for_embedder(FakeEmbedder(), 0.5)
    at_once.add("a", photos)
    in_two = Gallery.for_embedder(FakeEmbedder(), 0.5)
    in_two.add("a", photos[:2])
    in_two.add("a", photos[2:])
    np.testing.assert_allclose(in_two.centroids(), at_once.centroids(), rtol=1e-5, atol=1e-6)
    assert in_two.counts.tolist() == [5]


def test_identify_matches_naive_argmax_and_threshold() -> None:
    rng = np.random.default_rng(2)
    gallery, _ = make_gallery(rng, people=20)
    queries = rng.standard_normal((50, 8)).astype(np.float32)
    scores = unit(queries) @ gallery.centroids().T
    matches = gallery.identify(queries)
    for match, row in zip(matches, scores):
        best = int(np.argmax(row))
        assert match.nearest == gallery.names[best]
        assert match.score == pytest.approx(row[best], abs=1e-5)
        assert match.name == (gallery.names[best] if row[best] >= 0.5 else UNKNOWN)
    assert {m.name for m in matches} >= {UNKNOWN}  # random queries: some fall below 0.5


def test_remove_and_roundtrip(tmp_path: Path) -> None:
    gallery, _ = make_gallery(np.random.default_rng(3))
    gallery.remove("p2")
    with pytest.raises(FacescaleError, match="no person named 'nobody'"):
        gallery.remove("nobody")
    path = tmp_path / "g.gallery"
    gallery.save(path)
    loaded = Gallery.load(path)
    assert loaded.names == ["p0", "p1", "p3", "p4"]
    np.testing.assert_array_equal(loaded.sums, gallery.sums)
    np.testing.assert_array_equal(loaded.counts, gallery.counts)
    assert loaded.embedder == gallery.embedder and loaded.threshold == 0.5


def test_file_is_only_a_json_header_and_raw_tensors(tmp_path: Path) -> None:
    """Loading runs no code: the bytes are a length, a JSON header and the raw little-endian arrays."""
    gallery, _ = make_gallery(np.random.default_rng(4))
    path = tmp_path / "g.gallery"
    gallery.save(path)
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert json.loads(header["__metadata__"][GALLERY_KEY])["names"] == gallery.names
    end = 0
    for key in ("sums", "counts"):
        start, stop = header[key]["data_offsets"]
        raw = data[8 + header_len + start : 8 + header_len + stop]
        dtype = {"F32": "<f4", "I64": "<i8"}[header[key]["dtype"]]
        np.testing.assert_array_equal(
            np.frombuffer(raw, dtype).reshape(header[key]["shape"]), getattr(gallery, key)
        )
        end = max(end, stop)
    assert len(data) == 8 + header_len + end


class _Trap:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.target),))


def test_a_pickle_posing_as_a_gallery_is_refused_without_running(tmp_path: Path) -> None:
    trap = _Trap()
    trap.target = str(tmp_path / "pwned")  # type: ignore[attr-defined]
    path = tmp_path / "evil.gallery"
    path.write_bytes(pickle.dumps(trap))
    with pytest.raises(DataError, match=r"evil\.gallery"):
        Gallery.load(path)
    assert not (tmp_path / "pwned").exists()


def test_other_model_and_empty_gallery_are_refused(tmp_path: Path) -> None:
    gallery, _ = make_gallery(np.random.default_rng(5))
    with pytest.raises(FacescaleError, match="cannot be compared"):
        gallery.check_embedder(FakeEmbedder(fingerprint="ffffffffffffffff"))
    gallery.check_embedder(FakeEmbedder())
    empty = Gallery.for_embedder(FakeEmbedder(), 0.5)
    empty.save(tmp_path / "empty.gallery")
    loaded = Gallery.load(tmp_path / "empty.gallery")
    assert len(loaded) == 0
    with pytest.raises(FacescaleError, match="empty"):
        loaded.identify(np.ones((1, 8), np.float32))
    with pytest.raises(FacescaleError, match="does not exist"):
        Gallery.load(tmp_path / "missing.gallery")


def test_flat_index_is_exact_on_many_entries() -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng.standard_normal((20_000, 32)).astype(np.float32))
    queries = unit(rng.standard_normal((16, 32)).astype(np.float32))
    scores, indices = SearchIndex(vectors, IndexSpec("flat")).search(queries, 3)
    reference = queries @ vectors.T
    np.testing.assert_array_equal(indices, np.argsort(-reference, axis=1)[:, :3])
    np.testing.assert_allclose(scores, np.sort(reference, axis=1)[:, ::-1][:, :3], rtol=1e-5, atol=1e-5)


def test_gallery_cli_list_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facescale.cli.main import main

    gallery, _ = make_gallery(np.random.default_rng(7), people=3)
    path = tmp_path / "g.gallery"
    gallery.save(path)
    assert main(["gallery", "remove", str(path), "p1", "nobody"]) == 1
    assert "no person named 'nobody'" in capsys.readouterr().err
    assert Gallery.load(path).names == ["p0", "p1", "p2"]  # a typo changes nothing
    assert main(["gallery", "remove", str(path), "p1"]) == 0
    assert main(["gallery", "list", str(path)]) == 0
    out = capsys.readouterr().out
    assert "p0\t3 photo(s)" in out and "p1\t" not in out and "threshold 0.5" in out
