"""SynthFace identities: the latent traits that make one synthetic person recognisable.

An identity is a bundle of traits drawn deterministically from ``(seed, identity)``: head
and jaw shape, skin tone, eyes, brows, nose, mouth, ears, hair, facial hair, glasses and
skin marks. Coordinates are in the *canonical frame*: a 112x112 crop whose mean landmarks sit
on the ArcFace template, head centre near ``(56, 60)``; the renderer moves this frame around.

Strong, large-scale traits (hair style and colour, skin tone, face shape, glasses, beard) are
categorical or widely spread so a small network can learn them in minutes; finer traits (eye
colour, moles, brow shape) make identities with the same coarse look still distinct.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]

# Canonical head centre; the ArcFace template's eyes are at y ~ 51.6, mouth at ~ 92.3.
HEAD_CX = 56.0
HEAD_CY = 60.0
# How far the mouth corners rise per unit of ``mouth_curve`` on the neutral face.
RESTING_CORNER_LIFT = 0.6

HAIR_STYLES = ("bald", "short", "long", "bangs", "side_part", "curly", "bun", "spiky", "bob")
NOSE_STYLES = ("nostrils", "shaded", "hook", "button")
GLASSES_STYLES = ("none", "round", "rect", "sunglasses", "cat_eye")
BEARD_STYLES = ("none", "stubble", "moustache", "goatee", "full", "chinstrap")
MARK_STYLES = ("none", "bindi", "scar", "tattoo_dot", "cheek_paint")

# Skin tones from light to dark (RGB); an identity interpolates between neighbours.
_SKIN_ANCHORS = np.array(
    [
        [255, 224, 196],
        [241, 194, 160],
        [224, 172, 130],
        [198, 140, 100],
        [161, 110, 75],
        [120, 78, 52],
        [85, 55, 38],
    ],
    dtype=np.float64,
)
_HAIR_COLORS = np.array(
    [
        [20, 18, 18],  # black
        [55, 35, 25],  # dark brown
        [105, 70, 40],  # brown
        [150, 70, 35],  # auburn
        [215, 180, 110],  # blonde
        [165, 160, 155],  # grey
        [235, 232, 225],  # white
        [190, 75, 30],  # ginger
        [40, 70, 170],  # dyed blue
        [200, 60, 140],  # dyed pink
        [60, 150, 80],  # dyed green
        [120, 50, 160],  # dyed purple
    ],
    dtype=np.float64,
)
_HAIR_COLOR_P = np.array([0.2, 0.16, 0.14, 0.08, 0.1, 0.07, 0.04, 0.06, 0.04, 0.04, 0.03, 0.04])
_IRIS_COLORS = np.array(
    [[70, 40, 20], [110, 70, 35], [60, 110, 170], [70, 130, 80], [120, 120, 110], [140, 110, 50]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class IdentityTraits:
    """Everything that stays fixed across the images of one synthetic identity.

    Lengths are canonical-frame pixels (112x112 crop); angles are degrees; colours are RGB.
    """

    identity: int
    # head outline: half width, height above / below the centre, jaw squareness, chin taper
    face_half_width: float
    face_top: float
    face_bottom: float
    jaw_square: float  # superellipse exponent of the lower face: 2 = round, 4 = square
    chin_taper: float  # 0 = broad chin, 0.5 = pointed chin
    neck_half_width: float
    skin: Color
    blush: float  # 0..1 strength of rosy cheeks
    # eyes
    eye_y: float
    eye_half_gap: float  # half the distance between the eye centres
    eye_half_width: float
    eye_half_height: float
    eye_tilt: float
    iris_ratio: float  # iris radius over eye half height
    iris: Color
    lid_thickness: float
    lashes: bool
    eye_shadow: Color | None
    # brows
    brow_lift: float  # distance above the eye centre
    brow_thickness: float
    brow_half_length: float
    brow_arch: float
    brow_tilt: float
    brow_color: Color
    # nose
    nose_style: str
    nose_tip_y: float
    nose_half_width: float
    # mouth
    mouth_y: float
    mouth_half_width: float
    upper_lip: float
    lower_lip: float
    mouth_curve: float  # positive: corners up (resting smile)
    lip_color: Color
    # ears
    ear_half_height: float
    ear_out: float
    ear_y: float
    earring: Color | None
    # hair
    hair_style: str
    hair_color: Color
    hairline: float  # canonical y of the hairline at the centre
    hair_volume: float
    hair_part: float  # -1 .. 1, where a parting or a side sweep falls
    # facial hair, glasses, marks
    beard_style: str
    beard_color: Color
    glasses_style: str
    glasses_color: Color
    glasses_thickness: float
    moles: np.ndarray  # [K, 3]: x, y, radius in the canonical frame
    freckles: np.ndarray  # [K, 2]: x, y (empty when none)
    forehead_lines: int
    mark_style: str
    mark_color: Color
    mark_pos: tuple[float, float]

    def neutral_landmarks(self) -> np.ndarray:
        """The 5 landmarks of the frontal, neutral face in the canonical frame, float64 ``[5, 2]``."""
        cx = HEAD_CX
        mouth_corner_y = self.mouth_y - RESTING_CORNER_LIFT * self.mouth_curve
        return np.array(
            [
                [cx - self.eye_half_gap, self.eye_y],
                [cx + self.eye_half_gap, self.eye_y],
                [cx, self.nose_tip_y],
                [cx - self.mouth_half_width, mouth_corner_y],
                [cx + self.mouth_half_width, mouth_corner_y],
            ]
        )


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    """The generator behind one identity's traits; independent of every image generator."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(identity), 0x1D]))


def _color(values: np.ndarray, rng: np.random.Generator, jitter: float) -> Color:
    c = np.clip(values + rng.normal(0.0, jitter, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(round(x * (1 - t) + y * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _choice(rng: np.random.Generator, options: tuple[str, ...], p: list[float]) -> str:
    return options[int(rng.choice(len(options), p=np.asarray(p) / np.sum(p)))]


def sample_identity(seed: int, identity: int) -> IdentityTraits:
    """Draw the traits of identity number ``identity`` for the dataset seed ``seed``.

    Pure function of its arguments: the same pair always gives the same person, in any
    process and in any order.
    """
    rng = identity_rng(seed, identity)
    u = rng.uniform

    tone = u(0, len(_SKIN_ANCHORS) - 1)
    lo = int(tone)
    skin_base = _SKIN_ANCHORS[lo] * (1 - (tone - lo)) + _SKIN_ANCHORS[min(lo + 1, 6)] * (tone - lo)
    skin = _color(skin_base, rng, 8.0)

    hair_idx = int(rng.choice(len(_HAIR_COLORS), p=_HAIR_COLOR_P))
    hair_color = _color(_HAIR_COLORS[hair_idx], rng, 10.0)
    hair_style = _choice(rng, HAIR_STYLES, [0.08, 0.16, 0.15, 0.11, 0.12, 0.1, 0.08, 0.08, 0.12])

    male_like = u() < 0.5  # only shifts some probabilities: beards, lipstick, long hair
    beard_style = _choice(rng, BEARD_STYLES, [0.45, 0.12, 0.12, 0.1, 0.13, 0.08]) if male_like else "none"
    glasses_style = _choice(rng, GLASSES_STYLES, [0.62, 0.11, 0.12, 0.06, 0.09])
    brow_color = (
        _mix(hair_color, (30, 25, 20), 0.35)
        if hair_idx < 8
        else _color(np.array([50.0, 40.0, 30.0]), rng, 10.0)
    )
    lip_base = np.array(skin, dtype=np.float64) * np.array([0.85, 0.55, 0.55]) + np.array([30.0, 0, 0])
    if not male_like and u() < 0.45:  # lipstick
        lip_base = np.array([[180, 20, 40], [200, 60, 90], [120, 20, 40], [220, 90, 80]][rng.integers(4)])
    lip_color = _color(lip_base, rng, 8.0)

    face_half_width = u(33.0, 43.0)
    face_bottom = u(44.0, 55.0)
    eye_y = u(47.0, 56.0)
    eye_half_gap = u(14.5, 20.5)

    num_moles = int(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))
    mole_x = HEAD_CX + u(-0.75, 0.75, num_moles) * face_half_width
    mole_y = u(40.0, 100.0, num_moles)
    moles = np.stack([mole_x, mole_y, u(0.9, 2.2, num_moles)], axis=1)
    if u() < 0.18:
        n = int(rng.integers(12, 30))
        freckles = np.stack([HEAD_CX + rng.normal(0, 13.0, n), rng.normal(68.0, 6.0, n)], axis=1)
    else:
        freckles = np.zeros((0, 2))

    shadow_choices = [(110, 70, 150), (60, 110, 160), (150, 90, 60), (40, 40, 40)]
    eye_shadow = shadow_choices[int(rng.integers(4))] if (not male_like and u() < 0.3) else None

    return IdentityTraits(
        identity=int(identity),
        face_half_width=face_half_width,
        face_top=u(50.0, 60.0),
        face_bottom=face_bottom,
        jaw_square=u(2.0, 4.5),
        chin_taper=u(0.0, 0.5),
        neck_half_width=u(0.45, 0.7) * face_half_width,
        skin=skin,
        blush=float(u(0.0, 1.0) ** 2),
        eye_y=eye_y,
        eye_half_gap=eye_half_gap,
        eye_half_width=u(5.5, 9.0),
        eye_half_height=u(2.6, 4.6),
        eye_tilt=u(-9.0, 9.0),
        iris_ratio=u(0.75, 1.05),
        iris=_color(_IRIS_COLORS[rng.integers(len(_IRIS_COLORS))], rng, 10.0),
        lid_thickness=u(0.8, 2.2),
        lashes=bool(u() < 0.3),
        eye_shadow=eye_shadow,
        brow_lift=u(6.5, 12.0),
        brow_thickness=u(1.2, 4.2),
        brow_half_length=u(7.0, 11.5),
        brow_arch=u(-1.5, 4.5),
        brow_tilt=u(-14.0, 14.0),
        brow_color=brow_color,
        nose_style=_choice(rng, NOSE_STYLES, [0.3, 0.3, 0.2, 0.2]),
        nose_tip_y=u(67.0, 76.0),
        nose_half_width=u(4.0, 9.0),
        mouth_y=u(88.0, 97.0),
        mouth_half_width=u(10.0, 17.5),
        upper_lip=u(1.2, 3.8),
        lower_lip=u(1.8, 5.0),
        mouth_curve=u(-2.0, 3.0),
        lip_color=lip_color,
        ear_half_height=u(8.0, 13.5),
        ear_out=u(0.0, 6.5),
        ear_y=u(58.0, 70.0),
        earring=_color(np.array([230.0, 200.0, 60.0]), rng, 30.0) if u() < 0.15 else None,
        hair_style=hair_style,
        hair_color=hair_color,
        hairline=u(12.0, 28.0),
        hair_volume=u(0.0, 1.0),
        hair_part=u(-1.0, 1.0),
        beard_style=beard_style,
        beard_color=_mix(hair_color, (25, 20, 18), 0.2),
        glasses_style=glasses_style,
        glasses_color=_color(
            np.array(
                [[20, 20, 20], [120, 70, 30], [180, 30, 40], [200, 190, 170], [40, 60, 160]][rng.integers(5)],
                dtype=np.float64,
            ),
            rng,
            12.0,
        ),
        glasses_thickness=u(1.0, 2.8),
        moles=moles,
        freckles=freckles,
        forehead_lines=int(rng.choice(4, p=[0.6, 0.15, 0.15, 0.1])),
        mark_style=_choice(rng, MARK_STYLES, [0.8, 0.05, 0.06, 0.04, 0.05]),
        mark_color=_color(
            np.array([[200, 30, 40], [40, 40, 120], [230, 230, 230]][rng.integers(3)], dtype=np.float64),
            rng,
            15.0,
        ),
        mark_pos=(float(u(-1.0, 1.0)), float(u(-1.0, 1.0))),
    )
