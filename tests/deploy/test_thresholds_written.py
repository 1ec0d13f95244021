"""Measured thresholds are written into backbone.json at the end of training and by `facescale eval`,
and `facescale gallery build` says which threshold it uses (or warns loudly when there is none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facescale.cli.main import main
from facescale.eval.thresholds import THRESHOLDS_KEY


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    args = ["synth", str(root), "--identities", "8", "--images-per-identity", "4", "--val-identities", "40"]
    assert main([*args, "--val-pairs", "200", "--no-hard-pairs", "--workers", "1"]) == 0
    return root


@pytest.fixture(scope="module")
def trained(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    overrides = [
        f"data.root={synth}",
        "data.format=recordio",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.name=mbf_tiny",
        "model.embedding_size=32",
        "train.epochs=1",
        f"train.output={run}",
        f"eval.bins=[{synth / 'val.bin'}]",
    ]
    assert main(["train", *[arg for o in overrides for arg in ("-o", o)]]) == 0
    return run


def test_training_writes_the_thresholds_per_set(trained: Path) -> None:
    spec = json.loads((trained / "backbone.json").read_text())
    assert spec["name"] == "mbf_tiny"
    entry = spec[THRESHOLDS_KEY]["val"]
    assert sorted(entry) == ["1e-03", "1e-04"]
    # 200 pairs hold 100 impostors: neither FAR is measurable, and the file says so
    assert all(e["impostor_pairs"] == 100 and e["cosine"] is None for e in entry.values())


def test_eval_writes_them_too(trained: Path, synth: Path, tmp_path: Path) -> None:
    spec_file = trained / "backbone.json"
    spec = json.loads(spec_file.read_text())
    del spec[THRESHOLDS_KEY]
    spec_file.write_text(json.dumps(spec))
    assert main(["eval", str(trained), "--bins", str(synth / "val.bin"), "--out", str(tmp_path / "r")]) == 0
    assert json.loads(spec_file.read_text())[THRESHOLDS_KEY]["val"]["1e-03"]["impostor_pairs"] == 100


def test_gallery_build_warns_without_a_measured_threshold_and_uses_one_when_there(
    trained: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2
    import numpy as np

    from facescale.deploy.gallery import Gallery

    people = tmp_path / "people"
    (people / "astro").mkdir(parents=True)
    skimage = pytest.importorskip("skimage.data")
    cv2.imwrite(
        str(people / "astro" / "a.jpg"),
        cv2.cvtColor(np.ascontiguousarray(skimage.astronaut()), cv2.COLOR_RGB2BGR),
    )
    out = tmp_path / "g.gallery"
    assert main(["gallery", "build", str(people), "--model", str(trained), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "WARNING: model" in captured.err and "records no measured threshold" in captured.err
    assert "a guess" in Gallery.load(out).threshold_source
    spec_file = trained / "backbone.json"
    spec = json.loads(spec_file.read_text())
    spec[THRESHOLDS_KEY]["val"]["1e-03"].update(cosine=0.4567, tar=0.5)
    spec_file.write_text(json.dumps(spec))
    assert main(["gallery", "build", str(people), "--model", str(trained), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "WARNING" not in captured.err and "threshold 0.4567: measured: FAR=1e-03 on val" in captured.out
    gallery = Gallery.load(out)
    assert gallery.threshold == 0.4567 and "FAR=1e-03 on val" in gallery.threshold_source


def test_calibrate_pools_a_bins_impostors_scored_with_the_gallerys_model(
    trained: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2
    import numpy as np

    skimage = pytest.importorskip("skimage.data")
    people = tmp_path / "people"
    photos = {"astro": skimage.astronaut(), "coffee": skimage.astronaut()[:, ::-1]}
    for name, rgb in photos.items():
        (people / name).mkdir(parents=True)
        cv2.imwrite(str(people / name / "a.jpg"), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    gallery = tmp_path / "g.gallery"
    assert main(["gallery", "build", str(people), "--model", str(trained), "--out", str(gallery)]) == 0
    capsys.readouterr()
    assert main(["gallery", "calibrate", str(gallery), "--far", "1e-2", "--bin", str(synth / "val.bin")]) == 0
    out = capsys.readouterr().out
    # 1 pair of enrolled people + the bin's 100 impostor pairs
    assert "101 impostor pairs (2 enrolled people, 100 from the verification bin)" in out
    assert "FAR 0.01 per comparison: threshold" in out
