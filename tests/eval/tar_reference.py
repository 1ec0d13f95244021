"""TAR at FAR as insightface eval_ijbc.py reads it (on sklearn's ROC), and the conservative rule by hand."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve


def eval_ijbc_tar(scores: np.ndarray, genuine: np.ndarray, far: float) -> float:
    """eval_ijbc.py: sklearn ROC, flipped, then the first point of min((|fpr - far|, index))."""
    fpr, tpr, _ = roc_curve(genuine, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    _, index = min(zip(np.abs(fpr - far), range(len(fpr))))
    return float(tpr[index])


def naive_conservative_tar(scores: np.ndarray, genuine: np.ndarray, far: float) -> float:
    """The best TAR over every threshold whose FAR is at most ``far``."""
    ok = [np.mean(scores[genuine] >= t) for t in np.unique(scores) if np.mean(scores[~genuine] >= t) <= far]
    return float(max(ok, default=0.0))


def measurable(genuine: np.ndarray, far: float) -> bool:
    return far * int((~genuine).sum()) >= 1.0
