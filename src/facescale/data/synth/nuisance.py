"""What changes from one image of a SynthFace identity to the next.

Pose (roll, yaw, pitch), placement (scale, shift), expression, clothes, background clutter,
occluders and the photometric chain (directional light, brightness, contrast, colour cast,
grayscale, blur, sensor noise). ``strength`` scales every nuisance at once: 0 gives a clean
frontal face on a plain background, 1 the default difficulty, above 1 harder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facescale.data.synth.identity import HEAD_CX, IdentityTraits
from facescale.data.synth.painter import Painter, ellipse_points, shade
from facescale.data.synth.parts import Expression

OCCLUDERS = ("none", "bar", "hand", "patch", "scarf", "hat", "stick")

# Gaussian noise drawn once and sliced per image: drawing 37k normals per 112x112 image would
# cost more than the whole face. Fixed seed, so images stay a pure function of their RNG.
_NOISE_BANK = np.random.default_rng(20240601).standard_normal((320, 320, 3)).astype(np.float32)


@dataclass(frozen=True)
class Nuisance:
    """The per-image variation, sampled by ``sample_nuisance``."""

    roll: float  # degrees, in-plane rotation
    yaw: float  # degrees, faked by moving features over the head ellipsoid
    pitch: float
    scale: float  # multiplies the face size
    shift: tuple[float, float]  # pixels at 112x112
    expression: Expression
    clothes: tuple[int, int, int]
    occluder: str
    light_angle: float  # radians, direction the light comes from
    light_strength: float  # 0: flat; 0.5: one side half as bright as the centre
    brightness: float
    contrast: float
    cast: tuple[float, float, float]  # per-channel gains
    grayscale: bool
    blur: float  # Gaussian sigma in pixels at 112x112, 0 for none
    noise: float  # Gaussian sigma in grey levels


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    c = rng.integers(0, 256, 3)
    return (int(c[0]), int(c[1]), int(c[2]))


def sample_nuisance(rng: np.random.Generator, strength: float = 1.0, hard: bool = False) -> Nuisance:
    """Draw one image's nuisances. ``hard``: a strongly turned head and an occluder (like cfp_fp)."""
    n = max(0.0, float(strength))
    u, normal = rng.uniform, rng.normal
    if hard:
        yaw = float(rng.choice([-1.0, 1.0]) * u(30.0, 42.0))
    else:
        yaw = float(np.clip(normal(0.0, 14.0 * n), -35.0, 35.0))
    expression = Expression(
        smile=float(u(0.0, 1.0)) if u() < 0.5 * n else 0.0,
        mouth_open=float(u(0.2, 1.0)) if u() < 0.3 * n else 0.0,
        squint=float(u(0.0, 0.8)) if u() < 0.25 * n else 0.0,
        brow_raise=float(np.clip(normal(0.0, 0.5 * n), -1.0, 1.0)),
        gaze=(float(u(-1.0, 1.0) * min(n, 1.0)), float(u(-1.0, 1.0) * min(n, 1.0))),
    )
    occluded = hard or u() < 0.3 * n
    return Nuisance(
        roll=float(np.clip(normal(0.0, 7.0 * n), -20.0, 20.0)),
        yaw=yaw,
        pitch=float(np.clip(normal(0.0, 6.0 * n), -15.0, 15.0)),
        scale=float(np.exp(np.clip(normal(0.0, 0.08 * n), -0.25, 0.25))),
        shift=(float(normal(0.0, 3.5 * n)), float(normal(0.0, 3.5 * n))),
        expression=expression,
        clothes=_color(rng),
        occluder=OCCLUDERS[int(rng.integers(1, len(OCCLUDERS)))] if occluded else "none",
        light_angle=float(u(0.0, 2 * math.pi)),
        light_strength=float(u(0.0, 0.7 * n)),
        brightness=float(np.exp(normal(0.0, 0.22 * n))),
        contrast=float(np.exp(normal(0.0, 0.18 * n))),
        cast=tuple(float(g) for g in np.exp(normal(0.0, 0.12 * n, 3))),  # type: ignore[arg-type]
        grayscale=bool(u() < 0.1 * n),
        blur=float(u(0.4, 0.6 + 0.9 * n)) if u() < 0.35 * n else 0.0,
        noise=float(u(0.0, 10.0 * n)),
    )


def draw_background(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> None:
    """Fill ``image`` (uint8 ``[H, W, 3]``) with a smooth colour field and random clutter, in place."""
    h, w = image.shape[:2]
    field = rng.integers(0, 256, (2, 2, 3)).astype(np.uint8)
    cv2.resize(field, (w, h), dst=image, interpolation=cv2.INTER_LINEAR)
    count = int(rng.integers(2, 3 + round(8 * min(strength, 2.0))))
    colors = rng.integers(0, 256, (count, 3)).tolist()
    kinds = rng.integers(0, 4, count).tolist()
    size = max(h, w)
    # x, y, extent, and two free parameters per shape, all drawn at once (one RNG call each)
    xs, ys = rng.integers(0, w, count).tolist(), rng.integers(0, h, count).tolist()
    extents = rng.integers(size // 12, size // 3 + 2, count).tolist()
    free = rng.uniform(-1.0, 1.0, (count, 2)).tolist()
    for kind, color, x, y, extent, (f0, f1) in zip(kinds, colors, xs, ys, extents, free):
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + extent, y + 2 + int(abs(f0) * extent)), color, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), max(2, extent // 2), color, -1, cv2.LINE_AA)
        elif kind == 2:
            end = (x + int(f0 * extent), y + int(f1 * extent))
            cv2.line(image, (x, y), end, color, 1 + int(abs(f1) * 4), cv2.LINE_AA)
        else:
            corners = [[x, y], [x + extent, y + extent // 3], [x + extent // 4, y + extent]]
            cv2.fillPoly(image, [np.array(corners, dtype=np.int32)], color, cv2.LINE_AA)


def draw_occluder(p: Painter, t: IdentityTraits, kind: str, rng: np.random.Generator) -> None:
    """Cover part of the face with ``kind`` (one of ``OCCLUDERS``), in the canonical frame."""
    if kind == "none":
        return
    color = _color(rng)
    cx, w = HEAD_CX, t.face_half_width

    def z(points: np.ndarray) -> np.ndarray:
        return p.depth(points) + 12.0

    if kind == "bar":  # a band across the eyes or the mouth
        y = t.eye_y if rng.uniform() < 0.5 else t.mouth_y
        half = rng.uniform(4.0, 9.0)
        x0, x1 = cx - w - 6, cx + w + 6
        pts = np.array([[x0, y - half], [x1, y - half], [x1, y + half], [x0, y + half]])
    elif kind == "hand":
        skin = shade((230, 180, 150), rng.uniform(0.4, 1.1))
        x0, y0 = cx + rng.uniform(-1, 1) * w * 0.6, rng.uniform(70, 105)
        axes = rng.uniform(12, 22), rng.uniform(9, 16)
        pts = ellipse_points(x0, y0, axes[0], axes[1], angle=rng.uniform(-40, 40), n=18)
        p.fill(pts, skin, z=z(pts))
        return
    elif kind == "patch":
        x0, y0 = cx + rng.uniform(-1, 0.6) * w, rng.uniform(35.0, 95.0)
        sx, sy = rng.uniform(10, 26), rng.uniform(10, 26)
        pts = np.array([[x0, y0], [x0 + sx, y0], [x0 + sx, y0 + sy], [x0, y0 + sy]])
    elif kind == "scarf":
        y0 = rng.uniform(t.nose_tip_y - 2, t.mouth_y + 2)
        x0, x1 = cx - w - 8, cx + w + 8
        pts = np.array([[x0, y0 + 6], [cx, y0], [x1, y0 + 6], [x1, 130], [x0, 130]])
    elif kind == "hat":
        brim = t.eye_y - t.brow_lift - rng.uniform(-1.0, 8.0)
        crown = ellipse_points(cx, brim, w + 6, t.face_top + 6, n=17, t0=math.pi, t1=2 * math.pi)
        pts = np.vstack([crown, [[cx + w + 14, brim + 3], [cx - w - 14, brim + 3]]])
    else:  # stick: a microphone, a pen, a finger
        a = rng.uniform(0, math.pi)
        c = np.array([cx + rng.uniform(-0.5, 0.5) * w, rng.uniform(50, 100)])
        d = np.array([math.cos(a), math.sin(a)]) * 40
        p.stroke(np.array([c - d, c + d]), color, rng.uniform(3.0, 7.0), z=0.0)
        return
    p.fill(pts, color, z=z(pts))


def photometric(image: np.ndarray, nz: Nuisance, rng: np.random.Generator, size_ratio: float) -> np.ndarray:
    """Apply light, colour, blur and noise to ``image`` (uint8 ``[H, W, 3]``); returns a new array.

    ``size_ratio``: output pixels per 112x112-crop pixel, so blur scales with the face.
    """
    h, w = image.shape[:2]
    f: np.ndarray = image.astype(np.float32)
    if nz.grayscale:
        f[:] = f.mean(axis=2, keepdims=True)
    # Directional light: resizing a 2x2 field of corner gains gives a smooth ramp (flat near the
    # borders) for the cost of one tiny resize instead of building the ramp pixel by pixel.
    dx, dy = math.cos(nz.light_angle), math.sin(nz.light_angle)
    ramp = np.array([[-dx - dy, dx - dy], [-dx + dy, dx + dy]], dtype=np.float32)
    corner_gain = (1.0 + nz.light_strength * ramp) * (nz.brightness * nz.contrast)
    corner_gain = corner_gain[:, :, None] * np.asarray(nz.cast, dtype=np.float32)[None, None, :]
    gain = cv2.resize(corner_gain.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    f *= gain
    f += np.float32(128.0 * (1.0 - nz.contrast))
    if nz.blur > 0:
        f = cv2.GaussianBlur(f, (0, 0), nz.blur * size_ratio)
    if nz.noise > 0:
        bank_h, bank_w = _NOISE_BANK.shape[:2]
        if h <= bank_h and w <= bank_w:
            y0, x0 = int(rng.integers(0, bank_h - h + 1)), int(rng.integers(0, bank_w - w + 1))
            noise = _NOISE_BANK[y0 : y0 + h, x0 : x0 + w]
        else:  # a large canvas: tile the bank
            noise = np.tile(_NOISE_BANK, (h // bank_h + 1, w // bank_w + 1, 1))[:h, :w]
        f += noise * np.float32(nz.noise)
    np.clip(f, 0.0, 255.0, out=f)
    return f.astype(np.uint8)
