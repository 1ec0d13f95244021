"""IJB-B / IJB-C 1:1 verification (and 1:N when the gallery files are there), end to end.

For each face: align the loose crop with its 5 landmarks, embed it and its mirror. Image feature
= f(x) + f(flip(x)) with its norm kept, times the faceness score; template = sum over its media
of the mean of that media's image features, L2-normalised; score = dot product; TAR at FAR
1e-6 .. 1e-1 read off the ROC by eval_ijbc.py's rule (the point whose FAR is nearest the target,
the figure papers quote), with the conservative rule (FAR <= target) beside it, and "n/a" where
a FAR is below 1 / #impostor pairs (see ``metrics``). The ablations users know from insightface's
``ijb_11.py`` are modes, labelled the same way: F1/F0 flip on/off, N1/N0 norm kept/removed,
D1/D0 detector (faceness) score used or not. Features are extracted once for all modes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from facescale.eval.ijb_features import FaceFeatures, embed_faces
from facescale.eval.ijb_identification import IdentificationResult, evaluate_identification
from facescale.eval.ijb_layout import IjbFaces, IjbLayout, find_layout, read_faces, read_pairs
from facescale.eval.metrics import STANDARD_FARS, RocCurve, roc_curve
from facescale.eval.templates import image_level_features, pool_templates, score_pairs, template_rows
from facescale.eval.verification import EmbedFn


@dataclass(frozen=True)
class IjbMode:
    """How image features enter a template (insightface's TestMode switches)."""

    flip: bool = True
    keep_norm: bool = True
    use_score: bool = True

    @property
    def label(self) -> str:
        return f"F{int(self.flip)}N{int(self.keep_norm)}D{int(self.use_score)}"

    @property
    def description(self) -> str:
        return ", ".join(
            [
                "flip" if self.flip else "no flip",
                "norm kept" if self.keep_norm else "normalised",
                "faceness-weighted" if self.use_score else "unweighted",
            ]
        )


ALL_MODES: tuple[IjbMode, ...] = tuple(
    IjbMode(f, n, d) for f, n, d in itertools.product((True, False), repeat=3)
)


@dataclass
class IjbVerificationResult:
    """1:1 figures for one mode.

    ``tar_at_far``: FAR -> TAR in [0, 1] by the papers' (nearest-point) rule; ``tar_at_far_conservative``:
    by the FAR <= target rule. Both None at a FAR below 1 / ``num_impostor``.
    """

    target: str
    mode: str
    description: str
    tar_at_far: dict[float, float | None]
    tar_at_far_conservative: dict[float, float | None]
    roc_auc: float
    eer: float
    num_pairs: int
    num_genuine: int
    num_templates: int
    curve: RocCurve | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "mode": self.mode,
            "description": self.description,
            "tar_at_far": {f"{k:g}": v for k, v in self.tar_at_far.items()},
            "tar_at_far_conservative": {f"{k:g}": v for k, v in self.tar_at_far_conservative.items()},
            "tar_rule": "nearest (eval_ijbc.py); conservative: FAR <= target",
            "num_impostor": self.num_pairs - self.num_genuine,
            "roc_auc": self.roc_auc,
            "eer": self.eer,
            "num_pairs": self.num_pairs,
            "num_genuine": self.num_genuine,
            "num_templates": self.num_templates,
        }


@dataclass
class IjbEvaluation:
    """Everything measured on one IJB set for one model."""

    target: str
    verification: list[IjbVerificationResult]
    identification: list[IdentificationResult] | None
    num_faces: int
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "num_faces": self.num_faces,
            "verification": [r.to_dict() for r in self.verification],
            "identification": [r.to_dict() for r in self.identification] if self.identification else None,
            "seconds": self.seconds,
        }


def verify_pairs(
    template_ids: np.ndarray,
    template_features: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    where: str,
    threads: int | None = None,
    fars: Sequence[float] = STANDARD_FARS,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, RocCurve, dict[float, float | None]]:
    """``(scores [P], ROC, {far: TAR})`` of the template pairs ``(t1, t2, is_genuine)``; TAR by the
    papers' nearest-point rule, None where unmeasurable (the conservative rule: ``curve.tar_at_far``).

    ``rows``: the pairs' row indices into ``template_ids`` when already known (they depend only on
    the template ids, not on the features, so an ablation over modes looks them up once).
    """
    t1, t2, genuine = pairs
    if rows is None:
        rows = template_rows(template_ids, t1, where), template_rows(template_ids, t2, where)
    rows1, rows2 = rows
    scores = score_pairs(template_features, rows1, rows2, threads=threads)
    curve = roc_curve(scores, genuine)
    return scores, curve, {float(f): curve.tar_at_far_both(f)[0] for f in fars}


def evaluate_modes(
    layout: IjbLayout,
    faces: IjbFaces,
    features: FaceFeatures,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    modes: Sequence[IjbMode],
    threads: int | None = None,
) -> tuple[list[IjbVerificationResult], tuple[np.ndarray, np.ndarray]]:
    """1:1 results for each mode, and the first mode's ``(template ids, template features)``."""
    results, first = [], None
    where = str(layout.template_pair_label)
    rows: tuple[np.ndarray, np.ndarray] | None = None
    for mode in modes:
        image_features = image_level_features(
            features.features, features.flipped, faces.faceness, mode.flip, mode.keep_norm, mode.use_score
        )
        template_ids, template_features = pool_templates(image_features, faces.templates, faces.medias)
        if first is None:
            first = (template_ids, template_features)
            rows = template_rows(template_ids, pairs[0], where), template_rows(template_ids, pairs[1], where)
        _, curve, tars = verify_pairs(template_ids, template_features, pairs, where, threads, rows=rows)
        results.append(
            IjbVerificationResult(
                target=layout.target,
                mode=mode.label,
                description=mode.description,
                tar_at_far=tars,
                tar_at_far_conservative={f: curve.tar_at_far_both(f)[1] for f in tars},
                roc_auc=curve.auc(),
                eer=curve.eer(),
                num_pairs=len(pairs[0]),
                num_genuine=curve.num_genuine,
                num_templates=len(template_ids),
                curve=curve,
            )
        )
    assert first is not None
    return results, first


def evaluate_ijb(
    embed: EmbedFn,
    root: str,
    target: str = "IJBC",
    modes: Sequence[IjbMode] = (IjbMode(),),
    batch_size: int = 128,
    workers: int = 2,
    threads: int | None = None,
    identification: bool = True,
    progress: Callable[[int, str], Callable[[int], object]] | None = None,
) -> IjbEvaluation:
    """Run 1:1 (every mode in ``modes``) and, when its files exist and ``identification``, 1:N
    (with the first mode) on the IJB set at ``root`` (``root/meta`` or ``root/<target>/meta``).

    ``embed``: uint8 ``[n, 112, 112, 3]`` RGB -> raw float32 ``[n, D]``. ``progress(total, what)``,
    when given, returns a callback taking the number of faces done after each batch.
    """
    if not modes:
        raise ValueError("at least one IJB mode is needed")
    layout = find_layout(root, target)
    seconds = {}
    t0 = time.perf_counter()
    faces = read_faces(layout)
    pairs = read_pairs(layout)
    seconds["read_protocol"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    need_flip = any(m.flip for m in modes)
    tick = progress(len(faces), f"{layout.target} faces") if progress else None
    features = embed_faces(embed, layout.image_dir, faces, need_flip, batch_size, workers, tick)
    seconds["embed"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results, (template_ids, template_features) = evaluate_modes(
        layout, faces, features, pairs, modes, threads
    )
    seconds["verification"] = time.perf_counter() - t0

    found = None
    if identification and layout.has_identification():
        t0 = time.perf_counter()
        found = evaluate_identification(layout, template_ids, template_features)
        seconds["identification"] = time.perf_counter() - t0
    return IjbEvaluation(
        target=layout.target,
        verification=results,
        identification=found,
        num_faces=len(faces),
        seconds=seconds,
    )
