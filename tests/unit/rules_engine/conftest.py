"""Shared paths for the rules engine tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("FALCO_DEPLOY_SHARED")
              or Path(__file__).resolve().parents[3].parent / "shared")
CORPUS = SHARED / "corpus"
RULES = CORPUS / "falcosecurity-rules"
CASES = Path(__file__).parent / "cases"


@pytest.fixture
def corpus() -> Path:
    if not RULES.is_dir():
        pytest.skip("Falco corpus not available")
    return CORPUS
