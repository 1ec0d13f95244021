"""The LFW-style verification protocol (lfw, cfp_fp, agedb_30, ... bins), as insightface computes it.

1. Embedding of each image: ``L2-normalise(f(x) + f(flip(x)))`` (``flip=False``: ``f(x)`` only),
   where ``flip`` mirrors left-right and ``f`` is the raw model output.
2. Distance of pair i (images 2i, 2i+1): squared L2 distance of the two embeddings, in [0, 4].
3. 10 folds in order, no shuffle (sklearn ``KFold(10, shuffle=False)``: the first ``N % 10``
   folds hold one pair more). For each fold, the threshold in ``arange(0, 4, 0.01)`` with the
   best accuracy on the other 9 folds (the first one on a tie) predicts "same" when
   ``distance < threshold`` on this fold. Accuracy = mean +- std (population std) over folds.
4. XNorm = mean L2 norm of every raw embedding the model produced (originals and flips counted
   separately, as insightface's log does, so the figures compare).

Also reported: the best single threshold on the whole set and its accuracy (Accuracy-Highest),
and from the ROC of ``-distance``: TAR at FAR = 1e-3, ROC AUC and EER.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from facescale.eval.metrics import RocCurve, accuracy_per_threshold, roc_curve
from facescale.models.embeddings import l2_normalize

NUM_FOLDS = 10
THRESHOLDS = np.arange(0, 4, 0.01)

EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class VerificationResult:
    """The protocol's figures for one verification set (accuracies are fractions in [0, 1])."""

    accuracy_mean: float
    accuracy_std: float
    accuracy_highest: float  # best single-threshold accuracy over the whole set
    best_threshold: float  # the squared-distance threshold that gives accuracy_highest
    xnorm: float
    # TAR at FAR 1e-3 by the papers' rule (the ROC point whose FAR is nearest 1e-3, as
    # insightface's eval_ijbc.py), and by the conservative one (FAR <= 1e-3); None when the set
    # has fewer than 1,000 impostor pairs (1e-3 cannot be measured)
    tar_at_far_1e3: float | None
    roc_auc: float
    eer: float
    flip: bool = True
    num_pairs: int = 0
    fold_accuracies: list[float] = field(default_factory=list)
    fold_thresholds: list[float] = field(default_factory=list)
    tar_at_far_1e3_conservative: float | None = None
    num_impostor: int = 0
    curve: RocCurve | None = field(default=None, repr=False, compare=False)  # for the ROC plot

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(replace(self, curve=None)).items() if k != "curve"}


def fold_bounds(num_pairs: int, num_folds: int = NUM_FOLDS) -> list[tuple[int, int]]:
    """``[start, end)`` of each contiguous fold, sized like sklearn's ``KFold(shuffle=False)``."""
    if num_pairs < num_folds:
        raise ValueError(f"{num_pairs} pairs cannot be split into {num_folds} folds")
    sizes = np.full(num_folds, num_pairs // num_folds)
    sizes[: num_pairs % num_folds] += 1
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e)) for s, e in zip(sizes, ends)]


def extract_embeddings(
    embed: EmbedFn, images: np.ndarray, batch_size: int = 128, progress: Callable | None = None
) -> np.ndarray:
    """Raw embeddings ``[n, D]`` float32 of uint8 ``images`` ``[n, H, W, 3]``, ``batch_size`` at a time.

    ``progress``, when given, is called with the number of images done after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size])
        out = np.asarray(embed(batch), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ValueError(f"embed returned shape {out.shape} for a batch of {len(batch)} images")
        chunks.append(out)
        if progress is not None:
            progress(len(batch))
    return np.concatenate(chunks)


def flip_images(images: np.ndarray) -> np.ndarray:
    """Left-right mirror of ``[n, H, W, 3]`` images (a contiguous copy)."""
    return np.ascontiguousarray(images[:, :, ::-1])


def protocol_embeddings(
    embed: EmbedFn,
    images: np.ndarray,
    flip: bool = True,
    batch_size: int = 128,
    progress: Callable | None = None,
) -> tuple[np.ndarray, float]:
    """``(unit embeddings [n, D] float32, XNorm)``: fused with the mirror image when ``flip``."""
    raw = extract_embeddings(embed, images, batch_size, progress)
    norms = [np.linalg.norm(raw.astype(np.float64), axis=1)]
    if flip:
        raw_flip = extract_embeddings(embed, flip_images(images), batch_size, progress)
        norms.append(np.linalg.norm(raw_flip.astype(np.float64), axis=1))
        raw = raw + raw_flip
    return l2_normalize(raw).astype(np.float32), float(np.concatenate(norms).mean())


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 distance of pairs (2i, 2i+1) of ``embeddings`` ``[2N, D]`` -> ``[N]`` float64."""
    if len(embeddings) % 2:
        raise ValueError(f"an odd number of embeddings ({len(embeddings)}) cannot form pairs")
    e = embeddings.astype(np.float64)
    return np.sum((e[0::2] - e[1::2]) ** 2, axis=1)


def verify_distances(
    distances: np.ndarray, issame: np.ndarray, xnorm: float = float("nan"), flip: bool = True
) -> VerificationResult:
    """The protocol's figures from pair ``distances`` ``[N]`` (squared L2) and ``issame`` ``[N]``."""
    distances = np.asarray(distances, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if distances.shape != issame.shape:
        raise ValueError(f"{distances.shape[0]} distances but {issame.shape[0]} labels")
    fold_accuracies, fold_thresholds = [], []
    for start, end in fold_bounds(len(distances)):
        train = np.ones(len(distances), dtype=bool)
        train[start:end] = False
        train_acc = accuracy_per_threshold(distances[train], issame[train], THRESHOLDS)
        threshold = THRESHOLDS[int(np.argmax(train_acc))]
        test_acc = accuracy_per_threshold(distances[start:end], issame[start:end], np.array([threshold]))
        fold_accuracies.append(float(test_acc[0]))
        fold_thresholds.append(float(threshold))
    all_acc = accuracy_per_threshold(distances, issame, THRESHOLDS)
    best = int(np.argmax(all_acc))
    curve = roc_curve(-distances, issame)
    tar_nearest, tar_conservative = curve.tar_at_far_both(1e-3)
    return VerificationResult(
        accuracy_mean=float(np.mean(fold_accuracies)),
        accuracy_std=float(np.std(fold_accuracies)),
        accuracy_highest=float(all_acc[best]),
        best_threshold=float(THRESHOLDS[best]),
        xnorm=xnorm,
        tar_at_far_1e3=tar_nearest,
        roc_auc=curve.auc(),
        eer=curve.eer(),
        flip=flip,
        num_pairs=len(distances),
        fold_accuracies=fold_accuracies,
        fold_thresholds=fold_thresholds,
        tar_at_far_1e3_conservative=tar_conservative,
        num_impostor=curve.num_impostor,
        curve=curve,
    )


def evaluate_verification(
    embed: EmbedFn,
    images: np.ndarray,
    issame: np.ndarray,
    flip: bool = True,
    batch_size: int = 128,
    progress: Callable | None = None,
) -> VerificationResult:
    """Run the protocol on one verification set.

    ``embed``: uint8 ``[n, H, W, 3]`` RGB -> raw float32 ``[n, D]`` (not normalised);
    ``images``: uint8 ``[2N, H, W, 3]``, pair i = images 2i, 2i+1; ``issame``: ``[N]`` bool.
    ``progress``, when given, is called with the number of images embedded after each batch
    (``2N`` calls' worth, twice that with ``flip``).
    """
    issame = np.asarray(issame, dtype=bool).ravel()
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [2N, H, W, 3], got shape {images.shape}")
    if len(images) != 2 * len(issame):
        raise ValueError(f"{len(images)} images for {len(issame)} pairs (expected {2 * len(issame)})")
    embeddings, xnorm = protocol_embeddings(embed, images, flip, batch_size, progress)
    return verify_distances(pair_distances(embeddings), issame, xnorm=xnorm, flip=flip)


def format_result(name: str, result: VerificationResult) -> str:
    """One log line in insightface's wording, e.g.
    ``[lfw] XNorm: 21.53 Accuracy-Flip: 0.99450+-0.00350 Accuracy-Highest: 0.99500 ...``."""
    label = "Accuracy-Flip" if result.flip else "Accuracy"
    if result.tar_at_far_1e3 is None or result.tar_at_far_1e3_conservative is None:
        tar = f"n/a ({result.num_impostor} impostor pairs)"
    else:
        tar = f"{result.tar_at_far_1e3:.5f} (FAR<=1e-3: {result.tar_at_far_1e3_conservative:.5f})"
    return (
        f"[{name}] XNorm: {result.xnorm:.5f} {label}: {result.accuracy_mean:.5f}+-{result.accuracy_std:.5f} "
        f"Accuracy-Highest: {result.accuracy_highest:.5f} Threshold: {result.best_threshold:.2f} "
        f"TAR@FAR=1e-3: {tar} AUC: {result.roc_auc:.5f} EER: {result.eer:.5f}"
    )
