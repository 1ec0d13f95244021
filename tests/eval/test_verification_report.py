"""A verification set in the report: the papers' TAR rule beside the conservative one, n/a on a small set,
and a ROC plot, as for IJB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facescale.data.image_codec import encode_png
from facescale.data.verification_bin import save_verification_bin
from facescale.eval.runner import EvalRequest, OpenedModel, run_evaluation


def mean_colour_embed(images: np.ndarray) -> np.ndarray:
    n, h, w, _ = images.shape
    quads = images.reshape(n, 2, h // 2, 2, w // 2, 3).astype(np.float32).mean(axis=(2, 4))
    return quads.reshape(n, 12) - 127.5


def write_bin(path: Path, pairs: int, seed: int = 0) -> None:
    """Pairs of 8x8 images: same-person pairs share a base colour, impostor pairs do not."""
    rng = np.random.default_rng(seed)
    images, issame = [], []
    for i in range(pairs):
        same = i % 2 == 0
        a = rng.integers(0, 255, (8, 8, 3)).astype(np.int16)
        b = a + rng.integers(-40, 40, (8, 8, 3)) if same else rng.integers(0, 255, (8, 8, 3))
        images += [encode_png(np.clip(x, 0, 255).astype(np.uint8)) for x in (a, b)]
        issame.append(same)
    save_verification_bin(path, images, issame)


def test_verification_sets_get_a_roc_plot_and_both_tar_rules(tmp_path: Path) -> None:
    write_bin(tmp_path / "small.bin", 200)  # 100 impostor pairs: FAR 1e-3 is not measurable
    write_bin(tmp_path / "large.bin", 2400, seed=1)  # 1,200 impostor pairs
    request = EvalRequest(sources=["m.onnx"], out=tmp_path / "out", bins=["small", "large"])
    request.bin_dir = str(tmp_path)
    lines: list[str] = []
    report = run_evaluation(
        request, log=lines.append, opener=lambda s: OpenedModel("m", 12, mean_colour_embed)
    )
    (model,) = report["models"]
    small, large = model["verification"]["small"], model["verification"]["large"]
    assert small["tar_at_far_1e3"] is None and small["num_impostor"] == 100
    assert large["tar_at_far_1e3"] is not None and large["tar_at_far_1e3_conservative"] is not None
    assert model["roc_plots"] == {"verification": "roc_verification.png"}
    out = tmp_path / "out"
    assert (out / "roc_verification.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "![roc_verification.png](roc_verification.png)" in markdown
    assert "| TAR@FAR=1e-3 % (FAR<=1e-3) |" in markdown and "n/a (100 impostor pairs)" in markdown
    tar, conservative = large["tar_at_far_1e3"], large["tar_at_far_1e3_conservative"]
    assert f"| {tar * 100:.2f} ({conservative * 100:.2f}) |" in markdown
    assert any("TAR@FAR=1e-3: n/a (100 impostor pairs)" in line for line in lines)
