"""The parts of a SynthFace head, each drawn by one function in the canonical frame.

Drawing order matters (later shapes cover earlier ones): clothes, back hair, neck, ears, face,
skin details, beard, eyes, brows, nose, mouth, front hair, glasses. ``draw_head`` runs them in
that order. Per-image expression (smile, open mouth, squint, raised brows, gaze) comes in an
``Expression``; everything else is the identity's ``IdentityTraits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facescale.data.synth.identity import HEAD_CX, HEAD_CY, RESTING_CORNER_LIFT, IdentityTraits
from facescale.data.synth.painter import Painter, ellipse_points, mix, shade

_CX = HEAD_CX
_CY = HEAD_CY
_T = np.linspace(-1.0, 1.0, 9)  # parameter along mouths, brows and hairlines


@dataclass(frozen=True)
class Expression:
    """Per-image facial expression; every value 0 means the neutral face."""

    smile: float = 0.0  # 0..1
    mouth_open: float = 0.0  # 0..1
    squint: float = 0.0  # 0..1 narrows the eyes
    brow_raise: float = 0.0  # -1..1
    gaze: tuple[float, float] = (0.0, 0.0)  # iris offset, fraction of the eye size


def face_outline(t: IdentityTraits, n: int = 40) -> np.ndarray:
    """The head's outline in the canonical frame, ``[n, 2]``, clockwise from the right cheek."""
    a = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(a), np.sin(a)
    lower = s > 0
    power = np.where(lower, 2.0 / t.jaw_square, 1.0)
    x = t.face_half_width * np.sign(c) * np.abs(c) ** power
    y = np.where(lower, t.face_bottom * np.abs(s) ** power, t.face_top * s)
    x = np.where(lower, x * (1.0 - t.chin_taper * (y / t.face_bottom) ** 2), x)
    return np.stack([x + _CX, y + _CY], axis=1)


def mouth_corners(t: IdentityTraits, e: Expression) -> np.ndarray:
    """Left and right mouth corners for this expression, ``[2, 2]`` canonical."""
    half = t.mouth_half_width * (1.0 + 0.1 * e.smile)
    y = t.mouth_y - RESTING_CORNER_LIFT * t.mouth_curve - 3.0 * e.smile
    return np.array([[_CX - half, y], [_CX + half, y]])


def draw_clothes(p: Painter, t: IdentityTraits, color: tuple[int, int, int]) -> None:
    top = _CY + t.face_bottom
    nw = t.neck_half_width
    pts = np.array(
        [[_CX - 95, 175], [_CX - 80, top + 18], [_CX - nw - 4, top + 6], [_CX, top + 16],
         [_CX + nw + 4, top + 6], [_CX + 80, top + 18], [_CX + 95, 175]]
    )  # fmt: skip
    p.fill(pts, color, z=-25.0)


def _hair_arc(t: IdentityTraits, grow: float, lift: float, a0: float, a1: float, n: int = 17) -> np.ndarray:
    return ellipse_points(_CX, _CY, t.face_half_width + grow, t.face_top + lift, n=n, t0=a0, t1=a1)


def draw_back_hair(p: Painter, t: IdentityTraits) -> None:
    """Hair that falls behind the face: long, bob, curly and the bun's knot."""
    v, w, col = t.hair_volume, t.face_half_width, t.hair_color
    if t.hair_style in ("long", "bob"):
        bottom = _CY + (75.0 if t.hair_style == "long" else 0.55 * t.face_bottom)
        arc = _hair_arc(t, 5 + 7 * v, 5 + 6 * v, math.pi, 2 * math.pi)
        side = w + 7 + 9 * v
        pts = np.vstack([arc, [[_CX + side, bottom], [_CX - side, bottom]]])
        p.fill(pts, col, z=-15.0)
    elif t.hair_style == "curly":
        a = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        r = 1.0 + 0.06 * np.sin(a * 11 + 7 * t.hair_part)
        x = _CX + (w + 11 + 9 * v) * np.cos(a) * r
        y = _CY - 6 + (t.face_top + 6 + 8 * v) * np.sin(a) * r
        y = np.minimum(y, _CY + 32)
        p.fill(np.stack([x, y], axis=1), col, z=-15.0)
    elif t.hair_style == "bun":
        top = _CY - t.face_top
        p.fill(ellipse_points(_CX + 8 * t.hair_part, top - 5, 11 + 5 * v, 9 + 4 * v, n=20), col, z=-5.0)


def draw_front_hair(p: Painter, t: IdentityTraits) -> None:
    """The hair cap over the skull with its hairline; the style decides the hairline's shape."""
    style = t.hair_style
    if style == "bald":
        if t.hair_volume > 0.5:  # a horseshoe of hair left around the sides of the skull
            for a0 in (-0.6, math.pi - 0.2):
                arc = ellipse_points(_CX, _CY, t.face_half_width + 0.5, t.face_top, n=7, t0=a0, t1=a0 + 0.8)
                p.stroke(arc, t.hair_color, 3.5, z=0.0)
        return
    w, v = t.face_half_width, t.hair_volume
    temple_y = t.eye_y - 7.0
    grow, lift = 2.0 + 3.0 * v, 3.0 + 5.0 * v
    outer = _hair_arc(t, grow, lift, math.pi - 0.25, 2 * math.pi + 0.25, 21)
    if style == "spiky":
        spikes = np.where(np.arange(len(outer)) % 2 == 1, 1.0 + 0.12 + 0.1 * v, 1.0)
        outer = (outer - [_CX, _CY]) * spikes[:, None] + [_CX, _CY]
    elif style == "curly":
        bumps = 1.0 + 0.05 * np.sin(np.arange(len(outer)) * 2.1)
        outer = (outer - [_CX, _CY]) * bumps[:, None] + [_CX, _CY]
    x = _CX + w * _T[::-1]
    if style == "bangs":
        brow_y = t.eye_y - t.brow_lift - 2.5
        y = brow_y - 2.0 * np.abs(np.sin(_T * 9.0)) - 1.0 * _T**2
    elif style == "side_part":
        k = _T[::-1] - 0.6 * t.hair_part
        y = t.hairline + (temple_y - t.hairline) * np.clip(np.abs(k) / 1.4, 0, 1) ** 1.5
        y = y + 6.0 * np.clip(-np.sign(t.hair_part) * _T[::-1], 0, None)
    else:
        y = t.hairline + (temple_y - t.hairline) * np.abs(_T) ** 2.5
    if style in ("long", "bob"):  # middle (or side) parting: the hairline dips at the part
        y = y - 6.0 * np.exp(-(((x - _CX - 10 * t.hair_part) / 5.0) ** 2))
    inner = np.stack([x, y], axis=1)
    inner[0, 0] += 1.0
    inner[-1, 0] -= 1.0
    p.fill(np.vstack([outer, inner]), t.hair_color)
    if style in ("long", "bob"):  # curtains of hair down the sides of the face
        bottom = _CY + (70.0 if style == "long" else 0.5 * t.face_bottom)
        for side in (-1, 1):
            edge = _CX + side * (w + 6 + 8 * v)
            inner_x = _CX + side * (w - 4)
            pts = np.array(
                [[inner_x, temple_y], [edge, temple_y - 10], [edge, bottom], [inner_x + side * 2, bottom]]
            )
            p.fill(pts, t.hair_color, z=0.0)


def draw_neck_and_ears(p: Painter, t: IdentityTraits) -> None:
    nw, bottom = t.neck_half_width, _CY + t.face_bottom
    neck = np.array(
        [[_CX - nw, _CY + 20], [_CX + nw, _CY + 20], [_CX + nw + 3, bottom + 22], [_CX - nw - 3, bottom + 22]]
    )
    p.fill(neck, shade(t.skin, 0.8), z=-10.0)
    if t.hair_style in ("long", "bob", "curly"):
        return  # covered by hair
    ear_skin = shade(t.skin, 0.93)
    for side in (-1, 1):
        x = _CX + side * (t.face_half_width + t.ear_out * 0.6 - 2.0)
        ax = 4.0 + t.ear_out * 0.5
        p.fill(ellipse_points(x, t.ear_y, ax, t.ear_half_height, angle=side * 8, n=16), ear_skin, z=-12.0)
        inner = ellipse_points(x + side, t.ear_y, ax * 0.45, t.ear_half_height * 0.6, n=10)
        p.fill(inner, shade(t.skin, 0.75), z=-12.0)
        if t.earring is not None:
            p.dot((x, t.ear_y + t.ear_half_height + 1.5), 1.8, t.earring, z=-12.0)


def draw_face_and_skin(p: Painter, t: IdentityTraits) -> None:
    """The face, then what sits on the skin: blush, freckles, moles, forehead lines, marks."""
    p.fill(face_outline(t), t.skin, z=0.0)
    if t.blush > 0.15:
        blush = mix(t.skin, (235, 105, 120), 0.35 * t.blush)
        for side in (-1, 1):
            p.fill(ellipse_points(_CX + side * (t.eye_half_gap + 3), t.eye_y + 15, 7.5, 4.5, n=14), blush)
    freckle = shade(t.skin, 0.72)
    for x, y in t.freckles:
        p.dot((x, y), 0.7, freckle)
    for x, y, r in t.moles:
        p.dot((x, y), r, (70, 45, 35))
    brow_y = t.eye_y - t.brow_lift
    for k in range(t.forehead_lines):
        y = brow_y - 6.0 - 3.5 * k
        p.stroke(np.stack([_CX + 12 * _T, y - 1.5 * (1 - _T**2)], axis=1), shade(t.skin, 0.8), 0.8)
    mark_side = 1.0 if t.mark_pos[0] >= 0 else -1.0
    jy = t.mark_pos[1]
    if t.mark_style == "bindi":
        p.dot((_CX, brow_y + 1.0), 1.9, t.mark_color)
    elif t.mark_style == "scar":
        x0, y0 = _CX + mark_side * (t.eye_half_gap + 2 + 3 * jy), t.eye_y + 7
        p.stroke(np.array([[x0, y0], [x0 + mark_side * 6, y0 + 13]]), mix(t.skin, (160, 90, 90), 0.55), 1.3)
    elif t.mark_style == "tattoo_dot":
        for k in range(3):
            p.dot(
                (_CX + mark_side * (t.eye_half_gap + 5 + 2.4 * k), t.eye_y + 8 + 2 * k + jy),
                1.0,
                t.mark_color,
            )
    elif t.mark_style == "cheek_paint":
        for k in range(2):
            y = t.eye_y + 12 + 4 * k + jy
            x0 = _CX + mark_side * (t.eye_half_gap + 1)
            p.stroke(np.array([[x0, y], [x0 + mark_side * 11, y - 1]]), t.mark_color, 1.8)


def draw_beard(p: Painter, t: IdentityTraits, e: Expression) -> None:
    style = t.beard_style
    if style == "none":
        return
    mw, col = t.mouth_half_width, t.beard_color
    chin = _CY + t.face_bottom
    if style in ("full", "stubble"):
        outline = face_outline(t, 48)
        lower = outline[(outline[:, 1] > t.mouth_y - 14) & (np.arange(48) < 24)]
        cheek, lip = 0.7 * t.face_half_width, t.nose_tip_y + 4
        inner = np.array(
            [
                [_CX - cheek, t.mouth_y - 12],
                [_CX - mw - 2, lip],
                [_CX + mw + 2, lip],
                [_CX + cheek, t.mouth_y - 12],
            ]
        )
        color = mix(t.skin, col, 0.3) if style == "stubble" else col
        p.fill(np.vstack([lower, inner]), color)
    elif style == "chinstrap":
        outline = face_outline(t, 48)
        p.stroke(outline[(outline[:, 1] > t.ear_y) & (np.arange(48) < 24)], col, 3.5, z=0.0)
    if style in ("moustache", "goatee"):
        top = t.nose_tip_y + 3
        mouth_top = mouth_corners(t, e)[0, 1] - t.upper_lip - 0.5
        pts = np.array([[_CX - mw - 2, mouth_top + 3], [_CX - mw * 0.7, top], [_CX + mw * 0.7, top],
                        [_CX + mw + 2, mouth_top + 3], [_CX, mouth_top]])  # fmt: skip
        p.fill(pts, col)
    if style == "goatee":
        y0 = t.mouth_y + t.lower_lip + 2 + 4 * e.mouth_open
        top, bottom = 0.55 * mw, 0.4 * mw
        pts = np.array([[_CX - top, y0], [_CX + top, y0], [_CX + bottom, chin - 1], [_CX - bottom, chin - 1]])
        p.fill(pts, col)


def eye_centers(t: IdentityTraits) -> np.ndarray:
    """Left and right eye centres, canonical ``[2, 2]``."""
    return np.array([[_CX - t.eye_half_gap, t.eye_y], [_CX + t.eye_half_gap, t.eye_y]])


def _eye_outline(center: np.ndarray, tilt: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Eye-local points (x along the eye, y down) turned by ``tilt`` degrees about ``center``."""
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
    return np.stack([center[0] + c * xs - s * ys, center[1] + s * xs + c * ys], axis=1)


def draw_eyes(p: Painter, t: IdentityTraits, e: Expression) -> None:
    hw = t.eye_half_width
    hh = t.eye_half_height * (1.0 - 0.55 * e.squint)
    r = min(t.iris_ratio * t.eye_half_height * 0.95, hw * 0.62)
    band = r + 2.5  # skin lids this thick hide the iris outside the eye opening
    x = _T * hw
    up = -hh * (1.0 - _T**2) ** 0.8
    lo = hh * 0.8 * (1.0 - _T**2) ** 0.9
    lid_color = mix(t.skin, t.eye_shadow, 0.55) if t.eye_shadow is not None else shade(t.skin, 0.97)
    for side, center in zip((-1, 1), eye_centers(t)):
        tilt = -side * t.eye_tilt
        upper, lower = _eye_outline(center, tilt, x, up), _eye_outline(center, tilt, x, lo)
        p.fill(np.vstack([upper, lower[::-1]]), (240, 238, 232))
        gx, gy = center[0] + e.gaze[0] * hw * 0.45, center[1] + e.gaze[1] * hh * 0.3
        p.dot((gx, gy), r, t.iris)
        p.dot((gx, gy), r * 0.45, (15, 12, 12))
        p.dot((gx - r * 0.35, gy - r * 0.35), max(0.5, r * 0.2), (255, 255, 255))
        p.fill(np.vstack([upper, _eye_outline(center, tilt, x[::-1], up[::-1] - band)]), lid_color)
        p.fill(np.vstack([lower, _eye_outline(center, tilt, x[::-1], lo[::-1] + band)]), t.skin)
        p.stroke(upper, (35, 25, 25), t.lid_thickness)
        if t.lashes:
            lashes = [np.array([upper[k], upper[k] + (side * 1.6, -2.4)]) for k in (5, 6, 7)]
            for lash in lashes:
                p.stroke(lash, (25, 20, 20), 0.8)


def draw_brows(p: Painter, t: IdentityTraits, e: Expression) -> None:
    slope = math.tan(math.radians(t.brow_tilt))
    taper = 1.0 - 0.45 * (_T + 1.0) / 2.0
    for side, (cx, cy) in zip((-1, 1), eye_centers(t)):
        y0 = cy - t.brow_lift - 3.0 * e.brow_raise
        x = cx + side * (1.0 + _T * t.brow_half_length)
        y = y0 - t.brow_arch * (1.0 - _T**2) - slope * _T * t.brow_half_length
        half = 0.5 * t.brow_thickness * taper
        top, bottom = np.stack([x, y - half], axis=1), np.stack([x, y + half], axis=1)
        p.fill(np.vstack([top, bottom[::-1]]), t.brow_color)


def nose_tip(t: IdentityTraits) -> np.ndarray:
    return np.array([_CX, t.nose_tip_y])


NOSE_LIFT = 9.0  # how far the nose tip stands out of the head ellipsoid (canonical pixels)


def draw_nose(p: Painter, t: IdentityTraits) -> None:
    def z(points: np.ndarray) -> np.ndarray:
        # the bridge rises from the face towards the tip
        rise = np.clip((points[:, 1] - t.eye_y) / max(t.nose_tip_y - t.eye_y, 1.0), 0.0, 1.0)
        return p.depth(points) + NOSE_LIFT * rise

    nw, ty, style = t.nose_half_width, t.nose_tip_y, t.nose_style
    dark = shade(t.skin, 0.55)
    if style == "shaded":
        tri = np.array([[_CX, t.eye_y + 3], [_CX + nw, ty + 1], [_CX - nw, ty + 1]])
        p.fill(tri, shade(t.skin, 0.86), z=z(tri))
    elif style == "hook":
        pts = np.array(
            [
                [_CX - 1.5, t.eye_y + 5],
                [_CX - nw * 0.45, ty - 3],
                [_CX - nw * 0.3, ty + 1],
                [_CX + nw * 0.6, ty + 0.5],
            ]
        )
        p.stroke(pts, shade(t.skin, 0.6), 1.4, z=z(pts))
    elif style == "button":
        ball = ellipse_points(_CX, ty - 1.5, nw * 0.6, nw * 0.45, n=14)
        p.fill(ball, shade(t.skin, 0.9), z=z(ball))
    else:
        bridge = np.array([[_CX - nw * 0.5, t.eye_y + 5], [_CX - nw * 0.75, ty - 3]])
        p.stroke(bridge, shade(t.skin, 0.8), 1.1, z=z(bridge))
    for side in (-1, 1):
        c = np.array([[_CX + side * nw * 0.5, ty + 1.0]])
        p.dot(c[0], max(0.7, nw * 0.2), dark, z=float(z(c)[0]))


def draw_mouth(p: Painter, t: IdentityTraits, e: Expression) -> None:
    corners = mouth_corners(t, e)
    half = corners[1, 0] - _CX
    lift = t.mouth_y - corners[0, 1]  # how far the corners sit above the lip centre
    x = _CX + _T * half
    line = t.mouth_y + 0.5 * e.smile - lift * _T**2
    gap = 5.5 * e.mouth_open
    bow = 0.35 * t.upper_lip * np.exp(-((_T * half / 3.0) ** 2))
    arch = np.sqrt(1.0 - _T**2)
    upper_top = line - gap * 0.3 - t.upper_lip * arch + bow
    lower_bottom = line + gap * 0.7 + t.lower_lip * arch
    if gap > 0.8:
        inner_top, inner_bottom = line - gap * 0.3, line + gap * 0.7
        p.fill(np.vstack([np.stack([x, inner_top], 1), np.stack([x, inner_bottom], 1)[::-1]]), (60, 20, 25))
        teeth = np.vstack(
            [
                np.stack([x[2:-2], inner_top[2:-2]], 1),
                np.stack([x[2:-2], inner_top[2:-2] + gap * 0.35], 1)[::-1],
            ]
        )
        p.fill(teeth, (235, 232, 220))
    p.fill(
        np.vstack([np.stack([x, upper_top], 1), np.stack([x, line - gap * 0.3], 1)[::-1]]),
        shade(t.lip_color, 0.92),
    )
    p.fill(np.vstack([np.stack([x, line + gap * 0.7], 1), np.stack([x, lower_bottom], 1)[::-1]]), t.lip_color)
    if gap <= 0.8:
        p.stroke(np.stack([x, line], 1), shade(t.lip_color, 0.5), 0.9)


def draw_glasses(p: Painter, t: IdentityTraits) -> None:
    style = t.glasses_style
    if style == "none":
        return

    def z(points: np.ndarray) -> np.ndarray:
        return p.depth(points) + 5.0

    hw, hh = t.eye_half_width + 3.5, t.eye_half_height + 4.5
    col, th = t.glasses_color, t.glasses_thickness
    frames = []
    for side, (cx, cy) in zip((-1, 1), eye_centers(t)):
        if style == "round":
            frame = ellipse_points(cx, cy, hw, hw * 0.85, n=20)
        elif style == "cat_eye":
            frame = ellipse_points(cx, cy, hw + 1, hh, angle=-side * 12, n=20)
            frame[:, 1] -= np.clip((frame[:, 0] - cx) * side, 0, None) * 0.25
        else:
            a = np.linspace(0, 2 * math.pi, 20, endpoint=False)
            c, s = np.cos(a), np.sin(a)
            rounded = np.sign(c) * np.abs(c) ** 0.5, np.sign(s) * np.abs(s) ** 0.5
            frame = np.stack([cx + hw * rounded[0], cy + hh * rounded[1]], 1)
        frames.append(frame)
        if style == "sunglasses":
            p.fill(frame, shade(col, 0.25), z=z(frame))
    for frame in frames:
        p.stroke(frame, col, th, closed=True, z=z(frame))
    left, right = frames
    bridge = np.array([left[np.argmax(left[:, 0])], [_CX, t.eye_y - 2.0], right[np.argmin(right[:, 0])]])
    p.stroke(bridge, col, th, z=z(bridge))
    for frame, side in ((left, -1), (right, 1)):
        outer = frame[np.argmax(frame[:, 0] * side)]
        arm = np.array([outer, [_CX + side * (t.face_half_width + 0.5), t.eye_y - 1]])
        p.stroke(arm, col, th, z=np.array([float(z(outer[None])[0]), 0.0]))


def draw_head(p: Painter, t: IdentityTraits, e: Expression, clothes: tuple[int, int, int]) -> None:
    """The whole head in drawing order (see the module docstring)."""
    draw_clothes(p, t, clothes)
    draw_back_hair(p, t)
    draw_neck_and_ears(p, t)
    draw_face_and_skin(p, t)
    draw_beard(p, t, e)
    draw_eyes(p, t, e)
    draw_brows(p, t, e)
    draw_nose(p, t)
    draw_mouth(p, t, e)
    draw_front_hair(p, t)
    draw_glasses(p, t)
