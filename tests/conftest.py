"""Shared fixtures: third-party data in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of third-party measurement tables; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data folder {SHARED_DATA} is absent (only present beside a developer checkout)")
    return SHARED_DATA
