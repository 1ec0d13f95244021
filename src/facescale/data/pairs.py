"""Verification bins <-> image files plus a pair list (to look at, or to build a new bin).

``pairs.txt`` lines are ``images/000000.jpg<TAB>images/000001.jpg<TAB>1`` (1: same identity),
paths relative to the folder holding ``pairs.txt``. With ``flip``, a horizontally flipped copy
of each image is written next to it as a lossless PNG (``000000_flip.png``).
"""

from __future__ import annotations

from pathlib import Path

from facescale import atomic
from facescale.data.convert import image_extension
from facescale.data.image_codec import decode_image, encode_png
from facescale.data.verification_bin import load_verification_bin, save_verification_bin
from facescale.errors import DataError


def bin_to_pairs(bin_path: str | Path, out_dir: str | Path, flip: bool = False) -> int:
    """Write the images of a verification bin and ``pairs.txt``; return the number of pairs."""
    pairs = load_verification_bin(bin_path)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for i, data in enumerate(pairs.images):
        name = f"images/{i:06d}{image_extension(data)}"
        atomic.write_bytes_atomic(out / name, data)
        if flip:
            image = decode_image(data, f"{bin_path} image {i}")
            atomic.write_bytes_atomic(out / f"images/{i:06d}_flip.png", encode_png(image[:, ::-1]))
        names.append(name)
    lines = [f"{names[2 * k]}\t{names[2 * k + 1]}\t{int(same)}\n" for k, same in enumerate(pairs.issame)]
    atomic.write_text_atomic(out / "pairs.txt", "".join(lines))
    return len(lines)


def pairs_to_bin(pairs_file: str | Path, out_path: str | Path) -> int:
    """Build a verification bin from ``pairs.txt`` (``a<TAB>b<TAB>0|1``); return the number of pairs."""
    pairs_file = Path(pairs_file)
    base = pairs_file.parent
    images: list[bytes] = []
    issame: list[bool] = []
    try:
        text = pairs_file.read_text()
    except OSError as e:
        raise DataError(f"{pairs_file}: cannot read ({e.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) != 3 or fields[2].strip() not in ("0", "1", "True", "False"):
            raise DataError(f"{pairs_file}:{number}: expected 'image_a<TAB>image_b<TAB>1|0', got {line!r}")
        for name in fields[:2]:
            path = base / name.strip()
            try:
                data = path.read_bytes()
            except OSError as e:
                raise DataError(f"{pairs_file}:{number}: cannot read {path} ({e.strerror})") from None
            decode_image(data, f"{path} ({pairs_file}:{number})")
            images.append(data)
        issame.append(fields[2].strip() in ("1", "True"))
    if not issame:
        raise DataError(f"{pairs_file}: no pairs")
    save_verification_bin(out_path, images, issame)
    return len(issame)
