"""The scenario catalogue and the purple-<runid>-<scenario> container names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from falco_deploy.errors import FalcoDeployError
from falco_deploy.verify.scenarios import (
    ContainerRef,
    container_name,
    load_catalogue,
    new_run_id,
    parse_catalogue,
    parse_container_name,
    rule_names,
)

ISSUE_SCENARIOS = ("release_agent", "nsenter", "privileged_mount", "docker_sock",
                   "reverse_shell", "sensitive_file_read")


def test_catalogue_has_the_six_attacks_and_a_benign_set(catalogue):
    assert tuple(s.name for s in catalogue.attacks) == ISSUE_SCENARIOS
    assert len(catalogue.benign) >= 4
    assert all(s.expected_rules for s in catalogue.attacks)
    assert all(not s.expected_rules for s in catalogue.benign)
    assert all(s.description for s in catalogue.scenarios)


def test_expected_rules_are_the_rules_falco_deploy_deploys(catalogue, repo_root):
    ours = repo_root / "rules" / "falco-deploy_rules.yaml"
    if not ours.is_file():
        pytest.skip("rules/falco-deploy_rules.yaml not present")
    missing = sorted(catalogue.our_rules - rule_names(ours))
    assert not missing, f"scenarios.yaml expects rules that {ours.name} does not define: {missing}"


def test_corpus_catalogue_expects_what_fired_on_each_scenario(corpus_catalogue, corpus, run):
    # The test catalogue is only worth something if real Falco raised exactly those rules on the
    # container of the matching scenario.
    for scenario in corpus_catalogue.attacks:
        name = run.name(scenario.name)
        fired = {a.rule for a in corpus.alerts if a.container_name == name}
        assert set(scenario.expected_rules) <= fired, scenario.name


def test_run_id_and_container_name_round_trip():
    now = datetime(2026, 11, 29, 20, 8, 8, tzinfo=timezone(timedelta(hours=1)))
    run_id = new_run_id(now, suffix="3fa9c1")
    assert run_id == "20261129T190808-3fa9c1"  # UTC
    name = container_name(run_id, "sensitive_file_read")
    assert name == "purple-20261129T190808-3fa9c1-sensitive_file_read"
    assert parse_container_name(name) == ContainerRef(run_id, "sensitive_file_read")
    assert parse_container_name("/" + name) == ContainerRef(run_id, "sensitive_file_read")


def test_run_ids_are_unique():
    now = datetime(2026, 11, 29, 19, 8, 8, tzinfo=timezone.utc)
    assert len({new_run_id(now) for _ in range(50)}) == 50


def test_corpus_container_names_parse(corpus):
    refs = {parse_container_name(a.container_name) for a in corpus.alerts}
    assert {ref.run_id for ref in refs} == {"20261129T190808-17793"}
    assert sorted(ref.scenario for ref in refs) == [
        "01_release_agent", "02_setns_nsenter", "03_privileged_mount", "04_docker_sock",
        "05_reverse_shell", "06_sensitive_read"]


@pytest.mark.parametrize("name", [
    None, "", "host", "nginx", "purple", "purple-20261129T190808-17793",
    "purple-2026-11-29-x-release_agent", "purple-20261129T190808-17793-Release",
    "blue-20261129T190808-17793-release_agent", "xpurple-20261129T190808-17793-nsenter",
])
def test_other_container_names_do_not_parse(name):
    assert parse_container_name(name) is None


@pytest.mark.parametrize(("run_id", "scenario"), [
    ("20261129T190808-17793", "bad-name"), ("20261129T190808-17793", "Upper"),
    ("2026-11-29", "nsenter"), ("20261129T190808-", "nsenter"),
])
def test_container_name_rejects_what_would_not_parse_back(run_id, scenario):
    with pytest.raises(ValueError):
        container_name(run_id, scenario)


def test_select(catalogue):
    assert [s.name for s in catalogue.select(["docker_sock", "nsenter", "docker_sock"])] == [
        "docker_sock", "nsenter"]
    assert catalogue.select(None) == catalogue.scenarios
    with pytest.raises(FalcoDeployError) as caught:
        catalogue.select(["nope"])
    assert "release_agent" in caught.value.hint


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "top level"),
    ("version: 2\nscenarios: {a: {expected_rules: [r]}}", "unsupported version"),
    ("version: 1\nscenarios: {a: {}}", "needs expected_rules"),
    ("version: 1\nscenarios: {a-b: {expected_rules: [r]}}", "invalid scenario name"),
    ("version: 1\nscenarios: {a: {expected_rules: r}}", "list of rule names"),
    ("version: 1\nscenarios: {a: {expected_rules: [r], extra: 1}}", "unknown keys"),
    ("version: 1\nbenign: {a: {expected_rules: [r]}}", "expects no rules"),
    ("version: 1\nscenarios: {a: {expected_rules: [r]}}\nbenign: {a: {}}", "defined twice"),
    ("version: 1", "no scenarios"),
])
def test_invalid_catalogues_are_usage_errors(text, message):
    with pytest.raises(FalcoDeployError) as caught:
        parse_catalogue(yaml.safe_load(text), "site.yaml")
    assert message in caught.value.message
    assert caught.value.message.startswith("site.yaml: ")


def test_load_catalogue_from_a_site_file(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("version: 1\nscenarios:\n  nsenter:\n    expected_rules: [Site Rule]\n")
    catalogue = load_catalogue(path)
    assert catalogue.our_rules == {"Site Rule"}
    with pytest.raises(FalcoDeployError):
        load_catalogue(tmp_path / "missing.yaml")


def test_rule_names_reads_a_real_rules_file(official_rules):
    names = rule_names(official_rules)
    assert {"Read sensitive file untrusted", "Detect release_agent File Container Escapes",
            "Redirect STDOUT/STDIN to Network Connection in Container"} <= names
    assert not any(name.startswith("user_known") for name in names)  # macros are not rules
