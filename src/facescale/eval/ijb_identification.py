"""IJB 1:N identification, open set, scored on each gallery on its own (IJB-C G1/G2, IJB-B S1/S2).

The probes ("probe_mixed") hold subjects of both galleries, so against one gallery a probe is
*mated* (its subject is enrolled) or *non-mated* (it is not), as in NIST's open-set protocol:

- rank-k (CMC) over mated probes: the enrolled mate is among the k best-scoring gallery
  subjects. Ties count against the probe: rank = 1 + (other subjects scoring >= the mate).
- TPIR at FPIR f: the threshold lets through at most a fraction f of non-mated probes (their
  best gallery score must exceed it); TPIR is the fraction of mated probes whose mate is at
  rank 1 with a score above that threshold.

A subject's score is the best over its gallery templates (the IJB galleries hold one each).
insightface's ``ijb_1n.py`` instead merges both galleries into one closed set; the per-gallery
open-set figures are the ones the IJB papers report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from facescale.eval.ijb_layout import IjbLayout, read_template_subjects
from facescale.eval.templates import template_rows

RANKS: tuple[int, ...] = (1, 5, 10)
FPIRS: tuple[float, ...] = (1e-2, 1e-1)
PROBE_CHUNK = 4096


@dataclass
class IdentificationResult:
    """1:N figures for one gallery (``gallery="mean"``: the average over the galleries)."""

    gallery: str
    rank: dict[int, float]  # {1: rank-1 rate, 5: ..., 10: ...}
    tpir_at_fpir: dict[float, float]
    num_mated: int
    num_nonmated: int
    num_gallery_subjects: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rank"] = {str(k): v for k, v in self.rank.items()}
        d["tpir_at_fpir"] = {f"{k:g}": v for k, v in self.tpir_at_fpir.items()}
        return d


def identify(
    probe_features: np.ndarray,
    probe_subjects: np.ndarray,
    gallery_features: np.ndarray,
    gallery_subjects: np.ndarray,
    gallery: str = "gallery",
    ranks: Sequence[int] = RANKS,
    fpirs: Sequence[float] = FPIRS,
) -> IdentificationResult:
    """Open-set figures of unit probe features ``[Q, D]`` against unit gallery features ``[G, D]``."""
    order = np.argsort(gallery_subjects, kind="stable")
    subjects, starts = np.unique(np.asarray(gallery_subjects)[order], return_index=True)
    gallery_sorted = np.ascontiguousarray(gallery_features[order], dtype=np.float32)
    column_of = {int(s): i for i, s in enumerate(subjects)}
    mate_column = np.array([column_of.get(int(s), -1) for s in probe_subjects], dtype=np.int64)
    mated = mate_column >= 0

    mate_rank = np.zeros(len(probe_subjects), dtype=np.int64)
    mate_score = np.full(len(probe_subjects), -np.inf, dtype=np.float32)
    best_score = np.empty(len(probe_subjects), dtype=np.float32)
    for start in range(0, len(probe_subjects), PROBE_CHUNK):
        end = min(start + PROBE_CHUNK, len(probe_subjects))
        similarity = np.asarray(probe_features[start:end], dtype=np.float32) @ gallery_sorted.T
        per_subject = np.maximum.reduceat(similarity, starts, axis=1)  # [q, S]
        best_score[start:end] = per_subject.max(axis=1)
        chunk_mated = np.flatnonzero(mated[start:end])
        true = per_subject[chunk_mated, mate_column[start:end][chunk_mated]]
        mate_score[start + chunk_mated] = true
        # every subject at or above the mate's score, the mate itself included
        mate_rank[start + chunk_mated] = (per_subject[chunk_mated] >= true[:, None]).sum(axis=1)

    num_mated = int(mated.sum())
    ranked = mate_rank[mated]
    rank_rates = {int(k): float((ranked <= k).mean()) if num_mated else float("nan") for k in ranks}
    nonmated_best = np.sort(best_score[~mated])[::-1]
    tpir = {}
    for f in fpirs:
        if num_mated == 0 or len(nonmated_best) == 0:
            tpir[float(f)] = float("nan")
            continue
        allowed = int(np.floor(f * len(nonmated_best)))
        threshold = nonmated_best[allowed] if allowed < len(nonmated_best) else -np.inf
        hits = (mate_rank[mated] == 1) & (mate_score[mated] > threshold)
        tpir[float(f)] = float(hits.mean())
    return IdentificationResult(
        gallery=gallery,
        rank=rank_rates,
        tpir_at_fpir=tpir,
        num_mated=num_mated,
        num_nonmated=int((~mated).sum()),
        num_gallery_subjects=len(subjects),
    )


def evaluate_identification(
    layout: IjbLayout, template_ids: np.ndarray, template_features: np.ndarray
) -> list[IdentificationResult]:
    """Each gallery of ``layout`` against its probes, then their mean (``gallery="mean"``).

    ``template_ids`` ``[T]`` sorted, ``template_features`` ``[T, D]`` unit rows, pooled from the
    face list (every 1:N template must be there).
    """
    probe_templates, probe_subjects = read_template_subjects(layout.probe)
    probe_features = template_features[template_rows(template_ids, probe_templates, str(layout.probe))]
    results = []
    for name in layout.gallery_names:
        path = layout.gallery(name)
        gallery_templates, gallery_subjects = read_template_subjects(path)
        gallery_features = template_features[template_rows(template_ids, gallery_templates, str(path))]
        results.append(identify(probe_features, probe_subjects, gallery_features, gallery_subjects, name))
    results.append(
        IdentificationResult(
            gallery="mean",
            rank={k: float(np.mean([r.rank[k] for r in results])) for k in results[0].rank},
            tpir_at_fpir={
                f: float(np.mean([r.tpir_at_fpir[f] for r in results])) for f in results[0].tpir_at_fpir
            },
            num_mated=sum(r.num_mated for r in results),
            num_nonmated=sum(r.num_nonmated for r in results),
            num_gallery_subjects=sum(r.num_gallery_subjects for r in results),
        )
    )
    return results
