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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The conformance figures, when the conformance test ran: how close the validator is to
    real Falco 0.40 on the recorded verdicts."""
    module = __import__("sys").modules.get("test_re_conformance")
    if module is None or not (CORPUS / "falco-verdicts-0.40" / "verdicts.json").is_file():
        return
    from conformance import compare_all

    outcomes = compare_all()
    terminalreporter.write_line(
        f"rules validate vs real Falco 0.40: {sum(o.agrees for o in outcomes)} of "
        f"{len(outcomes)} verdicts agree; {sum(o.verbatim for o in outcomes)} of "
        f"{sum(o.messages for o in outcomes)} error messages verbatim")
