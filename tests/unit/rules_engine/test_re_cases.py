"""Small rules files with the verdict and codes real `falco -V` gives them.

Each file in cases/ starts with comment lines:
  # Expect: ok | ok-warnings | invalid
  # Version: 0.44 | 0.40            (default 0.44)
  # Errors: CODE[, CODE...]         (exact list of error codes)
  # Warnings: CODE[, CODE...]       (exact list of warning codes)
  # Message: text                   (contained in the first error, else the first warning)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from falco_deploy.rules_engine import validate

CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES.glob("*.yaml"))


def _header(path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        if sep and key.strip() in ("Expect", "Version", "Errors", "Warnings", "Message"):
            out[key.strip()] = value.strip()
    return out


def _codes(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",")] if text else []


def test_there_are_enough_cases():
    assert len(CASE_FILES) >= 50


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path):
    hdr = _header(path)
    assert hdr.get("Expect") in ("ok", "ok-warnings", "invalid"), "case header missing"
    report = validate([str(path)], falco_version=hdr.get("Version", "0.44"))
    (res,) = report.results
    detail = report.to_text() + "\n" + report.warnings_text()
    assert res.error_codes == _codes(hdr.get("Errors")), detail
    assert res.warning_codes == _codes(hdr.get("Warnings")), detail
    expect = hdr["Expect"]
    assert report.ok == (expect != "invalid"), detail
    assert report.exit_code == (1 if expect == "invalid" else 0)
    if expect == "ok-warnings":
        assert report.to_text() == f"{path}: Ok, with warnings"
    elif expect == "ok":
        assert report.to_text() == f"{path}: Ok"
    if "Message" in hdr:
        first = (res.errors or res.warnings)[0]
        assert hdr["Message"] in first.msg, detail
    # every message is renderable in both of Falco's shapes
    doc = report.to_json()["falco_load_results"][0]
    assert [e["code"] for e in doc["errors"]] == res.error_codes
    for m in doc["errors"] + doc["warnings"]:
        assert m["context"]["locations"][0]["item_type"] == "rules content"
        assert m["context"]["snippet"].endswith("\n")
