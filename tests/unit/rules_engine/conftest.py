"""Shared paths for the rules engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path("/work/shared/corpus")
RULES = CORPUS / "falcosecurity-rules"
CASES = Path(__file__).parent / "cases"


@pytest.fixture
def corpus() -> Path:
    if not RULES.is_dir():
        pytest.skip("Falco corpus not available")
    return CORPUS
