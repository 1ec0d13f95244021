"""The batched torch augmentations (used after GPU decoding) against the OpenCV ones, per transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datatest_utils import face_jpeg

from facescale.config import AugmentConfig
from facescale.data.augment import Augmenter, SampleAugment
from facescale.data.device_augment import area_matrix, augment_batch, linear_matrix
from facescale.data.image_codec import decode_image


def _faces(n: int = 6) -> np.ndarray:
    """Decoded JPEG faces with smooth and sharp regions (uint8 [n, 112, 112, 3])."""
    rng = np.random.default_rng(0)
    blocky = np.stack([decode_image(face_jpeg(i), "t") for i in range(n)]).astype(np.float32)
    noise = rng.normal(0, 20, size=blocky.shape)
    return np.clip(blocky + noise, 0, 255).astype(np.uint8)


def _on_device(draws: list[SampleAugment], faces: np.ndarray) -> np.ndarray:
    batch = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()
    return augment_batch(batch, draws).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    ("draw", "max_levels"),
    [
        (SampleAugment(hflip=True), 0),
        (SampleAugment(grayscale=True), 0),  # OpenCV's fixed-point weights, bit for bit
        (SampleAugment(jitter=(1.2, 0.8, 1.1)), 1),  # float rounding at .5
        (SampleAugment(jitter=(0.75, 1.25, 0.9)), 1),
        (SampleAugment(blur_sigma=0.5), 1),
        (SampleAugment(blur_sigma=1.49), 1),
        (SampleAugment(downscale=0.4), 1),
        (SampleAugment(downscale=0.77), 1),
        (SampleAugment(0.6, 1.1, (0.8, 1.2, 0.9), True, True), 2),
    ],
)
def test_each_transform_matches_opencv(draw: SampleAugment, max_levels: int) -> None:
    faces = _faces()
    expected = np.stack([Augmenter.apply(face, draw) for face in faces]).astype(int)
    got = _on_device([draw] * len(faces), faces).astype(int)
    assert np.abs(got - expected).max() <= max_levels
    # OpenCV interpolates in fixed point: off by one level only where its rounding differs.
    assert np.mean(got != expected) < 0.25


def test_mixed_draws_per_sample_match_the_cpu_augmenter() -> None:
    faces = _faces(16)
    augmenter = Augmenter(AugmentConfig(hflip=0.5, downscale=0.5, blur=0.5, color_jitter=0.5, grayscale=0.5))
    rng = np.random.default_rng(4)
    draws = [augmenter.draw(rng) for _ in faces]
    assert len({(d.downscale is None, d.blur_sigma is None, d.hflip) for d in draws}) > 2  # a real mix
    expected = np.stack([Augmenter.apply(f, d) for f, d in zip(faces, draws, strict=True)]).astype(int)
    assert np.abs(_on_device(draws, faces).astype(int) - expected).max() <= 2
    with pytest.raises(ValueError, match="3 augmentation draws for a batch of 16"):
        augment_batch(torch.zeros(16, 3, 112, 112, dtype=torch.uint8), draws[:3])


def test_draws_consume_the_generator_in_the_documented_order() -> None:
    """Five coin flips, then downscale, blur and three jitter factors for those that fire: the order
    the augmentation has always used, so a seed gives the same batches in every version."""
    cfg = AugmentConfig(hflip=0.5, downscale=0.5, blur=0.5, color_jitter=0.5, grayscale=0.5)
    augmenter = Augmenter(cfg)
    ours, spec = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(50):
        coins = spec.random(5) < (cfg.downscale, cfg.blur, cfg.color_jitter, cfg.grayscale, cfg.hflip)
        expected = SampleAugment(
            downscale=spec.uniform(0.4, 0.9) if coins[0] else None,
            blur_sigma=spec.uniform(0.5, 1.5) if coins[1] else None,
            jitter=tuple(spec.uniform(0.75, 1.25, size=3).tolist()) if coins[2] else None,
            grayscale=bool(coins[3]),
            hflip=bool(coins[4]),
        )
        assert augmenter.draw(ours) == expected
    assert ours.random() == spec.random()
    face = _faces(1)[0]
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(augmenter(face, a), Augmenter.apply(face, augmenter.draw(b)))


def test_resampling_matrices_are_averages() -> None:
    for size_in, size_out in [(112, 45), (112, 101), (50, 112), (7, 7)]:
        resample = area_matrix if size_out <= size_in else linear_matrix
        weights = resample(size_in, size_out)
        assert weights.shape == (size_out, size_in)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(size_out, dtype=torch.float64))
        assert (weights >= 0).all()
    assert torch.equal(area_matrix(7, 7), torch.eye(7, dtype=torch.float64))
    assert torch.equal(linear_matrix(7, 7), torch.eye(7, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_as_on_the_cpu() -> None:
    faces = _faces(16)
    augmenter = Augmenter(AugmentConfig(hflip=0.5, downscale=0.5, blur=0.5, color_jitter=0.5, grayscale=0.5))
    rng = np.random.default_rng(8)
    draws = [augmenter.draw(rng) for _ in faces]
    batch = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()
    on_gpu = augment_batch(batch.cuda(), draws).cpu()
    assert (on_gpu.int() - augment_batch(batch, draws).int()).abs().max() <= 1
