"""The safe unpickler caps what a pickle may allocate (issue 16.14): a tiny pickle cannot ask
for 10^11 bytes, and honest pickles of every size still load."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from facescale.data.safe_pickle import safe_load_file, safe_loads
from facescale.errors import DataError


def sized_call(module_global: bytes, size: int) -> bytes:
    """``GLOBAL module_global`` called with one 8-byte integer: ``bytearray(size)`` in a few bytes."""
    return b"c" + module_global + b"\n(\x8a\x08" + struct.pack("<q", size) + b"tR."


@pytest.mark.parametrize("name", [b"builtins\nbytearray", b"__builtin__\nbytes"])
def test_a_tiny_pickle_asking_for_huge_memory_is_refused(tmp_path, name):
    # 10^15 rather than the report's 10^11 so that, without the cap, the test fails at once with
    # MemoryError instead of really filling 100 GB of this shared machine.
    data = sized_call(name, 10**15)
    assert len(data) < 40
    path = tmp_path / "lfw.bin"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        safe_load_file(path)
    message = str(info.value)
    assert str(path) in message and "1,000,000,000,000,000 bytes" in message
    assert f"{len(data)}-byte pickle" in message


def test_a_numpy_array_header_with_a_huge_shape_is_refused():
    data = (
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(\x8a\x08"
        + struct.pack("<q", 10**14)
        + b"tU\x01btR."
    )
    with pytest.raises(DataError, match=r"_reconstruct of 100,000,000,000,000 bytes"):
        safe_loads(data, "cfp_fp.bin")


@pytest.mark.parametrize("protocol", [2, 4])
def test_honest_pickles_still_load(protocol):
    images = [bytes(range(256)) * 4000, b""]
    value = (images, np.array([True, False]), bytearray(b"abc"))
    loaded = safe_loads(pickle.dumps(value, protocol=protocol), "ok.bin")
    assert loaded[0] == images and loaded[1].tolist() == [True, False] and loaded[2] == b"abc"
