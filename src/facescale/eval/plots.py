"""ROC plots (PNG) for the evaluation report, drawn headless with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facescale.atomic import atomic_output
from facescale.eval.metrics import STANDARD_FARS, RocCurve


def plot_roc(
    curves: dict[str, RocCurve], path: str | Path, title: str = "ROC", legend_far: float = 1e-4
) -> Path:
    """Draw each curve (TPR against log FPR, from the smallest measurable FAR to 1) into one PNG at
    ``path``; returns the path.

    The legend gives each curve's AUC and TAR at ``legend_far`` (1e-4: the figure IJB results are
    quoted by; 1e-3 for verification sets) by the papers' nearest-point rule, or "n/a" where the
    curve has too few impostor pairs to measure it.
    """
    # a bare Figure, no pyplot: no global backend switch, no display; PNGs render with Agg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    ax = fig.add_subplot()
    for label, curve in curves.items():
        fpr, tpr = curve.downsampled()
        keep = fpr > 0
        tar, _ = curve.tar_at_far_both(legend_far)
        tar_text = f"{tar * 100:.2f}%" if tar is not None else "n/a"
        ax.plot(
            fpr[keep],
            tpr[keep],
            lw=1.2,
            label=f"{label} (AUC {curve.auc() * 100:.2f}%, TAR@{legend_far:g} {tar_text})",
        )
    # below one impostor pair's worth of FAR the curve has no points: start the axis there
    smallest = min((1.0 / c.num_impostor for c in curves.values()), default=STANDARD_FARS[0])
    ax.set_xscale("log")
    ax.set_xlim(max(STANDARD_FARS[0], 10 ** np.floor(np.log10(smallest))), 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("False accept rate")
    ax.set_ylabel("True accept rate")
    ax.set_title(title)
    ax.grid(linestyle="--", linewidth=0.6)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as temp:
        fig.savefig(temp, format="png")
    return path
