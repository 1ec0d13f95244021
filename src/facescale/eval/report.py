"""The evaluation report: ``report.json`` (every figure) and ``report.md`` (tables), side by side.

The Markdown is rendered from the JSON document alone, so a report can be re-rendered or
merged later from its JSON. Both are written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facescale.atomic import write_text_atomic
from facescale.eval.ijb import IjbEvaluation
from facescale.eval.metrics import STANDARD_FARS
from facescale.eval.verification import VerificationResult

REPORT_VERSION = 1


@dataclass
class ModelReport:
    """What one model scored: verification sets by name, and IJB evaluations."""

    source: str
    name: str
    embedding_size: int
    verification: dict[str, VerificationResult] = field(default_factory=dict)
    ijb: list[IjbEvaluation] = field(default_factory=list)
    roc_plots: dict[str, str] = field(default_factory=dict)  # IJB target or "verification" -> PNG name
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "embedding_size": self.embedding_size,
            "verification": {k: v.to_dict() for k, v in self.verification.items()},
            "ijb": [e.to_dict() for e in self.ijb],
            "roc_plots": self.roc_plots,
            "seconds": self.seconds,
        }


def build_report(models: Sequence[ModelReport], settings: dict[str, Any]) -> dict[str, Any]:
    from facescale import __version__

    return {
        "report_version": REPORT_VERSION,
        "facescale_version": __version__,
        "settings": settings,
        "models": [m.to_dict() for m in models],
    }


def _pct(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * 100:.{digits}f}"


def _num(value: float | None, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


TAR_RULE_NOTE = (
    "TAR at FAR: the ROC point whose FAR is nearest the target, the rule of insightface's "
    "eval_ijbc.py and of published tables; in brackets the conservative figure, the best TAR "
    "whose FAR is at most the target. A FAR below 1 / #impostor pairs cannot be measured: n/a."
)


def _tar(nearest: float | None, conservative: float | None, num_impostor: int | None) -> str:
    """``"96.37 (95.80)"``: the papers' figure, the conservative one in brackets; n/a when unmeasurable."""
    if nearest is None or conservative is None:
        return f"n/a ({num_impostor:,} impostor pairs)" if num_impostor is not None else "n/a"
    return f"{_pct(nearest)} ({_pct(conservative)})"


def _verification_table(models: list[dict]) -> list[str]:
    rows = [
        "| model | set | pairs | accuracy % (mean ± std) | highest % | threshold | XNorm "
        "| TAR@FAR=1e-3 % (FAR<=1e-3) | AUC % | EER % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in models:
        for name, r in m["verification"].items():
            rows.append(
                f"| {m['name']} | {name}{'' if r['flip'] else ' (no flip)'} | {r['num_pairs']} "
                f"| {_pct(r['accuracy_mean'])} ± {_pct(r['accuracy_std'])} | {_pct(r['accuracy_highest'])} "
                f"| {_num(r['best_threshold'])} | {_num(r['xnorm'], '.4g')} "
                f"| {_tar(r['tar_at_far_1e3'], r.get('tar_at_far_1e3_conservative'), r.get('num_impostor'))} "
                f"| {_pct(r['roc_auc'])} | {_pct(r['eer'])} |"
            )
    return rows


def _ijb_tables(models: list[dict]) -> list[str]:
    fars = [f"{f:g}" for f in STANDARD_FARS]
    lines = [
        "### 1:1 verification, TAR (%) at FAR (in brackets: FAR <= target)",
        "",
        "| model | set | mode | " + " | ".join(fars) + " | AUC % |",
        "|---|---|---|" + "---:|" * (len(fars) + 1),
    ]
    for m in models:
        for e in m["ijb"]:
            for r in e["verification"]:
                conservative = r.get("tar_at_far_conservative", {})
                tars = " | ".join(
                    _tar(r["tar_at_far"].get(f), conservative.get(f), r.get("num_impostor")) for f in fars
                )
                mode = f"{r['mode']} ({r['description']})"
                lines.append(f"| {m['name']} | {e['target']} | {mode} | {tars} | {_pct(r['roc_auc'])} |")
    ident = [(m, e) for m in models for e in m["ijb"] if e["identification"]]
    if ident:
        lines += [
            "",
            "### 1:N identification (open set, per gallery), %",
            "",
            "| model | set | gallery | rank-1 | rank-5 | rank-10 | TPIR@FPIR=1e-2 | TPIR@FPIR=1e-1 "
            "| mated / non-mated probes |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for m, e in ident:
            for r in e["identification"]:
                lines.append(
                    f"| {m['name']} | {e['target']} | {r['gallery']} | {_pct(r['rank'].get('1'))} "
                    f"| {_pct(r['rank'].get('5'))} | {_pct(r['rank'].get('10'))} "
                    f"| {_pct(r['tpir_at_fpir'].get('0.01'))} | {_pct(r['tpir_at_fpir'].get('0.1'))} "
                    f"| {r['num_mated']} / {r['num_nonmated']} |"
                )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown report for a JSON report document (see :func:`build_report`)."""
    models = report["models"]
    settings = report.get("settings", {})
    lines = [f"# facescale evaluation (facescale {report.get('facescale_version', '?')})", ""]
    lines += ["| model | source | embedding size | seconds |", "|---|---|---:|---:|"]
    lines += [
        f"| {m['name']} | `{m['source']}` | {m['embedding_size']} | {m['seconds']:.1f} |" for m in models
    ]
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())]
    if any(m["verification"] for m in models):
        lines += [
            "",
            "## Verification sets",
            "",
            "10-fold accuracy with the threshold chosen on the other 9 folds; highest = best single "
            "threshold on the whole set (squared L2 distance of unit embeddings). " + TAR_RULE_NOTE,
            "",
            *_verification_table(models),
        ]
        plots = sorted({p for m in models for k, p in m["roc_plots"].items() if k == "verification"})
        lines += [""] + [f"![{p}]({p})" for p in plots]
    if any(m["ijb"] for m in models):
        lines += [
            "",
            "## IJB",
            "",
            "Modes: F flip, N feature norm kept, D faceness-score weighting (1 on, 0 off). " + TAR_RULE_NOTE,
            "",
            *_ijb_tables(models),
        ]
        plots = sorted({p for m in models for k, p in m["roc_plots"].items() if k != "verification"})
        lines += [""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _without_nan(value: Any) -> Any:
    """NaN (an undefined rate, e.g. no non-mated probes) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(v) for v in value]
    return value


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    write_text_atomic(json_path, json.dumps(_without_nan(report), indent=2, allow_nan=False) + "\n")
    write_text_atomic(md_path, render_markdown(report))
    return json_path, md_path
