"""IJB 1:1 scoring speed at IJB-C's real sizes, ours beside the usual per-batch numpy loop.

Random unit template features stand in for a model's (the cost does not depend on the values).
Ours: template ids -> rows by binary search, chunked gather + row-wise dot in float32 on all
cores, one sort for the ROC and every TAR@FAR. The baseline is the loop from insightface's
``ijb_11.py``: a dense id -> row table, batches of 100,000 pairs, float64 features,
``np.sum(f1 * f2, -1)``; it is timed on a prefix of the pairs and extrapolated linearly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from facescale.eval.metrics import roc_curve
from facescale.eval.templates import score_pairs, template_rows

IJBC_TEMPLATES = 23_124
IJBC_PAIRS = 15_658_489
IJBC_GENUINE = 19_557
BASELINE_BATCH = 100_000


@dataclass
class ScoringBench:
    num_templates: int
    num_pairs: int
    dim: int
    threads: int
    ours_lookup_s: float
    ours_score_s: float
    ours_roc_s: float
    baseline_pairs: int
    baseline_measured_s: float
    max_abs_difference: float
    ours_cpu_s: float  # CPU seconds of this process over all threads: robust to a busy machine
    baseline_cpu_s: float

    @property
    def ours_total_s(self) -> float:
        return self.ours_lookup_s + self.ours_score_s + self.ours_roc_s

    @property
    def baseline_extrapolated_s(self) -> float:
        return self.baseline_measured_s * self.num_pairs / self.baseline_pairs


def make_problem(num_templates: int, num_pairs: int, dim: int, seed: int = 0):
    """Random unit features, sparse template ids, random pairs and labels of the given sizes."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((num_templates, dim), dtype=np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    # real template ids are sparse integers, not 0..T-1
    ids = np.sort(rng.choice(num_templates * 8, size=num_templates, replace=False)).astype(np.int64)
    t1 = ids[rng.integers(0, num_templates, num_pairs)]
    t2 = ids[rng.integers(0, num_templates, num_pairs)]
    genuine = np.zeros(num_pairs, dtype=bool)
    genuine[rng.choice(num_pairs, size=min(IJBC_GENUINE, num_pairs // 2), replace=False)] = True
    return ids, features, t1, t2, genuine


def baseline_scores(ids: np.ndarray, features: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """The straightforward loop: dense id table, 100k-pair batches, float64, multiply and sum."""
    features64 = features.astype(np.float64)
    template2row = np.zeros(int(ids.max()) + 1, dtype=np.int64)
    template2row[ids] = np.arange(len(ids))
    scores = np.zeros(len(t1))
    for start in range(0, len(t1), BASELINE_BATCH):
        s = slice(start, start + BASELINE_BATCH)
        f1 = features64[template2row[t1[s]]]
        f2 = features64[template2row[t2[s]]]
        scores[s] = np.sum(f1 * f2, -1)
    return scores


def run_scoring_bench(
    num_templates: int = IJBC_TEMPLATES,
    num_pairs: int = IJBC_PAIRS,
    dim: int = 512,
    baseline_pairs: int = 1_000_000,
    threads: int | None = None,
    seed: int = 0,
) -> ScoringBench:
    """Time ours on all ``num_pairs`` and the baseline on the first ``baseline_pairs``."""
    import os

    threads = threads or os.cpu_count() or 1
    ids, features, t1, t2, genuine = make_problem(num_templates, num_pairs, dim, seed)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    rows1 = template_rows(ids, t1, "bench")
    rows2 = template_rows(ids, t2, "bench")
    t_lookup = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score_pairs(features, rows1, rows2, threads=threads)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    curve = roc_curve(scores, genuine)
    [curve.tar_at_far(f) for f in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)]
    t_roc = time.perf_counter() - t0
    ours_cpu = time.process_time() - cpu0

    n = min(baseline_pairs, num_pairs)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    reference = baseline_scores(ids, features, t1[:n], t2[:n])
    t_baseline = time.perf_counter() - t0
    baseline_cpu = time.process_time() - cpu0
    return ScoringBench(
        num_templates=num_templates,
        num_pairs=num_pairs,
        dim=dim,
        threads=threads,
        ours_lookup_s=t_lookup,
        ours_score_s=t_score,
        ours_roc_s=t_roc,
        baseline_pairs=n,
        baseline_measured_s=t_baseline,
        max_abs_difference=float(np.max(np.abs(scores[:n] - reference))),
        ours_cpu_s=ours_cpu,
        baseline_cpu_s=baseline_cpu,
    )


def format_bench(b: ScoringBench) -> str:
    """The comparison table printed by ``facescale bench eval``."""
    extrapolated = b.baseline_pairs < b.num_pairs
    baseline_note = (
        f"{b.baseline_extrapolated_s:8.2f} s  (measured {b.baseline_measured_s:.2f} s on the first "
        f"{b.baseline_pairs:,} pairs, extrapolated linearly)"
        if extrapolated
        else f"{b.baseline_measured_s:8.2f} s"
    )
    return "\n".join(
        [
            f"IJB 1:1 scoring: {b.num_pairs:,} pairs over {b.num_templates:,} templates, {b.dim}-d, "
            f"{b.threads} thread(s), random features",
            f"  facescale   {b.ours_total_s:8.2f} s  (id lookup {b.ours_lookup_s:.2f} s, scoring "
            f"{b.ours_score_s:.2f} s, ROC + TAR@FAR {b.ours_roc_s:.2f} s)",
            f"  baseline    {baseline_note}  [scoring only: per-batch numpy loop, float64]",
            f"  speed-up    {b.baseline_extrapolated_s / b.ours_score_s:8.1f}x on scoring alone, "
            f"{b.baseline_extrapolated_s / b.ours_total_s:.1f}x including lookup and ROC",
            f"  CPU time    facescale {b.ours_cpu_s:.2f} s (all threads), baseline "
            f"{b.baseline_cpu_s * b.num_pairs / b.baseline_pairs:.2f} s (extrapolated); wall time "
            "above depends on what else runs on the machine",
            f"  max |ours - baseline| on the shared pairs: {b.max_abs_difference:.2e}",
        ]
    )
