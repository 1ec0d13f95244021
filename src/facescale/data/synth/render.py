"""Render one SynthFace image: an identity's traits under freshly drawn nuisances.

``render_face(traits, rng)`` returns an RGB uint8 image and its 5 landmarks (left eye, right
eye, nose tip, left mouth corner, right mouth corner, as in the image). With ``canvas=None``
the image is ``size x size`` and aligned like an insightface training crop: the frontal,
neutral landmarks of the identity are mapped onto the ArcFace template, then the pose,
scale and shift nuisances move them. With ``canvas`` the head is drawn at a random place and
size in a ``canvas x canvas`` cluttered picture (a loose crop, or a photo to detect faces in).
"""

from __future__ import annotations

import math

import numpy as np

from facescale.data.synth.identity import IdentityTraits
from facescale.data.synth.nuisance import draw_background, draw_occluder, photometric, sample_nuisance
from facescale.data.synth.painter import Painter
from facescale.data.synth.parts import NOSE_LIFT, Expression, draw_head, eye_centers, mouth_corners, nose_tip
from facescale.models.face_template import ARCFACE_TEMPLATE, estimate_similarity

# Rotations and scaling happen about the template's centre of mass.
_TEMPLATE_CENTER = ARCFACE_TEMPLATE.mean(axis=0)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine ``outer o inner``."""
    m = outer[:, :2] @ inner[:, :2]
    return np.concatenate([m, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def _jitter(roll: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate by ``roll`` degrees and scale about the template centre, then shift (112 frame)."""
    c, s = math.cos(math.radians(roll)) * scale, math.sin(math.radians(roll)) * scale
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = _TEMPLATE_CENTER - m[:, :2] @ _TEMPLATE_CENTER + np.asarray(shift)
    return m


def render_face(
    traits: IdentityTraits,
    rng: np.random.Generator,
    size: int = 112,
    canvas: int | None = None,
    nuisance: float = 1.0,
    *,
    hard: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image of ``traits`` with nuisances drawn from ``rng``.

    Args:
        traits: the identity (``sample_identity``).
        rng: the image's generator; the image is a pure function of ``traits`` and its state.
        size: side of the aligned crop (``canvas=None``), or the reference face size the
            placement scales from.
        canvas: ``None`` for an aligned ``size x size`` crop; an int > 0 for a
            ``canvas x canvas`` picture with the head at a random position and scale.
        nuisance: strength of every nuisance (0 clean, 1 default, > 1 harder).
        hard: force a strongly turned head and an occluder (for a cfp_fp-like pair set).

    Returns:
        ``(image, landmarks)``: uint8 ``[S, S, 3]`` RGB with S = ``canvas or size``, and
        float32 ``[5, 2]`` pixel coordinates (x, y) of the eyes, nose tip and mouth corners.
    """
    if size <= 0 or (canvas is not None and canvas <= 0):
        raise ValueError(f"size and canvas must be positive, got size={size}, canvas={canvas}")
    nz = sample_nuisance(rng, nuisance, hard=hard)
    out = canvas if canvas is not None else size
    image = np.empty((out, out, 3), dtype=np.uint8)
    draw_background(image, rng, nuisance)

    align = estimate_similarity(traits.neutral_landmarks(), ARCFACE_TEMPLATE)
    matrix = _compose(_jitter(nz.roll, nz.scale, nz.shift), align)
    if canvas is None:
        face_px = float(size)
        place = np.array([[size / 112.0, 0.0, 0.0], [0.0, size / 112.0, 0.0]])
    else:
        face_px = float(rng.uniform(0.25, 0.6) * canvas)
        ox, oy = rng.uniform(0.0, canvas - face_px, 2)
        place = np.array([[face_px / 112.0, 0.0, ox], [0.0, face_px / 112.0, oy]])
    matrix = _compose(place, matrix)

    w = traits.face_half_width
    painter = Painter(
        image,
        matrix,
        yaw=nz.yaw,
        pitch=nz.pitch,
        radii=(w, 0.5 * (traits.face_top + traits.face_bottom), 0.9 * w),
    )
    draw_head(painter, traits, nz.expression, nz.clothes)
    draw_occluder(painter, traits, nz.occluder, rng)
    image = photometric(image, nz, rng, size_ratio=face_px / 112.0)

    eyes = eye_centers(traits)
    mouth = mouth_corners(traits, nz.expression)
    tip = nose_tip(traits)[None]
    landmarks = np.concatenate(
        [
            painter.project(eyes),
            painter.project(tip, painter.depth(tip) + NOSE_LIFT),
            painter.project(mouth),
        ]
    )
    return image, landmarks.astype(np.float32)


def render_frontal(traits: IdentityTraits, size: int = 112) -> np.ndarray:
    """The identity's clean, frontal, neutral portrait on a plain grey background (for previews)."""
    image = np.full((size, size, 3), 200, dtype=np.uint8)
    align = estimate_similarity(traits.neutral_landmarks(), ARCFACE_TEMPLATE)
    place = np.array([[size / 112.0, 0.0, 0.0], [0.0, size / 112.0, 0.0]])
    w = traits.face_half_width
    painter = Painter(
        image, _compose(place, align), radii=(w, 0.5 * (traits.face_top + traits.face_bottom), 0.9 * w)
    )
    draw_head(painter, traits, Expression(), (90, 90, 100))
    return image
