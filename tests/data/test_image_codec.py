from __future__ import annotations

import numpy as np
import pytest
from datatest_utils import tiny_image
from PIL import Image

from facescale.data.image_codec import decode_image, encode_jpeg, encode_png, is_truncated_jpeg
from facescale.errors import DataError


def test_decode_matches_pil_rgb() -> None:
    import io

    jpeg = encode_jpeg(tiny_image(1, 32), quality=90)
    ours = decode_image(jpeg, "t")
    reference = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert ours.shape == reference.shape
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 2  # IDCT rounding only
    png = encode_png(tiny_image(2))
    np.testing.assert_array_equal(decode_image(png, "t"), tiny_image(2))


def test_bad_images_name_where() -> None:
    jpeg = encode_jpeg(tiny_image(3, 32))
    assert not is_truncated_jpeg(jpeg)
    assert is_truncated_jpeg(jpeg[: len(jpeg) // 2])
    with pytest.raises(DataError, match="rec key 9: truncated JPEG"):
        decode_image(jpeg[: len(jpeg) // 2], "rec key 9")
    with pytest.raises(DataError, match=r"file\.jpg: not a decodable image"):
        decode_image(b"not an image at all", "file.jpg")
    with pytest.raises(DataError, match="empty image"):
        decode_image(b"", "x")


def test_corrupt_jpeg_is_refused_not_decoded_to_garbage() -> None:
    jpeg = encode_jpeg(tiny_image(4, 32))
    corrupt = jpeg[:200] + b"\0" * 50 + jpeg[250:]  # still ends with the end-of-image marker
    assert not is_truncated_jpeg(corrupt)
    with pytest.raises(DataError, match="record 3: corrupt JPEG"):
        decode_image(corrupt, "record 3")
