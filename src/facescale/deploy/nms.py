"""Greedy non-maximum suppression over axis-aligned boxes (numpy; no torchvision)."""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes kept, best score first.

    ``boxes``: ``[K, 4]`` (x1, y1, x2, y2); ``scores``: ``[K]``. A box is dropped when its overlap
    with an already kept box exceeds ``threshold``; overlap is intersection over union
    (``mode="union"``) or intersection over the smaller area (``mode="min"``, which also removes a
    small box lying inside a big one).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        if mode == "union":
            denom = areas[best] + areas[rest] - inter
        else:
            denom = np.minimum(areas[best], areas[rest])
        overlap = np.where(denom > 0, inter / np.maximum(denom, 1e-12), 0.0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)
