"""SynthFace identities and the renderer: determinism, shapes, landmarks, nuisances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facescale.data.synth.identity import sample_identity
from facescale.data.synth.render import render_face, render_frontal
from facescale.models.face_template import ARCFACE_TEMPLATE, estimate_similarity


def _traits_equal(a, b) -> bool:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


def test_identity_is_a_pure_function_of_seed_and_number():
    assert _traits_equal(sample_identity(3, 17), sample_identity(3, 17))
    assert not _traits_equal(sample_identity(3, 17), sample_identity(3, 18))
    assert not _traits_equal(sample_identity(3, 17), sample_identity(4, 17))


def test_identities_spread_over_the_categorical_traits():
    people = [sample_identity(0, i) for i in range(300)]
    for name in ("hair_style", "nose_style", "glasses_style", "beard_style"):
        values = {getattr(p, name) for p in people}
        assert len(values) >= 3, (name, values)
    skins = np.array([p.skin for p in people], dtype=float)
    assert skins.std(axis=0).min() > 20  # light to dark, not one tone


@pytest.mark.parametrize("canvas", [None, 250])
def test_render_shapes_and_types(canvas):
    image, landmarks = render_face(sample_identity(0, 1), np.random.default_rng(0), canvas=canvas)
    side = canvas or 112
    assert image.shape == (side, side, 3) and image.dtype == np.uint8
    assert landmarks.shape == (5, 2) and landmarks.dtype == np.float32
    assert np.all((landmarks >= 0) & (landmarks < side))


def test_render_is_deterministic_in_the_rng():
    traits = sample_identity(0, 2)
    a = render_face(traits, np.random.default_rng(5))
    b = render_face(traits, np.random.default_rng(5))
    c = render_face(traits, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_clean_render_puts_landmarks_on_the_arcface_template():
    errors = []
    for i in range(20):
        _, landmarks = render_face(sample_identity(0, i), np.random.default_rng(i), nuisance=0.0)
        errors.append(np.linalg.norm(landmarks - ARCFACE_TEMPLATE, axis=1).mean())
    # residual of a least-squares similarity fit of each identity's own face geometry
    assert np.mean(errors) < 3.0, errors


def test_nuisances_move_landmarks_like_loose_training_crops():
    spread = []
    for i in range(40):
        _, landmarks = render_face(sample_identity(0, i % 5), np.random.default_rng(100 + i))
        spread.append(landmarks)
    spread = np.stack(spread)
    error = np.linalg.norm(spread - ARCFACE_TEMPLATE, axis=2).mean()
    assert 2.0 < error < 12.0, error  # jittered, but still roughly aligned


def test_eye_landmarks_sit_on_the_dark_pupils():
    for i in range(10):
        traits = sample_identity(1, i)
        image, landmarks = render_face(traits, np.random.default_rng(i), nuisance=0.0)
        grey = image.astype(float).mean(axis=2)
        for x, y in landmarks[:2]:
            col, row = round(float(x)), round(float(y))
            darkest = grey[row - 1 : row + 2, col - 1 : col + 2].min()  # a highlight may sit on the pupil
            assert darkest < 50, (i, x, y, darkest)


def test_loose_crop_landmarks_are_the_template_moved_by_a_similarity():
    for i in range(5):
        _, landmarks = render_face(sample_identity(0, i), np.random.default_rng(i), canvas=250, nuisance=0.0)
        m = estimate_similarity(ARCFACE_TEMPLATE, landmarks)
        fitted = ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2]
        scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
        residual = np.linalg.norm(fitted - landmarks, axis=1).mean() / scale
        assert residual < 3.0, (i, residual)  # in 112-crop pixels, as for the aligned crop


def test_loose_crop_places_faces_at_varied_positions_and_sizes():
    centers, eye_gaps = [], []
    for i in range(12):
        _, landmarks = render_face(sample_identity(0, 3), np.random.default_rng(i), canvas=250)
        centers.append(landmarks.mean(axis=0))
        eye_gaps.append(np.linalg.norm(landmarks[1] - landmarks[0]))
    assert np.ptp(np.array(centers), axis=0).min() > 40
    assert max(eye_gaps) / min(eye_gaps) > 1.4


def test_nuisance_strength_controls_the_variation():
    traits = sample_identity(0, 4)

    def spread(strength: float) -> float:
        images = np.stack(
            [render_face(traits, np.random.default_rng(k), nuisance=strength)[0] for k in range(8)]
        ).astype(float)
        return float(images.std(axis=0).mean())

    assert spread(0.0) < spread(1.0) < spread(2.0)


def test_frontal_portrait_and_bad_sizes():
    portrait = render_frontal(sample_identity(0, 0))
    assert portrait.shape == (112, 112, 3) and portrait.std() > 10
    with pytest.raises(ValueError, match="size"):
        render_face(sample_identity(0, 0), np.random.default_rng(0), size=0)
