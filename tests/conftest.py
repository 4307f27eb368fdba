"""Shared fixtures: the real FMA slice in tests/data."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def fma_root() -> Path:
    """A real (truncated) FMA root: official metadata rows and three fma_small clips."""
    return DATA
