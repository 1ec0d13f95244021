"""The synthetic IJB set end to end: layout, features, templates, 1:1 and 1:N, report and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tar_reference import eval_ijbc_tar, measurable

from facescale.cli.main import main
from facescale.errors import DataError, FacescaleError
from facescale.eval import runner
from facescale.eval.ijb import ALL_MODES, IjbMode, evaluate_ijb
from facescale.eval.ijb_features import load_aligned
from facescale.eval.ijb_layout import find_layout, read_faces, read_pairs, read_template_subjects
from facescale.eval.metrics import tar_at_fars
from facescale.eval.synth_ijb import SynthIjbSpec, generate_synth_ijb

SPEC = SynthIjbSpec(
    num_identities=12, templates_per_identity=3, max_media_per_template=2, max_frames_per_media=2
)


def pixel_embed(images: np.ndarray) -> np.ndarray:
    """A fixed "model": a random projection of the 14x14 grey thumbnail (32-d, not normalised)."""
    weights = np.random.default_rng(0).normal(size=(14 * 14, 32)).astype(np.float32)
    thumbs = np.stack([cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (14, 14)) for im in images])
    return (thumbs.reshape(len(images), -1).astype(np.float32) / 255.0 - 0.5) @ weights


@pytest.fixture(scope="module")
def synth_ijb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ijb") / "IJBC"
    generate_synth_ijb(root, SPEC)
    return root


def test_layout_is_the_real_one(synth_ijb: Path) -> None:
    names = sorted(p.name for p in (synth_ijb / "meta").iterdir())
    assert names == [
        "ijbc_1N_gallery_G1.csv",
        "ijbc_1N_gallery_G2.csv",
        "ijbc_1N_probe_mixed.csv",
        "ijbc_face_tid_mid.txt",
        "ijbc_name_5pts_score.txt",
        "ijbc_template_pair_label.txt",
    ]
    layout = find_layout(synth_ijb.parent, "ijbc")  # the IJB_root/IJBC style works too
    faces = read_faces(layout)
    assert len(faces) == len(list((synth_ijb / "loose_crop").glob("*.jpg")))
    assert faces.landmarks.shape == (len(faces), 5, 2) and np.all(
        (faces.faceness > 0) & (faces.faceness <= 1)
    )
    assert len(np.unique(faces.templates)) == 12 * 3
    media_per_template = [
        len(np.unique(faces.medias[faces.templates == t])) for t in np.unique(faces.templates)
    ]
    assert max(media_per_template) > 1
    _t1, _t2, genuine = read_pairs(layout)
    assert genuine.sum() == 12 * 3 and (~genuine).sum() > genuine.sum()
    g1, s1 = read_template_subjects(layout.gallery("G1"))
    g2, s2 = read_template_subjects(layout.gallery("G2"))
    probes, probe_subjects = read_template_subjects(layout.probe)
    assert len(g1) == len(g2) == 6 and not set(s1) & set(s2)
    assert len(probes) == 24 and set(probe_subjects) == set(s1) | set(s2)


def naive_tar_at_far(scores: np.ndarray, genuine: np.ndarray, far: float) -> float:
    """The best TAR over every threshold whose FAR is at most ``far``."""
    ok = [np.mean(scores[genuine] >= t) for t in np.unique(scores) if np.mean(scores[~genuine] >= t) <= far]
    return float(max(ok, default=0.0))


def naive_ijb(root: Path, mode: IjbMode) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """Every step by hand: read, align, embed (+mirror), weight, media means, template sums, scores."""
    from facescale.deploy.alignment import align_face

    meta = root / "meta"
    lmk = {
        ln.split()[0]: ln.split()[1:] for ln in (meta / "ijbc_name_5pts_score.txt").read_text().splitlines()
    }
    by_template: dict[int, dict[int, list[np.ndarray]]] = {}
    for line in (meta / "ijbc_face_tid_mid.txt").read_text().splitlines():
        name, tid, mid = line.split()
        values = np.array(lmk[name], dtype=np.float64)
        bgr = cv2.imread(str(root / "loose_crop" / name))
        face = align_face(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), values[:10].reshape(5, 2))
        x = pixel_embed(face[None])[0].astype(np.float64)
        if mode.flip:
            x = x + pixel_embed(face[None, :, ::-1].copy())[0]
        if not mode.keep_norm:
            x = x / np.linalg.norm(x)
        if mode.use_score:
            x = x * values[10]
        by_template.setdefault(int(tid), {}).setdefault(int(mid), []).append(x)
    templates = {}
    for tid, media in by_template.items():
        total = sum(np.mean(frames, axis=0) for frames in media.values())
        templates[tid] = total / np.linalg.norm(total)
    pairs = np.loadtxt(meta / "ijbc_template_pair_label.txt", dtype=np.int64)
    scores = np.array([templates[a] @ templates[b] for a, b, _ in pairs])
    return templates, scores, pairs[:, 2].astype(bool)


def test_end_to_end_matches_naive_reference(synth_ijb: Path) -> None:
    modes = [IjbMode(), IjbMode(flip=False, keep_norm=False, use_score=False)]
    calls: list[tuple[int, str]] = []

    def progress(total: int, what: str):
        calls.append((total, what))
        return lambda n: None

    result = evaluate_ijb(pixel_embed, str(synth_ijb), "IJBC", modes=modes, batch_size=16, progress=progress)
    assert calls == [(result.num_faces, "IJBC faces")]
    for mode, r in zip(modes, result.verification):
        _, scores, genuine = naive_ijb(synth_ijb, mode)
        assert r.mode == mode.label and r.num_pairs == len(scores) and r.num_templates == 36
        reference = tar_at_fars(scores, genuine)
        for far, tar in r.tar_at_far.items():
            conservative = r.tar_at_far_conservative[far]
            if not measurable(genuine, far):  # 1e-6 .. 1e-3 on a few hundred impostor pairs
                assert tar is None and conservative is None and reference[far] is None, far
                continue
            assert tar == pytest.approx(eval_ijbc_tar(scores, genuine, far), abs=1e-9), far
            assert conservative == pytest.approx(naive_tar_at_far(scores, genuine, far), abs=1e-9), far
            assert tar == pytest.approx(reference[far], abs=1e-9)
    assert [g.gallery for g in result.identification] == ["G1", "G2", "mean"]
    g1, g2, mean = result.identification
    assert g1.num_mated + g2.num_mated == 24 and g1.num_nonmated == 24 - g1.num_mated
    assert mean.rank[1] == pytest.approx((g1.rank[1] + g2.rank[1]) / 2)
    assert all(0 <= v <= 1 for g in (g1, g2) for v in [*g.rank.values(), *g.tpir_at_fpir.values()])


def test_report_and_cli(synth_ijb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def fake_open_model(source: str, backbone, device, batch_size) -> runner.OpenedModel:
        if not Path(source).exists():
            raise FacescaleError(f"model {source} does not exist")
        return runner.OpenedModel(name=Path(source).stem, embedding_size=32, embed=pixel_embed, source=source)

    monkeypatch.setattr(runner, "open_model", fake_open_model)
    model = tmp_path / "toy.onnx"
    model.write_bytes(b"stand-in")
    bins = Path("/work/shared/fixtures/mxnet_rec/verify_py3.bin")
    out = tmp_path / "report"
    argv = [
        "eval",
        str(model),
        "--ijb",
        str(synth_ijb),
        "--ijb-ablation",
        "--out",
        str(out),
        "--batch-size",
        "32",
    ]
    if bins.is_file():
        argv += ["--bins", str(bins)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    (model_report,) = report["models"]
    (ijb,) = model_report["ijb"]
    assert [r["mode"] for r in ijb["verification"]] == [m.label for m in ALL_MODES]
    assert set(ijb["verification"][0]["tar_at_far"]) == {"1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1"}
    first = ijb["verification"][0]
    impostors = first["num_impostor"]
    assert impostors == first["num_pairs"] - first["num_genuine"] and impostors < 1000
    # below 1 / #impostors nothing can be measured: null in JSON, "n/a (N impostor pairs)" in Markdown
    assert first["tar_at_far"]["1e-06"] is None and first["tar_at_far_conservative"]["1e-06"] is None
    assert first["tar_at_far"]["0.1"] is not None and first["tar_at_far_conservative"]["0.1"] is not None
    markdown = (out / "report.md").read_text()
    assert "| toy | IJBC | F1N1D1" in markdown and "rank-1" in markdown and "![roc_IJBC.png]" in markdown
    assert f"n/a ({impostors:,} impostor pairs)" in markdown
    assert "nearest the target" in markdown and "(in brackets: FAR <= target)" in markdown
    row = next(ln for ln in markdown.splitlines() if ln.startswith("| toy | IJBC | F1N1D1"))
    nearest, conservative = first["tar_at_far"]["0.1"], first["tar_at_far_conservative"]["0.1"]
    assert f"| {nearest * 100:.2f} ({conservative * 100:.2f}) |" in row
    assert (out / "roc_IJBC.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = capsys.readouterr().out
    assert f"1e-06:n/a ({impostors} impostor pairs)" in log and "(<=: " in log
    if bins.is_file():
        assert "verify_py3" in model_report["verification"] and "Accuracy-Flip" in log
        assert (out / "roc_verification.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![roc_verification.png](roc_verification.png)" in markdown

    assert main(["eval", str(tmp_path / "missing.pth"), "--ijb", str(synth_ijb), "--out", str(out)]) == 1
    assert "missing.pth does not exist" in capsys.readouterr().err
    assert main(["eval", str(model), "--bins", str(tmp_path / "nope.bin"), "--out", str(out)]) == 1
    assert "nope.bin" in capsys.readouterr().err


def test_protocol_errors_name_the_file(synth_ijb: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "IJBC"
    shutil.copytree(synth_ijb / "meta", broken / "meta")
    layout = find_layout(broken, "IJBC")
    with open(layout.template_pair_label, "a") as f:
        f.write("1 2 x\n")
    with pytest.raises(DataError, match=r"ijbc_template_pair_label\.txt line \d+: expected 3 integers"):
        read_pairs(layout)
    layout.name_5pts_score.write_text("1.jpg 1 2 3\n")
    with pytest.raises(DataError, match=r"ijbc_name_5pts_score\.txt line 1: expected"):
        read_faces(layout)
    with pytest.raises(DataError, match=r"loose_crop/1\.jpg"):
        load_aligned(broken / "loose_crop", ["1.jpg"], np.zeros((1, 5, 2)))
    with pytest.raises(FacescaleError, match="no IJB set here"):
        find_layout(tmp_path / "nowhere", "IJBC")
    with pytest.raises(FacescaleError, match="not empty"):
        generate_synth_ijb(synth_ijb, SPEC)


def test_eval_help_states_both_tar_rules(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "nearest the target, the rule of insightface's eval_ijbc.py" in text
    assert "conservative figure (the best TAR whose FAR is at most the target" in text
    assert "'n/a (N impostor pairs)'" in text
