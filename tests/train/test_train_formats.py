"""`facescale train` reads every dataset format by config alone (`-o data.format=... -o data.root=...`)."""

from __future__ import annotations

from pathlib import Path

import torch
from test_resume import as_flags, overrides

from facescale.cli.main import main
from facescale.config import DataConfig
from facescale.data.datasets import open_dataset


def _write_image_folder(label_txt: Path, out: Path) -> None:
    """One folder per identity, from a label.txt set (the layout of CASIA-WebFace-style downloads)."""
    dataset = open_dataset(DataConfig(format="label_txt", root=str(label_txt)))
    for i, label in enumerate(dataset.labels.tolist()):
        folder = out / f"id_{label:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.jpg").write_bytes(dataset.read(i))


def test_train_on_every_format_by_config_alone(color_rec: Path, tmp_path: Path) -> None:
    roots = {"label_txt": tmp_path / "label_txt", "image_bin": tmp_path / "image_bin"}
    assert main(["data", "rec2images", str(color_rec), str(roots["label_txt"])]) == 0
    assert main(["data", "images2bin", str(roots["label_txt"]), str(roots["image_bin"])]) == 0
    assert main(["data", "split", str(color_rec), str(tmp_path / "parts"), "--parts", "2"]) == 0
    _write_image_folder(roots["label_txt"], tmp_path / "image_folder")
    runs = [
        ("recordio", color_rec),
        ("label_txt", roots["label_txt"]),
        ("image_bin", roots["image_bin"]),
        ("image_folder", tmp_path / "image_folder"),
        ("recordio", tmp_path / "parts"),  # part-00000.rec ... as written by `data split`
    ]
    weights = []
    for n, (fmt, root) in enumerate(runs):
        out = tmp_path / f"run-{n}"
        keys = [*overrides(root, out), "train.max_steps=4", f"data.format={fmt}"]
        assert main(["train", *as_flags(keys)]) == 0, fmt
        state = torch.load(out / "backbone.pth", weights_only=True)
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
        weights.append(state)
    # The converted sets hold the same images in the same order as the rec (the rec is written
    # identity by identity, as the folders sort): the very same run, bit for bit.
    for converted in weights[1:4]:
        for key, value in weights[0].items():
            torch.testing.assert_close(converted[key], value, rtol=0, atol=0, msg=key)
    # `data split` shuffles the samples into its parts: the same data in another order, another run.
    assert any(not torch.equal(weights[4][k], weights[0][k]) for k in weights[0])
