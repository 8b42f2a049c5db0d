"""Mutation fuzzing: valid rules files turned into near-valid ones.

Each example takes a valid file (our detections, or one of the valid case files) and applies a
few mutations of the kinds that real edits produce: a typo in a field, an event type, an
operator or a value, a value of the wrong type, a missing or an unknown key, odd YAML. No oracle
is needed for the invariants checked: the validator never raises, always produces Falco's JSON
document, uses only Falco's error and warning codes, and its exit status agrees with the
per-file `successful` flags (exit 1 exactly when a file is not successful).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from falco_deploy.rules_engine import validate
from falco_deploy.rules_engine.results import ERROR_STRINGS, WARNING_STRINGS

ROOT = Path(__file__).resolve().parents[3]
CASES = Path(__file__).parent / "cases"
SEEDS = [ROOT / "rules" / "falco-deploy_rules.yaml"] + sorted(
    p for p in CASES.glob("*.yaml")
    if re.search(r"^# Expect: ok\s*$", p.read_text(encoding="utf-8"), re.M))
UPSTREAM = ROOT / "wrapper" / "falco_deploy" / "rules_engine" / "data" / "falco_rules-0.40.yaml"

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _typo(text: str, draw, pattern: re.Pattern) -> str:
    spots = list(pattern.finditer(text))
    if not spots:
        return text
    spot = draw(st.sampled_from(spots))
    word = spot.group()
    i = draw(st.integers(0, max(len(word) - 1, 0)))
    kind = draw(st.sampled_from(["drop", "double", "swap", "upper"]))
    if kind == "drop":
        new = word[:i] + word[i + 1:]
    elif kind == "double":
        new = word[:i] + word[i] + word[i:]
    elif kind == "swap" and i + 1 < len(word):
        new = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    else:
        new = word.upper()
    return text[:spot.start()] + new + text[spot.end():]


VALUE_SWAPS = [("= ", "= 0x1f "), ("= ", "= yes "), ("in (", "in ((("), (" and ", " and and "),
               (" = ", " =~ "), ("contains", "contain"), ("startswith", "startwith"),
               ("evt.type", "evt.typ"), ("proc.name", "proc.nam"), ("fd.name", "fd.name["),
               ("[", "[-1"), ("(", ""), (")", ""), ("'", ""), ('"', "")]
KEY_EDITS = ["drop", "unknown", "wrong_type", "null"]


@st.composite
def mutated(draw) -> str:
    seed = draw(st.sampled_from(SEEDS))
    text = seed.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["typo", "value", "key", "yaml"]))
        if kind == "typo":
            text = _typo(text, draw, _WORD)
        elif kind == "value":
            old, new = draw(st.sampled_from(VALUE_SWAPS))
            positions = [m.start() for m in re.finditer(re.escape(old), text)]
            if positions:
                at = draw(st.sampled_from(positions))
                text = text[:at] + new + text[at + len(old):]
        elif kind == "key":
            try:
                items = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if not isinstance(items, list) or not items:
                continue
            item = draw(st.sampled_from([i for i in items if isinstance(i, dict)] or [{}]))
            keys = list(item)
            edit = draw(st.sampled_from(KEY_EDITS))
            if edit == "unknown":
                item[draw(st.sampled_from(["junk", "conditon", "prio", "tag"]))] = "x"
            elif keys:
                key = draw(st.sampled_from(keys))
                if edit == "drop":
                    del item[key]
                elif edit == "wrong_type":
                    item[key] = draw(st.sampled_from([[1, 2], {"a": 1}, 7, True]))
                else:
                    item[key] = None
            text = yaml.safe_dump(items, sort_keys=False)
        else:
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            at = draw(st.integers(0, len(lines) - 1))
            odd = draw(st.sampled_from(["\t", "  ", ": ", "- ", "&a ", "*a ", "? ", "{", "}",
                                        "---\n", "%YAML 1.1\n", "!!binary ", "\x00", "#"]))
            lines[at] = odd + lines[at]
            text = "".join(lines)
    return text


def _check(report) -> None:
    doc = json.loads(report.to_json_text())
    results = doc["falco_load_results"]
    assert results, doc
    for res in results:
        assert {e["code"] for e in res["errors"]} <= set(ERROR_STRINGS)
        assert {w["code"] for w in res["warnings"]} <= set(WARNING_STRINGS)
        assert res["successful"] == (not res["errors"])
    # a fatal stop (an unsatisfied required_plugin_versions) exits 1 whatever the files' flags
    ok = all(r["successful"] for r in results) and report.fatal is None
    assert report.exit_code == (0 if ok else 1)
    report.to_text()
    report.warnings_text()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from(["0.40", "0.44"]))
def test_a_near_valid_file_gets_a_verdict(tmp_path_factory, text, version):
    path = tmp_path_factory.mktemp("mut") / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    _check(validate([str(path)], falco_version=version))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_near_valid_file_after_the_upstream_rules_gets_a_verdict(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("mut") / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    _check(validate([str(path)], base=[str(UPSTREAM)], falco_version="0.40"))
