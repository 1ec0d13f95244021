"""``facescale eval``'s work: every model on every requested set, then one report.

Inputs are checked (every set's file found, the IJB layout found) before any model is loaded,
so a typo fails in a second rather than after an hour of embedding. Sets are decoded one at a
time and every model runs on a set before the next one is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facescale.errors import FacescaleError
from facescale.eval.ijb import IjbMode, IjbVerificationResult, evaluate_ijb
from facescale.eval.ijb_layout import find_layout
from facescale.eval.plots import plot_roc
from facescale.eval.report import ModelReport, build_report, write_report
from facescale.eval.sets import load_set, resolve_set
from facescale.eval.thresholds import thresholds_from_results, write_thresholds
from facescale.eval.verification import EmbedFn, evaluate_verification, format_result

ProgressFactory = Callable[[int, str], Callable[[int], object]]


@dataclass
class EvalRequest:
    """What to evaluate and where to write the report."""

    sources: list[str]
    out: Path
    bins: list[str] = field(default_factory=list)
    bin_dir: str | None = None
    ijb: str | None = None
    ijb_target: str = "IJBC"
    ijb_modes: Sequence[IjbMode] = (IjbMode(),)
    flip: bool = True
    batch_size: int = 128
    device: str = "auto"
    backbone: str | None = None
    workers: int = 2


@dataclass
class OpenedModel:
    """An embedding function with the name and size the report shows."""

    name: str
    embedding_size: int
    embed: EmbedFn
    source: str = ""


def open_model(source: str, backbone: str | None, device: str, batch_size: int) -> OpenedModel:
    """Any model ``facescale.deploy.embedder_factory.open_embedder`` accepts."""
    from facescale.deploy.embedder_factory import open_embedder

    embedder = open_embedder(source, backbone=backbone, device=device, batch_size=batch_size)
    return OpenedModel(embedder.name, int(embedder.embedding_size), embedder.embed, source)


def _unique_names(models: list[ModelReport]) -> None:
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
    for m in models:
        if seen[m.name] > 1:
            m.name = f"{m.name} ({m.source})"


def run_evaluation(
    request: EvalRequest,
    log: Callable[[str], object] = print,
    progress: ProgressFactory | None = None,
    opener: Callable[[str], OpenedModel] | None = None,
) -> dict[str, Any]:
    """Evaluate each source of ``request``; write report.json, report.md and ROC PNGs into
    ``request.out``; return the report document.

    ``opener`` turns a source into a model (default: :func:`open_model`); ``progress(total, what)``
    returns a per-batch callback for a progress bar.
    """
    bin_paths = [resolve_set(b, request.bin_dir) for b in request.bins]
    layout = find_layout(request.ijb, request.ijb_target) if request.ijb else None
    if not bin_paths and layout is None:
        raise FacescaleError(
            "nothing to evaluate: give verification sets (--bins), an IJB set (--ijb), or both"
        )
    if opener is None:

        def opener(source: str) -> OpenedModel:
            return open_model(source, request.backbone, request.device, request.batch_size)

    request.out.mkdir(parents=True, exist_ok=True)
    models = [opener(source) for source in request.sources]
    reports = [
        ModelReport(source=str(source), name=m.name, embedding_size=m.embedding_size)
        for source, m in zip(request.sources, models)
    ]
    for rep in reports:
        log(f"model {rep.name} ({rep.embedding_size}-d) from {rep.source}")
    # one set in memory at a time (all seven standard bins decoded would take several GB)
    for path in bin_paths:
        s = load_set(str(path))
        log(f"{s.name}: {len(s.issame)} pairs from {s.path}")
        for model, report in zip(models, reports):
            start = time.perf_counter()
            tick = progress(len(s.images) * (2 if request.flip else 1), s.name) if progress else None
            result = evaluate_verification(
                model.embed, s.images, s.issame, request.flip, request.batch_size, tick
            )
            report.verification[s.name] = result
            report.seconds += time.perf_counter() - start
            log(format_result(s.name if len(models) == 1 else f"{s.name} {model.name}", result))
        del s
    for report in reports:  # measured operating points, for `facescale gallery build`
        written = write_thresholds(report.source, thresholds_from_results(report.verification))
        if written is not None:
            log(f"wrote the cosine thresholds at FAR 1e-3 / 1e-4 into {written}")
    for model, report in zip(models, reports):
        if layout is None:
            break
        start = time.perf_counter()
        evaluation = evaluate_ijb(
            model.embed,
            str(layout.root),
            layout.target,
            modes=request.ijb_modes,
            batch_size=request.batch_size,
            workers=request.workers,
            progress=progress,
        )
        report.ijb.append(evaluation)
        report.seconds += time.perf_counter() - start
        for r in evaluation.verification:
            log(f"[{r.target} {r.mode}] {model.name} {format_tars(r)} AUC {r.roc_auc * 100:.2f}")
    _unique_names(reports)
    if bin_paths:
        _plot_verification(reports, request.out)
    if layout is not None:
        _plot_ijb(reports, layout.target, request.out)
    document = build_report(
        reports,
        settings={
            "flip": request.flip,
            "batch_size": request.batch_size,
            "bins": [str(p) for p in bin_paths],
            "ijb": str(layout.root) if layout else None,
            "ijb_modes": [m.label for m in request.ijb_modes] if layout else [],
        },
    )
    json_path, md_path = write_report(request.out, document)
    log(f"wrote {json_path} and {md_path}")
    return document


def format_tars(r: IjbVerificationResult) -> str:
    """``TAR% at FAR 1e-06:n/a (550 impostor pairs) 1e-05:65.60 (<=: 46.70) ...`` for the log."""
    parts = []
    for far, tar in r.tar_at_far.items():
        conservative = r.tar_at_far_conservative.get(far)
        if tar is None or conservative is None:
            parts.append(f"{far:g}:n/a ({r.num_pairs - r.num_genuine} impostor pairs)")
        else:
            parts.append(f"{far:g}:{tar * 100:.2f} (<=: {conservative * 100:.2f})")
    return "TAR% at FAR (nearest point; FAR <= target) " + " ".join(parts)


def _plot_verification(reports: list[ModelReport], out: Path) -> None:
    """One ROC PNG for the verification sets, a curve per model and set."""
    curves = {}
    for report in reports:
        for name, result in report.verification.items():
            if result.curve is not None:
                curves[name if len(reports) == 1 else f"{report.name} {name}"] = result.curve
    if not curves:
        return
    file_name = "roc_verification.png"
    plot_roc(curves, out / file_name, title="ROC on the verification sets", legend_far=1e-3)
    for report in reports:
        report.roc_plots["verification"] = file_name


def _plot_ijb(reports: list[ModelReport], target: str, out: Path) -> None:
    """One ROC PNG per IJB target with a curve per model and mode."""
    curves = {}
    for report in reports:
        for evaluation in report.ijb:
            for r in evaluation.verification:
                if r.curve is not None:
                    label = report.name if len(evaluation.verification) == 1 else f"{report.name} {r.mode}"
                    curves[label] = r.curve
    file_name = f"roc_{target}.png"
    plot_roc(curves, out / file_name, title=f"ROC on {target}")
    for report in reports:
        report.roc_plots[target] = file_name
