"""Arithmetic on embedding arrays that evaluation, deployment and the benchmarks all need."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12, dtype: type | None = None) -> np.ndarray:
    """Rows of ``x`` ``[n, D]`` scaled to unit L2 norm (zero rows stay zero), cast to ``dtype`` first."""
    x = np.asarray(x, dtype=dtype)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)
