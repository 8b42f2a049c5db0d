"""The rule fixtures cover the verify catalogue: every attack variant has a recording whose
calls must fire its rule, every benign scenario one whose calls must fire none of ours, every
technique has at least three variants, and the coverage table of rules/README.md says so."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = yaml.safe_load((ROOT / "roles" / "falco_verify" / "files" / "scenarios.yml")
                           .read_text())
TESTS = ROOT / "rules" / "tests"
FIXTURES = [fx for path in sorted(TESTS.glob("*.yaml"))
            for fx in yaml.safe_load(path.read_text())["fixtures"]]
OURS = {item["rule"]: item for item in yaml.safe_load(
    (ROOT / "rules" / "falco-deploy_rules.yaml").read_text()) if "rule" in item}


def _trace_fixtures(scenario: str) -> list[dict]:
    return [fx for fx in FIXTURES if "strace" in fx
            and fx["strace"]["file"] == f"traces/{scenario}.strace"]


def _fires(fx: dict) -> list[str]:
    fires = fx.get("fires") or []
    return [fires] if isinstance(fires, str) else fires


def test_every_attack_variant_has_a_recording_that_must_fire_its_rule():
    missing = []
    for name, sc in CATALOGUE["scenarios"].items():
        (rule,) = sc["expected_rules"]
        if not any(rule in _fires(fx) for fx in _trace_fixtures(name)):
            missing.append(name)
    assert not missing


def test_every_recording_of_an_attack_also_says_its_other_calls_are_quiet():
    for name in CATALOGUE["scenarios"]:
        assert any(fx.get("quiet") for fx in _trace_fixtures(name)), name


def test_every_benign_scenario_has_a_recording_that_must_fire_none_of_ours():
    missing = [name for name in CATALOGUE["benign"]
               if not any(fx.get("quiet") for fx in _trace_fixtures(name))]
    assert not missing


def test_every_technique_has_at_least_three_variants():
    # one rule of ours per technique: its scenarios are the technique's variants
    per_rule = Counter(sc["expected_rules"][0] for sc in CATALOGUE["scenarios"].values())
    assert set(per_rule) == set(OURS), "every rule of ours has scenarios"
    assert all(n >= 3 for n in per_rule.values()), per_rule


def test_every_recording_is_used_by_a_fixture():
    used = {fx["strace"]["file"] for fx in FIXTURES if "strace" in fx}
    recorded = {f"traces/{p.name}" for p in (TESTS / "traces").glob("*.strace")}
    assert recorded <= used, sorted(recorded - used)


def test_the_readme_coverage_table_lists_every_variant_with_its_rule():
    readme = (ROOT / "rules" / "README.md").read_text()
    table = readme.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for name, sc in CATALOGUE["scenarios"].items():
        row = [r for r in rows if f"`{name}`" in r]
        assert row, f"{name} is not in the coverage table"
        assert sc["expected_rules"][0] in row[0], (name, row[0])
