"""The training augmentations applied to a whole batch on its device (after GPU decoding).

The CPU loader augments each image in a worker with OpenCV (``augment.py``). When images are
decoded on the GPU (NVIDIA DALI), sending them back to the host to augment would undo the point,
so the same per-sample draws (``Augmenter.draw``, made on the host from the same seeds) are
applied here with torch ops on the batch. Each transform follows its OpenCV counterpart:
flip and grayscale are bit-exact (OpenCV's fixed-point BT.601 weights), and colour jitter, blur
and downscale differ by at most one grey level where OpenCV's fixed-point rounding differs. Every
transform rounds back to uint8, as the CPU path does between transforms.

The filters run in float64: the tensors are small, and TF32 (which cuDNN and matmuls may use
for float32 on Ampere and later GPUs) would round away the agreement with OpenCV. Per-batch
host-to-device traffic is a few small index and parameter tensors; resampling matrices are
made once per size and device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from facescale.data.augment import LUMA, SampleAugment, downscaled_size

# OpenCV's RGB -> gray for 8-bit images: BT.601 weights in 15-bit fixed point, rounded (its SIMD
# path; the 14-bit weights of its documentation differ by one level on some pixels).
_GRAY_WEIGHTS = (9798, 19235, 3735)
_GRAY_SHIFT = 15


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Round to nearest (half up, as the CPU path's ``+ 0.5`` then truncate) and clip."""
    return (pixels + 0.5).clamp_(0, 255).floor_().to(torch.uint8)


def gaussian_kernels(sigmas: Sequence[float]) -> torch.Tensor:
    """``[n, k]`` float64 normalised 1-D Gaussian kernels (on the host), each sized as OpenCV sizes
    it for 8-bit images (``round(6 sigma + 1) | 1``) and zero-padded to the largest."""
    sigma = torch.tensor(sigmas, dtype=torch.float64)[:, None]
    half_sizes = torch.tensor([(round(s * 6 + 1) | 1) // 2 for s in sigmas], dtype=torch.float64)[:, None]
    x = torch.arange(-half_sizes.max().item(), half_sizes.max().item() + 1, dtype=torch.float64)[None]
    kernels = torch.exp(-(x**2) / (2 * sigma**2)) * (x.abs() <= half_sizes)
    return kernels / kernels.sum(dim=1, keepdim=True)


def blur_batch(images: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of uint8 ``[n, 3, H, W]`` with one sigma per image (mirrored border)."""
    n, c, h, w = images.shape
    kernels = gaussian_kernels(sigmas).to(images.device)
    radius = (kernels.shape[1] - 1) // 2
    weights = kernels.repeat_interleave(c, dim=0)[:, None]  # [n*c, 1, k]
    # One grouped convolution for the whole batch: every image-channel is its own group.
    x = images.double().reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), weights[:, :, None, :], groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), weights[:, :, :, None], groups=n * c)
    return _to_uint8(x.reshape(n, c, h, w))


def area_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """``[out, in]`` weights of OpenCV's INTER_AREA shrink along one axis.

    Output pixel ``j`` averages the source interval ``[j s, (j + 1) s)``, ``s = in / out``, each
    source pixel weighted by how much of it the interval covers (torch's "area" mode rounds the
    interval to whole pixels instead, which differs by tens of grey levels at edges).
    """
    scale = size_in / size_out
    starts = torch.arange(size_out, dtype=torch.float64) * scale
    ends = starts + scale
    left = torch.arange(size_in, dtype=torch.float64)
    overlap = torch.minimum(left[None] + 1, ends[:, None]) - torch.maximum(left[None], starts[:, None])
    return overlap.clamp_(min=0) / scale


def linear_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """``[out, in]`` weights of OpenCV's INTER_LINEAR along one axis (pixel centres aligned,
    the edge pixel repeated beyond the border)."""
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out) - 0.5
    centres = centres.clamp(0, size_in - 1)
    left = centres.floor().long().clamp(max=size_in - 1)
    right = (left + 1).clamp(max=size_in - 1)
    frac = centres - left
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights[rows, left] += 1 - frac
    weights[rows, right] += frac
    return weights


@functools.lru_cache(maxsize=512)
def _downscale_matrices(
    h: int, w: int, small_h: int, small_w: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shrink (area) and grow (linear) matrices for both axes, float64 on ``device``, made once."""
    matrices = (
        area_matrix(h, small_h),
        area_matrix(w, small_w),
        linear_matrix(small_h, h),
        linear_matrix(small_w, w),
    )
    return tuple(m.to(device) for m in matrices)  # type: ignore[return-value]


def downscale_batch(images: torch.Tensor, small: tuple[int, int]) -> torch.Tensor:
    """Shrink uint8 ``[n, 3, H, W]`` to ``small`` (area average) and back (bilinear)."""
    h, w = images.shape[-2:]
    down_h, down_w, up_h, up_w = _downscale_matrices(h, w, *small, images.device)
    shrunk = _to_uint8(down_h @ images.double() @ down_w.T)
    return _to_uint8(up_h @ shrunk.double() @ up_w.T)


def color_jitter_batch(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Saturation, contrast and brightness factors ``[n, 3]`` applied to uint8 ``[n, 3, H, W]``
    (the luma in float32, the rest in float64, as the CPU path computes it)."""
    pixels = images.float()
    luma = torch.from_numpy(LUMA).to(images.device).view(1, 3, 1, 1)
    gray = (pixels * luma).sum(dim=1, keepdim=True).double()
    saturation, contrast, brightness = (factors[:, i].double().view(-1, 1, 1, 1) for i in range(3))
    mixed = gray + (pixels.double() - gray) * saturation
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    return _to_uint8(((mixed - mean) * contrast + mean) * brightness)


def grayscale_batch(images: torch.Tensor) -> torch.Tensor:
    """OpenCV's 8-bit RGB -> gray, bit for bit, repeated over the three channels."""
    r, g, b = images.int().unbind(dim=1)
    wr, wg, wb = _GRAY_WEIGHTS
    gray = (r * wr + g * wg + b * wb + (1 << (_GRAY_SHIFT - 1))) >> _GRAY_SHIFT
    return gray.to(torch.uint8)[:, None].expand_as(images).contiguous()


def augment_batch(images: torch.Tensor, draws: Sequence[SampleAugment]) -> torch.Tensor:
    """Apply each sample's draw to uint8 RGB ``[B, 3, H, W]`` in the CPU path's order:
    downscale, blur, colour jitter, grayscale, flip."""
    if len(draws) != images.shape[0]:
        raise ValueError(f"{len(draws)} augmentation draws for a batch of {images.shape[0]} images")
    out = images.clone()
    device = images.device

    def rows(indices: list[int]) -> torch.Tensor:
        return torch.tensor(indices, dtype=torch.long).to(device, non_blocking=True)

    # Samples shrunk to the same size share one pair of matrix products.
    h, w = images.shape[-2:]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, d in enumerate(draws):
        if d.downscale is not None:
            by_size.setdefault(downscaled_size(h, w, d.downscale), []).append(i)
    for small, indices in by_size.items():
        idx = rows(indices)
        out[idx] = downscale_batch(out[idx], small)
    blurred = [i for i, d in enumerate(draws) if d.blur_sigma is not None]
    if blurred:
        idx = rows(blurred)
        out[idx] = blur_batch(out[idx], [draws[i].blur_sigma for i in blurred])  # type: ignore[misc]
    jittered = [i for i, d in enumerate(draws) if d.jitter is not None]
    if jittered:
        factors = torch.tensor([draws[i].jitter for i in jittered], dtype=torch.float64)
        idx = rows(jittered)
        out[idx] = color_jitter_batch(out[idx], factors.to(device, non_blocking=True))
    grays = [i for i, d in enumerate(draws) if d.grayscale]
    if grays:
        idx = rows(grays)
        out[idx] = grayscale_batch(out[idx])
    flip = torch.tensor([d.hflip for d in draws]).to(device, non_blocking=True).view(-1, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)
