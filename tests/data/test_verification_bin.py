from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from datatest_utils import tiny_image

from facescale.data.image_codec import decode_image, encode_png
from facescale.data.safe_pickle import safe_loads
from facescale.data.verification_bin import load_verification_bin, save_verification_bin
from facescale.errors import DataError


@pytest.mark.parametrize("flavour", ["py2", "py3"])
def test_loads_fixture_bins(fixture_dir: Path, flavour: str) -> None:
    pairs = load_verification_bin(fixture_dir / f"verify_{flavour}.bin")
    np.testing.assert_array_equal(pairs.issame, np.load(fixture_dir / "expected_issame.npy"))
    images = pairs.decode()
    assert images.shape == (40, 112, 112, 3) and images.dtype == np.uint8


def test_py2_and_py3_bins_hold_the_same_images(fixture_dir: Path) -> None:
    a = load_verification_bin(fixture_dir / "verify_py2.bin")
    b = load_verification_bin(fixture_dir / "verify_py3.bin")
    assert a.images == b.images


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_save_load_round_trip(tmp_path: Path, protocol: int) -> None:
    images = [encode_png(tiny_image(i)) for i in range(4)]
    save_verification_bin(tmp_path / "v.bin", images, [True, False])
    pairs = load_verification_bin(tmp_path / "v.bin")
    assert pairs.images == images and pairs.issame.tolist() == [True, False]
    # Python 3 writers at protocol 0/2 pickle bytes through _codecs.encode; numpy bools too.
    (tmp_path / "w.bin").write_bytes(pickle.dumps((images, np.array([True, False])), protocol=protocol))
    pairs = load_verification_bin(tmp_path / "w.bin")
    assert pairs.images == images and pairs.issame.tolist() == [True, False]
    np.testing.assert_array_equal(pairs.decode()[3], decode_image(images[3], "t"))


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[override]
        return (os.system, (f"touch {self.marker}",))


class _RunsEval:
    def __reduce__(self):  # type: ignore[override]
        return (eval, ("__import__('os').getpid()",))


def test_malicious_bin_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(([_RunsShell(marker), b"x"], [True]), protocol=2)
    pickle.loads(pickle.dumps(_RunsShell(tmp_path / "control"), protocol=2))  # the payload does work
    assert (tmp_path / "control").exists()
    (tmp_path / "evil.bin").write_bytes(payload)
    with pytest.raises(DataError, match=r"evil\.bin.*(posix|os|nt)\.system"):
        load_verification_bin(tmp_path / "evil.bin")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_restricted_unpickler_refuses_globals(protocol: int) -> None:
    with pytest.raises(DataError, match=r"builtins\.eval"):
        safe_loads(pickle.dumps(_RunsEval(), protocol=protocol), "t")
    with pytest.raises(DataError, match="object arrays"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=protocol), "t")


def test_malformed_bins(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(pickle.dumps(([b"x"], [True])))
    with pytest.raises(DataError, match="1 images for 1 pairs"):
        load_verification_bin(tmp_path / "a.bin")
    (tmp_path / "b.bin").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"b\.bin: not a valid pickle"):
        load_verification_bin(tmp_path / "b.bin")
