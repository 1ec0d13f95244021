"""ROC plots (PNG) for the evaluation report, drawn headless with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

from facescale.atomic import atomic_output
from facescale.eval.metrics import STANDARD_FARS, RocCurve


def plot_roc(curves: dict[str, RocCurve], path: str | Path, title: str = "ROC") -> Path:
    """Draw each curve (TPR against log FPR, 1e-6 .. 1) into one PNG at ``path``; returns the path.

    The legend gives each curve's AUC and TAR at FAR=1e-4, the figure IJB results are quoted by.
    """
    # a bare Figure, no pyplot: no global backend switch, no display; PNGs render with Agg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    ax = fig.add_subplot()
    for label, curve in curves.items():
        fpr, tpr = curve.downsampled()
        keep = fpr > 0
        ax.plot(
            fpr[keep],
            tpr[keep],
            lw=1.2,
            label=f"{label} (AUC {curve.auc() * 100:.2f}%, TAR@1e-4 {curve.tar_at_far(1e-4) * 100:.2f}%)",
        )
    ax.set_xscale("log")
    ax.set_xlim(STANDARD_FARS[0], 1.0)
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
