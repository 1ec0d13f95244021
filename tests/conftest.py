"""Shared fixtures. Tests run on 2 CPU cores next to each other: keep torch to one thread each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rec_factory import write_color_rec

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Put torch back on one thread after each test: CLI commands run in-process (``bench infer``
    sets its own thread count) must not change the arithmetic of the tests after them. With the
    head's bf16 GEMMs a different thread count rounds differently, so a run in this process would
    no longer match the same run in a one-thread subprocess."""
    yield
    torch.set_num_threads(1)


@pytest.fixture
def color_rec(tmp_path: Path) -> Path:
    return write_color_rec(tmp_path / "rec", num_classes=8, per_class=8)


@pytest.fixture
def facescale_cmd() -> list[str]:
    return [sys.executable, "-m", "facescale.cli.main"]
