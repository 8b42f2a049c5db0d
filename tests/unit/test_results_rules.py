"""Verdicts, summaries and exit codes of rules deploy, rollback and status (no Ansible)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from install_events import failed, ok, recorded, report, start, stats, unreachable
from rules_events import RELEASE_NEW, RELEASE_OLD, SHA_NEW, rules_report

from falco_deploy.exitcodes import ExitCode
from falco_deploy.results import EventCollector, RunResult, Verdict, profile_for

NOW = datetime(2026, 11, 29, 20, 0, tzinfo=timezone.utc)


def collect(command, events, check_mode=False):
    collector = EventCollector(check_mode=check_mode, command=command)
    for event in events:
        collector.feed(event)
    return collector


def verdicts(command, events, check_mode=False):
    return {h.host: (h.verdict, h.reason)
            for h in collect(command, events, check_mode).results()}


def run_result(command, events, check_mode=False):
    hosts = collect(command, events, check_mode).results()
    return RunResult(command, hosts, "/state/runs/x", check_mode, NOW, NOW)


@pytest.mark.parametrize("command", ["rules deploy", "rollback"])
def test_deploy_verdicts(command):
    events = [
        ok("a", "Switch the release", changed=True), rules_report("a"),
        rules_report("b"),
        # The role reports the refusal, then fails the host so that --serial stops.
        rules_report("c", status="refused", reason="falco -V: rule 'X': Invalid\nmore",
                     release=RELEASE_OLD),
        failed("c", "Stop when the host refused the release", "refused"),
        ok("d", "Switch the release", changed=True),
        rules_report("d", status="rolled_back", reason="unit inactive after reload",
                     release=RELEASE_OLD),
        failed("e", "Stage the release", "No space left on device"),
        unreachable("f", "Gather", "Failed to connect to the host via ssh: refused"),
        report("g", status="skipped", reason="BTF: missing"),
        stats(failures={"c": 1, "e": 1}, dark={"f": 1},
              processed={h: 1 for h in "abcdefg"}),
    ]
    got = verdicts(command, events)
    assert got == {
        "a": (Verdict.DEPLOYED, ""),
        "b": (Verdict.UNCHANGED, ""),
        "c": (Verdict.REFUSED, "falco -V: rule 'X': Invalid"),
        "d": (Verdict.ROLLED_BACK, "unit inactive after reload"),
        "e": (Verdict.FAILED, "Stage the release: No space left on device"),
        "f": (Verdict.UNREACHABLE, "Failed to connect to the host via ssh: refused"),
        "g": (Verdict.SKIPPED, "BTF: missing"),
    }


def test_refused_without_reason_falls_back_to_the_failing_task_message():
    events = [rules_report("c", status="refused"), failed("c", "Stop", "set refused by falco -V"),
              stats(failures={"c": 1}, processed={"c": 1})]
    assert verdicts("rules deploy", events)["c"] == (Verdict.REFUSED, "set refused by falco -V")


def test_check_mode_says_would_change():
    events = [ok("a", "Switch the release", changed=True), rules_report("a")]
    assert verdicts("rules deploy", events, check_mode=True)["a"][0] == Verdict.WOULD_CHANGE


def test_hosts_of_later_batches_are_not_run():
    events = [start("a", "Stage"), rules_report("a", status="refused", reason="bad"),
              failed("a", "Stop", "refused"), stats(failures={"a": 1}, processed={"a": 1})]
    collector = collect("rules deploy", events)
    collector.expect_hosts(["a", "b", "c"], "not run: an earlier batch failed")
    got = {h.host: h for h in collector.results()}
    assert list(got) == ["a", "b", "c"]
    assert got["a"].verdict == Verdict.REFUSED
    assert got["b"].verdict == got["c"].verdict == Verdict.NOT_RUN
    assert got["b"].reason == "not run: an earlier batch failed"
    run = RunResult("rules deploy", list(got.values()), "/x", False, NOW, NOW)
    assert run.exit_code == ExitCode.FAILED
    assert run.summary()["not_run"] == 2


def test_expected_hosts_that_ran_keep_their_verdict():
    events = [ok("a", "Switch", changed=True), rules_report("a"),
              stats(processed={"a": 1})]
    collector = collect("rules deploy", events)
    collector.expect_hosts(["a"], "not run")
    assert [h.verdict for h in collector.results()] == [Verdict.DEPLOYED]


def test_status_verdicts_and_drift_exit_code():
    events = [rules_report("a"),
              rules_report("b", drift=True,
                           drift_files=["/etc/falco/rules.d/falco-deploy_rules.yaml"]),
              stats(processed={"a": 1, "b": 1})]
    run = run_result("status", events)
    by_host = {h.host: h for h in run.hosts}
    assert by_host["a"].verdict == Verdict.IN_SYNC
    assert by_host["b"].verdict == Verdict.DRIFTED
    assert "falco-deploy_rules.yaml" in by_host["b"].reason
    assert run.exit_code == ExitCode.DRIFT == 6
    assert run.to_envelope()["exit_status"] == "drift"


def test_status_failure_outranks_drift():
    events = [rules_report("b", drift=True, drift_files=["x"]),
              unreachable("c", "Read", "gone"), stats(dark={"c": 1}, processed={"b": 1, "c": 1})]
    assert run_result("status", events).exit_code == ExitCode.PARTIAL
    events = [rules_report("a"), rules_report("b")]
    assert run_result("status", events).exit_code == ExitCode.OK


DOWN = "falco-modern-bpf.service inactive (dead): Falco is not running"


def test_status_tells_falco_down_missing_and_rules_missing_apart():
    events = [rules_report("a"),
              rules_report("b", status="falco_down", reason=DOWN),
              rules_report("c", status="no_falco",
                           reason="no falco binary on this host (Falco is not installed)"),
              rules_report("d", status="rules_missing",
                           reason="/etc/falco/rules.d is a dangling symlink (to /gone): Falco "
                                  "loads no rules from it"),
              rules_report("e", status="falco_down", reason="falco-modern-bpf.service "
                           "activating (auto-restart): restarting in a loop (7 restarts)"),
              stats(processed={h: 1 for h in "abcde"})]
    run = run_result("status", events)
    got = {h.host: (h.verdict, h.reason) for h in run.hosts}
    assert got["a"] == (Verdict.IN_SYNC, "")
    assert got["b"] == (Verdict.FALCO_DOWN, DOWN)
    assert got["c"][0] == Verdict.NO_FALCO
    assert got["d"][0] == Verdict.RULES_MISSING and "dangling" in got["d"][1]
    assert got["e"][0] == Verdict.FALCO_DOWN and "restarting in a loop" in got["e"][1]
    doc = run.to_envelope()
    assert doc["exit_code"] == ExitCode.UNPROTECTED == 8
    assert doc["exit_status"] == "unprotected"
    assert doc["hosts"][1]["reason"] == DOWN
    assert (doc["summary"]["falco_down"], doc["summary"]["no_falco"],
            doc["summary"]["rules_missing"]) == (2, 1, 1)


def test_a_dead_falco_outranks_drift_and_unreachable_hosts():
    events = [rules_report("a", drift=True, drift_files=["x"]),
              rules_report("b", status="falco_down", reason=DOWN),
              unreachable("c", "Read", "gone"),
              stats(dark={"c": 1}, processed={"a": 1, "b": 1, "c": 1})]
    assert run_result("status", events).exit_code == ExitCode.UNPROTECTED


@pytest.mark.parametrize("command", ["rules deploy", "rollback"])
def test_a_deploy_that_went_live_on_a_stopped_falco_says_so(command):
    events = [ok("a", "Deploy the release", changed=True),
              rules_report("a", status="falco_down", reason=DOWN),
              rules_report("b", status="falco_down", reason=DOWN),
              rules_report("c", status="no_falco", reason="no falco binary"),
              stats(processed={"a": 1, "b": 1, "c": 1})]
    run = run_result(command, events)
    got = {h.host: h.verdict for h in run.hosts}
    assert got == {"a": Verdict.DEPLOYED_FALCO_DOWN, "b": Verdict.FALCO_DOWN,
                   "c": Verdict.NO_FALCO}
    assert run.exit_code == ExitCode.UNPROTECTED
    assert run.to_envelope()["summary"]["deployed_falco_down"] == 1


def test_status_json_lists_what_each_host_runs():
    events = [rules_report("a", drift=True, drift_files=["/etc/falco/rules.d/x.yaml"])]
    doc = json.loads(json.dumps(run_result("status", events).to_envelope()))
    host = doc["hosts"][0]
    assert host["falco_version"] == "0.44.0"
    assert host["engine_kind"] == "modern_ebpf"
    assert host["unit_state"] == "active"
    assert host["release"] == RELEASE_NEW and host["release_sha256"] == SHA_NEW
    assert host["drift"] is True and host["drift_files"] == ["/etc/falco/rules.d/x.yaml"]
    assert doc["summary"] == {"hosts": 1, "in_sync": 0, "drifted": 1, "no_falco": 0,
                              "falco_down": 0, "rules_missing": 0, "skipped": 0,
                              "failed": 0, "unreachable": 0, "not_run": 0, "changed_tasks": 0}


def test_deploy_envelope_adds_release_keys_and_counts_its_verdicts():
    events = [ok("a", "Switch", changed=True), rules_report("a"),
              rules_report("b", status="refused", reason="bad", release=RELEASE_OLD)]
    doc = run_result("rules deploy", events).to_envelope()
    assert doc["command"] == "rules deploy"
    a = doc["hosts"][0]
    assert (a["release"], a["previous_release"], a["release_sha256"]) == (
        RELEASE_NEW, RELEASE_OLD, SHA_NEW)
    assert doc["summary"] == {"hosts": 2, "deployed": 1, "unchanged": 0, "would_change": 0,
                              "refused": 1, "rolled_back": 0, "deployed_falco_down": 0,
                              "no_falco": 0, "falco_down": 0, "rules_missing": 0, "skipped": 0,
                              "failed": 0, "unreachable": 0, "not_run": 0, "changed_tasks": 1}
    assert doc["exit_code"] == ExitCode.PARTIAL
    assert "validation" not in doc


def test_install_host_json_gains_no_rules_keys():
    run = RunResult("install", collect("install", recorded()).results(), "/x", False, NOW, NOW)
    host = run.to_envelope()["hosts"][0]
    assert "release" not in host and "drift" not in host


def test_unknown_command_has_no_profile():
    with pytest.raises(ValueError):
        profile_for("upgrade")
    assert profile_for("rules deploy").slug == "rules-deploy"


def test_install_that_ends_on_a_stopped_falco_says_so():
    """falco_rules reports last in install: a host whose Falco is down is not "installed"."""
    events = [ok("a", "Install Falco", changed=True),
              rules_report("a", status="falco_down", reason=DOWN),
              stats(processed={"a": 1})]
    run = run_result("install", events)
    assert run.hosts[0].verdict == Verdict.FALCO_DOWN and run.hosts[0].reason == DOWN
    assert run.exit_code == ExitCode.UNPROTECTED
    assert run.to_envelope()["summary"]["falco_down"] == 1
