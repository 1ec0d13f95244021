"""SynthFace generation: real formats, determinism across workers, held-out pairs, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facescale.cli.main import main
from facescale.config import DataConfig
from facescale.data.datasets import open_dataset
from facescale.data.image_codec import decode_image
from facescale.data.recordio import RecordIOReader, unpack_payload
from facescale.data.synth.generate import NUM_FOLDS, VAL_IDENTITY_BASE, generate_synthface, plan_pairs
from facescale.data.verification_bin import load_verification_bin
from facescale.errors import FacescaleError

IDS, PER_ID, VAL_IDS, PAIRS = 5, 3, 8, 40
FILES = ("train.rec", "train.idx", "property", "val.bin", "val_hard.bin")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "one_worker"
    generate_synthface(out, IDS, PER_ID, VAL_IDS, PAIRS, seed=11, workers=1)
    return out


def test_same_seed_gives_identical_bytes_with_any_number_of_workers(dataset, tmp_path):
    generate_synthface(tmp_path, IDS, PER_ID, VAL_IDS, PAIRS, seed=11, workers=2)
    for name in (*FILES, "synthface.json"):
        assert (dataset / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_another_seed_gives_other_images(dataset, tmp_path):
    generate_synthface(tmp_path, IDS, PER_ID, VAL_IDS, 0, seed=12, workers=1)
    assert (dataset / "train.rec").read_bytes() != (tmp_path / "train.rec").read_bytes()
    assert not (tmp_path / "val.bin").exists()


def test_training_records_are_in_the_insightface_layout(dataset):
    reader = RecordIOReader(dataset / "train.rec", dataset / "train.idx")
    header, _ = unpack_payload(reader.read(0), "record 0")
    a, b = (int(x) for x in np.asarray(header.label))
    assert (a, b) == (1 + IDS * PER_ID, 1 + IDS * PER_ID + IDS)
    for label in range(IDS):
        identity, _ = unpack_payload(reader.read(a + label), f"identity {label}")
        start, end = (int(x) for x in np.asarray(identity.label))
        assert (start, end) == (1 + label * PER_ID, 1 + (label + 1) * PER_ID)
        for key in range(start, end):
            image_header, jpeg = unpack_payload(reader.read(key), f"record {key}")
            assert image_header.first_label == label
            assert decode_image(jpeg, f"record {key}").shape == (112, 112, 3)
    assert (dataset / "property").read_text().strip() == f"{IDS},112,112"


def test_training_set_opens_as_a_dataset(dataset):
    data = open_dataset(DataConfig(format="recordio", root=str(dataset)))
    assert data.num_classes == IDS and len(data) == IDS * PER_ID
    assert np.array_equal(np.sort(data.labels), np.repeat(np.arange(IDS), PER_ID))


@pytest.mark.parametrize("name", ["val.bin", "val_hard.bin"])
def test_verification_bins_have_balanced_folds(dataset, name):
    pairs = load_verification_bin(dataset / name)
    assert len(pairs.issame) == PAIRS
    per_fold = PAIRS // NUM_FOLDS
    expected_fold = [True] * (per_fold // 2) + [False] * (per_fold // 2)
    assert pairs.issame.tolist() == expected_fold * NUM_FOLDS
    assert pairs.decode().shape == (2 * PAIRS, 112, 112, 3)


def test_pair_plan_uses_held_out_identities_only():
    identities, issame = plan_pairs(11, VAL_IDS, 200)
    assert identities.min() >= VAL_IDENTITY_BASE and identities.max() < VAL_IDENTITY_BASE + VAL_IDS
    assert np.all((identities[:, 0] == identities[:, 1]) == issame)
    assert issame.sum() == 100
    assert len(np.unique(identities)) == VAL_IDS  # the pairs cover the held-out range


def test_summary_file(dataset):
    summary = json.loads((dataset / "synthface.json").read_text())
    assert summary["num_identities"] == IDS and summary["num_images"] == IDS * PER_ID
    assert summary["seed"] == 11 and summary["verification_bins"] == ["val.bin", "val_hard.bin"]


def test_existing_files_survive_a_failed_run(tmp_path):
    (tmp_path / "train.rec").write_bytes(b"old data")

    def fail(_: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        generate_synthface(tmp_path, IDS, PER_ID, VAL_IDS, PAIRS, seed=1, workers=1, progress=fail)
    assert (tmp_path / "train.rec").read_bytes() == b"old data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.rec"]  # no staging left behind


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_pairs": 30}, "multiple of 20"),
        ({"val_identities": 1}, "at least 2"),
        ({"num_identities": 0}, "num_identities"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    args = {
        "num_identities": 2,
        "images_per_identity": 1,
        "val_identities": 4,
        "val_pairs": 20,
        "seed": 0,
        "workers": 1,
    }
    with pytest.raises(FacescaleError, match=message):
        generate_synthface(tmp_path, **{**args, **kwargs})


def test_cli_writes_a_dataset_and_a_preview(tmp_path, capsys):
    preview = tmp_path / "grid.png"
    sizes = ["--identities", "2", "--images-per-identity", "2", "--val-identities", "3", "--val-pairs", "20"]
    options = ["--no-hard-pairs", "--workers", "1", "--preview", str(preview), "--preview-size", "2", "3"]
    code = main(["synth", str(tmp_path / "out"), *sizes, *options])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 identities x 2 images" in out and "val.bin" in out
    assert not (tmp_path / "out" / "val_hard.bin").exists()
    grid = decode_image(preview.read_bytes(), str(preview))
    assert grid.shape == (2 * 114 - 2, 4 * 114 - 2, 3)


def test_cli_without_an_output_is_a_user_error(capsys):
    assert main(["synth"]) == 1
    assert "OUT_DIR" in capsys.readouterr().err
