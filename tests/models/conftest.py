"""Shared helpers for the backbone tests."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve()
# shared/ sits beside the checkout (/work/shared) or inside it (the device machine's copy).
_CANDIDATES = [
    _HERE.parents[3] / "shared" / "fixtures" / "insightface_compat",
    _HERE.parents[2] / "shared" / "fixtures" / "insightface_compat",
]


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    """The insightface_compat fixture folder (the test is skipped where it is not shipped)."""
    for path in _CANDIDATES:
        if (path / "state_dict_keys.json").exists():
            return path
    pytest.skip("shared/fixtures/insightface_compat not found")
