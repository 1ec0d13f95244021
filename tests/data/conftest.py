"""Shared helpers for the data tests: the MXNet-written fixture and tiny synthetic images."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURE = Path("/work/shared/fixtures/mxnet_rec")
if not FIXTURE.is_dir():
    FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "mxnet_rec"


@pytest.fixture
def fixture_dir() -> Path:
    if not FIXTURE.is_dir():
        pytest.skip("the shared MXNet fixture is not available")
    return FIXTURE
