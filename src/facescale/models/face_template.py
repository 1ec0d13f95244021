"""The ArcFace 112x112 five-point template and the similarity transform that maps landmarks onto it.

The landmarks are, in order: left eye, right eye, nose tip, left mouth corner, right mouth
corner (left/right as seen in the image). They belong with the model input convention
(``preprocess``): the synthetic data renders faces onto this template and deployment aligns
detected faces to it, so both take it from here.
"""

from __future__ import annotations

import numpy as np

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity matrix ``M`` minimising ``sum |M @ [src_i, 1] - dst_i|^2``.

    ``src``, ``dst``: ``[K, 2]`` point sets, K >= 2. Least-squares rotation, uniform scale and
    translation with no reflection (Umeyama's closed form).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two [K, 2] point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better; forbid it
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = (sigma * d).sum() / src_var if src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix
