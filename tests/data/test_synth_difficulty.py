"""SynthFace must not be trivial: raw pixels and an untrained backbone fail on the held-out pairs.

The held-out verification pairs are written by ``generate_synthface`` exactly as for a real
run. Both naive verifiers must stay at or below 0.75 best-threshold accuracy; a control with
the nuisances switched off shows the measurement itself can tell easy from hard.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from facescale.data.synth.generate import generate_synthface
from facescale.data.verification_bin import load_verification_bin
from facescale.eval.verification import evaluate_verification
from facescale.models import build_backbone
from facescale.models.preprocess import to_model_input

PAIRS, VAL_IDS = 200, 100
NAIVE_LIMIT = 0.75


def _held_out_pairs(out: Path, nuisance: float) -> tuple[np.ndarray, np.ndarray]:
    generate_synthface(out, 1, 1, VAL_IDS, PAIRS, seed=0, workers=1, nuisance=nuisance, hard_pairs=False)
    pairs = load_verification_bin(out / "val.bin")
    return pairs.decode(), pairs.issame


def _raw_pixels(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) - 127.5) / 127.5


def _best_threshold_accuracy_naive(images: np.ndarray, issame: np.ndarray) -> float:
    """Cosine similarity of raw pixels, best single threshold: the test's own reference."""
    x = _raw_pixels(images)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = (x[0::2] * x[1::2]).sum(axis=1)
    return max(float(((sims >= t) == issame).mean()) for t in np.concatenate([sims, [np.inf]]))


def _demo_nuisance() -> float:
    """The strength `make demo` renders its data at (scripts/demo.py)."""
    spec = importlib.util.spec_from_file_location("demo", Path(__file__).parents[2] / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return float(demo.NUISANCE)


# The default strength, and the one the demo trains and evaluates on.
@pytest.fixture(scope="module", params=[1.0, _demo_nuisance()], ids=lambda n: f"nuisance{n}")
def held_out(tmp_path_factory, request) -> tuple[np.ndarray, np.ndarray]:
    return _held_out_pairs(tmp_path_factory.mktemp("difficulty"), nuisance=request.param)


def test_raw_pixel_cosine_cannot_verify(held_out):
    images, issame = held_out
    protocol = evaluate_verification(_raw_pixels, images, issame, flip=False).accuracy_highest
    naive = _best_threshold_accuracy_naive(images, issame)
    assert protocol <= NAIVE_LIMIT and naive <= NAIVE_LIMIT, (protocol, naive)


def test_the_measurement_sees_an_easy_set_as_easy(tmp_path):
    images, issame = _held_out_pairs(tmp_path, nuisance=0.0)
    # Without nuisances two images of one identity differ only in background and clothes.
    assert _best_threshold_accuracy_naive(images, issame) > 0.8


@pytest.mark.parametrize("backbone", ["mbf", "mbf_tiny"])  # mbf_tiny: the demo's backbone
def test_random_init_backbone_cannot_verify(held_out, backbone):
    images, issame = held_out
    torch.manual_seed(0)
    model = build_backbone(backbone).eval()

    def embed(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(to_model_input(batch)).numpy()

    result = evaluate_verification(embed, images, issame, flip=False, batch_size=100)
    assert result.accuracy_highest <= NAIVE_LIMIT, result.accuracy_highest
