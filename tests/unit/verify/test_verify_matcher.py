"""Matching the real corpus alerts to scenario runs: fired, missed, late, wrong container."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from falco_deploy.errors import FalcoDeployError
from falco_deploy.verify.alerts import parse_alert_line
from falco_deploy.verify.matcher import (
    CLEAN,
    FALSE_POSITIVE,
    FIRED,
    MISSED,
    NOT_RUN,
    HostRun,
    ScenarioRun,
    build_result,
    match_host,
    to_epoch_ns,
)
from falco_deploy.verify.scenarios import parse_catalogue

# Hand-computed from the corpus: first alert time minus the trigger in conftest.TRIGGERS.
EXPECTED_LATENCY_NS = {
    "release_agent": 633_668_249,  # 19:08:13.133668249 - 19:08:12.5
    "nsenter": 705_556_088,  # 19:08:15.705556088 - 19:08:15.0 (first of ten setns alerts)
    "privileged_mount": 537_948_441,  # 19:08:18.287948441 - 19:08:17.75
    "docker_sock": 602_375_624,  # 19:08:20.852375624 - 19:08:20.25
    "reverse_shell": 537_158_666,  # 19:08:23.537158666 - 19:08:23.0
    "sensitive_file_read": 358_391_578,  # 19:08:26.358391578 - 19:08:26.0
}


def _by_name(host_result):
    return {scenario.scenario: scenario for scenario in host_result.scenarios}


def test_every_scenario_fired_with_exact_latency(corpus, corpus_catalogue, run):
    result = match_host(run.host(), corpus.alerts, corpus_catalogue, timeout_s=30)
    scenarios = _by_name(result)
    assert {name: s.status for name, s in scenarios.items()} == dict.fromkeys(
        EXPECTED_LATENCY_NS, FIRED)
    for name, latency in EXPECTED_LATENCY_NS.items():
        (hit,) = scenarios[name].fired
        assert hit.rule == corpus_catalogue.get(name).expected_rules[0]
        assert hit.latency_ns == latency
        assert hit.latency_s == pytest.approx(latency / 1e9, abs=1e-12)
        assert scenarios[name].missed == () and scenarios[name].late == ()
    assert scenarios["nsenter"].fired[0].count == 10  # setns fires on entry and exit
    assert scenarios["docker_sock"].fired[0].count == 3
    assert result.ignored_alerts == 0 and result.unattributed == ()


def test_unexpected_rules_on_a_scenario_are_listed_as_also_fired(corpus, corpus_catalogue, run):
    result = match_host(run.host(), corpus.alerts, corpus_catalogue)
    sensitive = _by_name(result)["sensitive_file_read"]
    assert sensitive.status == FIRED
    assert [(hit.rule, hit.count) for hit in sensitive.also_fired] == [
        ("Read sensitive file untrusted", 2)]
    assert sensitive.false_positives == ()
    assert all(not s.also_fired for n, s in _by_name(result).items() if n != "sensitive_file_read")


def test_expected_rule_that_never_fired_is_missed(corpus, run):
    # The seed guide's own release_agent rule never fired in the real run (corpus README).
    catalogue = parse_catalogue({"version": 1, "scenarios": {
        "release_agent": {"expected_rules": ["Detect release_agent File Container Escapes",
                                             "Container Escape via cgroup release_agent Write"]},
    }})
    result = match_host(run.host(run.scenario("release_agent")), corpus.alerts, catalogue)
    (scenario,) = result.scenarios
    assert scenario.status == MISSED
    assert scenario.missed == ("Container Escape via cgroup release_agent Write",)
    assert [hit.rule for hit in scenario.fired] == ["Detect release_agent File Container Escapes"]
    # The other five containers belong to this run but to no recorded scenario.
    assert len(result.unattributed) == 21 and result.ignored_alerts == 0


def test_alerts_of_another_run_are_ignored(corpus, corpus_catalogue, run):
    other = "20261129T200000-abc123"
    host = run.host(*(run.scenario(name, name=run.name(name, other))
                      for name in run.containers), run_id=other)
    result = match_host(host, corpus.alerts, corpus_catalogue)
    assert {s.status for s in result.scenarios} == {MISSED}
    assert all(s.fired == () and s.also_fired == () for s in result.scenarios)
    assert result.ignored_alerts == 22 and result.unattributed == ()


def test_wrong_container_is_not_attributed(corpus_objects, corpus_catalogue, run):
    # The same real alert raised in a container outside the run, and on the host itself.
    alerts = []
    for name, cid in (("nginx", "0123456789ab"), ("host", "host")):
        obj = json.loads(json.dumps(corpus_objects[12]))
        obj["output_fields"]["container.name"] = name
        obj["output_fields"]["container.id"] = cid
        alerts.append(parse_alert_line(json.dumps(obj)))
    result = match_host(run.host(run.scenario("docker_sock")), alerts, corpus_catalogue)
    assert result.scenarios[0].status == MISSED
    assert result.ignored_alerts == 2


def test_this_runs_container_of_no_recorded_scenario_is_unattributed(corpus, corpus_catalogue,
                                                                     run):
    result = match_host(run.host(run.scenario("nsenter")), corpus.alerts, corpus_catalogue)
    assert len(result.unattributed) == 22 - 10
    assert result.ignored_alerts == 0


def test_container_id_is_the_fallback_when_the_name_is_unresolved(corpus_objects,
                                                                  corpus_catalogue, run):
    obj = json.loads(json.dumps(corpus_objects[0]))
    obj["output_fields"]["container.name"] = "<NA>"  # metadata not fetched yet
    alert = parse_alert_line(json.dumps(obj))
    full_id = "449ff21b00b7" + "5" * 52  # docker run prints the 64-character id
    matched = match_host(run.host(run.scenario("release_agent", container_id=full_id)),
                         [alert], corpus_catalogue)
    assert matched.scenarios[0].status == FIRED
    assert matched.scenarios[0].fired[0].latency_ns == EXPECTED_LATENCY_NS["release_agent"]
    other = match_host(run.host(run.scenario("release_agent", container_id="1af5ea3a503d")),
                       [alert], corpus_catalogue)
    assert other.scenarios[0].status == MISSED and other.ignored_alerts == 1


def test_alert_after_the_timeout_is_late_not_fired(corpus, corpus_catalogue, run):
    result = match_host(run.host(), corpus.alerts, corpus_catalogue, timeout_s=0.6)
    scenarios = _by_name(result)
    late = {name for name, s in scenarios.items() if s.late}
    assert late == {"release_agent", "nsenter", "docker_sock"}  # 0.634 s, 0.706 s, 0.602 s
    for name in late:
        assert scenarios[name].status == MISSED
        assert scenarios[name].fired == () and scenarios[name].missed == ()
        assert scenarios[name].late[0].latency_ns == EXPECTED_LATENCY_NS[name]
    for name in set(scenarios) - late:
        assert scenarios[name].status == FIRED


def test_timeout_boundary_is_inclusive(corpus, corpus_catalogue, run):
    exact = EXPECTED_LATENCY_NS["sensitive_file_read"] / 1e9
    host = run.host(run.scenario("sensitive_file_read"))
    assert match_host(host, corpus.alerts, corpus_catalogue,
                      timeout_s=exact).scenarios[0].status == FIRED
    assert match_host(host, corpus.alerts, corpus_catalogue,
                      timeout_s=exact - 1e-9).scenarios[0].status == MISSED


def test_our_rules_on_a_benign_scenario_are_false_positives(corpus, corpus_catalogue, run):
    # Treat the cat /etc/shadow container as if it had been the benign /etc/hosts reader.
    benign = run.scenario("sensitive_file_read", name=run.name("sensitive_file_read"))
    benign = replace(benign, scenario="read_etc_hosts")
    quiet = run.scenario("release_agent", name=f"purple-{run.run_id}-99_lifecycle")
    quiet = replace(quiet, scenario="container_lifecycle")
    result = match_host(run.host(benign, quiet), corpus.alerts, corpus_catalogue)
    scenarios = _by_name(result)
    fp = scenarios["read_etc_hosts"]
    assert fp.status == FALSE_POSITIVE
    assert [(h.rule, h.count) for h in fp.false_positives] == [
        ("Read Sensitive Host File From Container", 2)]
    assert [h.rule for h in fp.also_fired] == ["Read sensitive file untrusted"]  # not ours
    assert scenarios["container_lifecycle"].status == CLEAN
    # With an explicit set of our rules, the official one counts as well.
    result = match_host(run.host(benign), corpus.alerts, corpus_catalogue,
                        our_rules={"Read sensitive file untrusted"})
    assert [h.rule for h in result.scenarios[0].false_positives] == [
        "Read sensitive file untrusted"]


def test_not_run_scenarios_and_hosts(corpus, corpus_catalogue, run):
    host = run.host(run.scenario("nsenter"),
                    ScenarioRun.skipped("docker_sock", "no /var/run/docker.sock on host"))
    scenarios = _by_name(match_host(host, corpus.alerts, corpus_catalogue))
    assert scenarios["nsenter"].status == FIRED
    assert scenarios["docker_sock"].status == NOT_RUN
    assert scenarios["docker_sock"].not_run_reason == "no /var/run/docker.sock on host"
    assert scenarios["docker_sock"].fired == ()

    skipped = match_host(run.host(not_run_reason="docker not installed"), corpus.alerts,
                         corpus_catalogue)
    assert {s.status for s in skipped.scenarios} == {NOT_RUN}
    assert {s.not_run_reason for s in skipped.scenarios} == {"docker not installed"}


def test_unknown_or_duplicate_scenarios_are_usage_errors(corpus, corpus_catalogue, run):
    with pytest.raises(FalcoDeployError):
        match_host(run.host(replace(run.scenario("nsenter"), scenario="nope")), corpus.alerts,
                   corpus_catalogue)
    with pytest.raises(FalcoDeployError):
        match_host(run.host(run.scenario("nsenter"), run.scenario("nsenter")), corpus.alerts,
                   corpus_catalogue)


def test_result_json_form(corpus, corpus_catalogue, run):
    other_host = match_host(HostRun("edge-2", run.run_id, (run.scenario("nsenter"),),
                                    "unreachable"), [], corpus_catalogue)
    result = build_result(run.run_id, 30,
                          [match_host(run.host(), corpus.alerts, corpus_catalogue), other_host])
    data = json.loads(result.to_json())
    assert data["run_id"] == run.run_id
    assert data["summary"]["fired"] == 6 and data["summary"]["not_run"] == 1
    assert not result.detections_missed
    vm = data["hosts"][0]
    release = vm["scenarios"][0]
    assert release["status"] == "fired"
    assert release["trigger"] == "2026-11-29T19:08:12.500000000Z"
    assert release["fired"] == [{
        "rule": "Detect release_agent File Container Escapes", "count": 1,
        "first_alert": "2026-11-29T19:08:13.133668249Z", "latency_s": 0.633668249,
        "latency_ns": 633668249}]
    assert data["hosts"][1]["not_run_reason"] == "unreachable"
    with pytest.raises(FalcoDeployError):
        build_result("20261129T000000-x", 30, [other_host])


def test_missed_makes_the_result_fail(corpus, corpus_catalogue, run):
    result = build_result(run.run_id, 0.1,
                          [match_host(run.host(), corpus.alerts, corpus_catalogue, 0.1)])
    assert result.detections_missed
    assert result.summary()["missed"] == 6


@pytest.mark.parametrize("value", [
    1795979292500000000,
    "2026-11-29T19:08:12.5Z",
    datetime(2026, 11, 29, 19, 8, 12, 500000, tzinfo=timezone.utc),
])
def test_trigger_times(value):
    assert to_epoch_ns(value) == 1795979292500000000


def test_naive_trigger_datetime_is_rejected():
    with pytest.raises(ValueError):
        to_epoch_ns(datetime(2026, 11, 29, 19, 8, 12))
