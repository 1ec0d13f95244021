"""A synthetic IJB-style set from SynthFace identities, written in exactly the real IJB layout.

Each identity gets several templates; a template holds several media (a photo, or a "video"
of a few frames); every face is a SynthFace loose crop (the face at a random place and scale
on a larger canvas) with its 5 landmarks and a faceness score. The files are the ones
``ijb_layout`` reads (``meta/ijbc_face_tid_mid.txt``, ``meta/ijbc_name_5pts_score.txt``,
``meta/ijbc_template_pair_label.txt``, the 1:N gallery and probe CSVs, ``loose_crop/*.jpg``),
so the whole IJB path runs without the real data. Deterministic for a seed.

1:N: the first template of each identity is its gallery template; the first half of the
identities form gallery 1 (G1 / S1), the second half gallery 2; every other template is a
probe, so each probe is mated in exactly one gallery, as in IJB-C.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facescale.errors import FacescaleError
from facescale.eval.ijb_layout import CSV_HEADER, TARGETS, IjbLayout

# identities far above any SynthFace training or validation range, so the set is disjoint
IDENTITY_OFFSET = 50_000_000


@dataclass(frozen=True)
class SynthIjbSpec:
    """The shape of a synthetic IJB set."""

    num_identities: int = 20
    templates_per_identity: int = 3
    max_media_per_template: int = 3
    max_frames_per_media: int = 3
    impostors_per_template: int = 10
    canvas: int = 160
    seed: int = 0
    target: str = "IJBC"

    def check(self) -> None:
        if self.target not in TARGETS:
            raise FacescaleError(f"target {self.target!r} is not one of {', '.join(TARGETS)}")
        if self.num_identities < 4:
            raise FacescaleError(
                f"a synthetic IJB set needs at least 4 identities, got {self.num_identities}"
            )
        if self.templates_per_identity < 2:
            raise FacescaleError("each identity needs at least 2 templates (a gallery one and a probe)")
        if min(self.max_media_per_template, self.max_frames_per_media, self.impostors_per_template) < 1:
            raise FacescaleError(
                "media per template, frames per media and impostors per template must be >= 1"
            )
        if self.canvas < 112:
            raise FacescaleError(f"the loose-crop canvas must be at least 112 pixels, got {self.canvas}")


@dataclass
class _Face:
    template: int
    media: int
    jpeg: bytes
    landmarks: np.ndarray  # [5, 2]
    faceness: float


def _render_identity(spec: SynthIjbSpec, identity: int) -> list[list[list[_Face]]]:
    """Faces of one identity: templates -> media -> frames (template/media ids filled in later)."""
    from facescale.data.image_codec import encode_jpeg
    from facescale.data.synth.identity import sample_identity
    from facescale.data.synth.render import render_face

    traits = sample_identity(spec.seed, IDENTITY_OFFSET + identity)
    rng = np.random.default_rng([spec.seed, IDENTITY_OFFSET + identity, 7])
    templates = []
    for _ in range(spec.templates_per_identity):
        media = []
        for _ in range(int(rng.integers(1, spec.max_media_per_template + 1))):
            frames = []
            for _ in range(int(rng.integers(1, spec.max_frames_per_media + 1))):
                image, landmarks = render_face(traits, rng, size=112, canvas=spec.canvas)
                faceness = float(np.round(rng.uniform(0.6, 1.0), 6))
                frames.append(_Face(0, 0, encode_jpeg(image, quality=92), np.asarray(landmarks), faceness))
            media.append(frames)
        templates.append(media)
    return templates


def _pairs(template_owner: list[int], spec: SynthIjbSpec) -> list[tuple[int, int, int]]:
    """All genuine template pairs, and ``impostors_per_template`` impostors per template."""
    owner = np.asarray(template_owner)
    rng = np.random.default_rng([spec.seed, 11])
    pairs: set[tuple[int, int, int]] = set()
    for a in range(len(owner)):
        for b in range(a + 1, len(owner)):
            if owner[a] == owner[b]:
                pairs.add((a + 1, b + 1, 1))
        others = np.flatnonzero(owner != owner[a])
        for b in rng.choice(others, size=min(spec.impostors_per_template, len(others)), replace=False):
            lo, hi = sorted((a, int(b)))
            pairs.add((lo + 1, hi + 1, 0))
    return sorted(pairs)


def _write_csv(path: Path, rows: list[list[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    path.write_text(buffer.getvalue())


def generate_synth_ijb(out_dir: str | Path, spec: SynthIjbSpec | None = None, workers: int = 1) -> dict:
    """Write the set into ``out_dir`` (which must not exist yet, or be empty); returns a summary.

    Written into a temporary sibling folder and renamed at the end, so a failure leaves nothing.
    """
    spec = spec or SynthIjbSpec()
    spec.check()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FacescaleError(f"{out} already exists and is not empty; choose a new folder")
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    layout = IjbLayout(staging, spec.target)
    try:
        layout.image_dir.mkdir(parents=True)
        layout.meta.mkdir()
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                rendered = list(
                    pool.map(_render_identity, [spec] * spec.num_identities, range(spec.num_identities))
                )
        else:
            rendered = [_render_identity(spec, i) for i in range(spec.num_identities)]
        summary = _write_layout(layout, spec, rendered)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**summary, "root": str(out)}


def _write_layout(layout: IjbLayout, spec: SynthIjbSpec, rendered: list) -> dict:
    tid_mid: list[str] = []
    pts: list[str] = []
    template_owner: list[int] = []
    template_rows: dict[int, list[list[object]]] = {}
    gallery_rows: dict[str, list[list[object]]] = {g: [] for g in layout.gallery_names}
    probe_rows: list[list[object]] = []
    image_number = media_id = 0
    for identity, templates in enumerate(rendered):
        subject = identity + 1
        for media_list in templates:
            template_owner.append(subject)
            template_id = len(template_owner)
            rows = template_rows.setdefault(template_id, [])
            for frames in media_list:
                media_id += 1
                for face in frames:
                    image_number += 1
                    name = f"{image_number}.jpg"
                    (layout.image_dir / name).write_bytes(face.jpeg)
                    tid_mid.append(f"{name} {template_id} {media_id}")
                    coords = " ".join(f"{v:.3f}" for v in face.landmarks.reshape(-1))
                    pts.append(f"{name} {coords} {face.faceness:.6f}")
                    (x0, y0), (x1, y1) = face.landmarks.min(0), face.landmarks.max(0)
                    kind = "frames" if len(frames) > 1 else "img"
                    rows.append(
                        [template_id, subject, f"{kind}/{name}", media_id]
                        + [round(float(v), 1) for v in (x0, y0, x1 - x0, y1 - y0)]
                    )
    half = spec.num_identities // 2
    for template_id, rows in template_rows.items():
        subject = template_owner[template_id - 1]
        is_gallery = template_id == 1 or template_owner[template_id - 2] != subject
        if is_gallery:
            gallery_rows[layout.gallery_names[0 if subject <= half else 1]].extend(rows)
        else:
            probe_rows.extend(rows)
    pairs = _pairs(template_owner, spec)
    layout.face_tid_mid.write_text("\n".join(tid_mid) + "\n")
    layout.name_5pts_score.write_text("\n".join(pts) + "\n")
    layout.template_pair_label.write_text("".join(f"{a} {b} {label}\n" for a, b, label in pairs))
    for name, rows in gallery_rows.items():
        _write_csv(layout.gallery(name), rows)
    _write_csv(layout.probe, probe_rows)
    return {
        "target": spec.target,
        "identities": spec.num_identities,
        "templates": len(template_owner),
        "media": media_id,
        "faces": image_number,
        "pairs": len(pairs),
        "genuine_pairs": sum(label for _, _, label in pairs),
    }
