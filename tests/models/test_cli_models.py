"""``facescale models`` prints measured figures for every backbone."""

from __future__ import annotations

import pytest

from facescale.cli.main import main
from facescale.models import BACKBONES
from facescale.models.complexity import measure_backbone


def test_markdown_table_lists_measured_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--markdown", "mbf_tiny", "r50"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| backbone | params (M) | MACs (G)")
    for name, row in zip(["mbf_tiny", "r50"], rows[1:]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        c = measure_backbone(name)
        assert cells[:3] == [name, f"{c.mparams:.2f}", f"{c.gmacs:.3f}"]


def test_plain_table_has_every_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    first_column = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert set(BACKBONES) <= first_column


def test_unknown_name_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "r51"]) == 2
    assert "did you mean r50" in capsys.readouterr().err
