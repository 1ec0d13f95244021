"""``facescale data verify``: one strict pass names every bad record and exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datatest_utils import write_im2rec, write_rec_with_bad_records

from facescale.cli.main import main
from facescale.config import DataConfig
from facescale.data.datasets import open_dataset
from facescale.data.verify_dataset import verify_dataset


def test_verify_passes_the_mxnet_fixture(fixture_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "verify", str(fixture_dir), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        "decoded 60 images strictly in" in out and "images/s), 0 bad" in out and out.rstrip().endswith("OK")
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_verify_names_every_bad_record(
    tmp_path: Path, workers: int, capsys: pytest.CaptureFixture[str]
) -> None:
    write_rec_with_bad_records(tmp_path)
    assert main(["data", "verify", str(tmp_path), "--workers", str(workers), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == 9 and report["bad_count"] == 3 and not report["ok"]
    assert [line.split(":")[0] for line in report["bad"]] == [
        f"{tmp_path / 'train.rec'} record {key}" for key in (2, 5, 8)
    ]
    assert "not a decodable image" in report["bad"][0] and "truncated JPEG" in report["bad"][1]
    assert "corrupt JPEG" in report["bad"][2]


def test_verify_reports_what_the_open_dropped_and_counts_progress(tmp_path: Path) -> None:
    write_im2rec(tmp_path, [0, 1, 2, 3])
    dataset = open_dataset(DataConfig(root=str(tmp_path), num_classes=3, bad_data="skip"))
    seen: list[int] = []
    report = verify_dataset(dataset, workers=0, progress=seen.append)
    assert report.checked == 3 and report.bad_count == 0 and sum(seen) == 3
    assert not report.ok and report.excluded_count == 1 and "label outside [0, 3)" in report.excluded[0]
    assert "1 record(s) unusable when the dataset was opened" in report.to_text()
