"""`falco-deploy verify` in-process: the Ansible run is replaced by a replay of the host reports
as ansible-runner delivers them. A host's report is what the falco_verify role reports: its
judge run on the alerts of a real Falco 0.40 verify run (../shared/corpus/falco-real-0.40)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_project import hosts_inventory
from click.testing import CliRunner
from verify_support import JUDGE, RUN_ID, recorded_runs

from falco_deploy import runner as runner_mod
from falco_deploy.cli import cli
from falco_deploy.exitcodes import ExitCode
from falco_deploy.verify import catalogue as catalogue_mod

ROOT = Path(__file__).resolve().parents[3]
ATTACKS = ["release_agent", "nsenter", "privileged_mount", "docker_sock", "reverse_shell",
           "sensitive_file_read"]


@pytest.fixture
def inventory(tmp_path):
    return hosts_inventory(tmp_path, "vm")


@pytest.fixture(autouse=True)
def fixed_run_id(monkeypatch, tmp_path):
    monkeypatch.setattr(catalogue_mod, "new_run_id", lambda: RUN_ID)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("FALCO_DEPLOY_PROJECT_DIR", raising=False)


def host_report(catalogue, lines, runs=None, **overrides) -> dict:
    """falco_deploy_result as roles/falco_verify/tasks/report.yml builds it after its judge."""
    runs = recorded_runs(catalogue) if runs is None else runs
    judged = JUDGE.judge_lines(runs, JUDGE.our_rules(catalogue), 30, lines)
    report = {"status": judged["status"], "reason": judged["reason"], "findings": [],
              "verify_run_id": RUN_ID, "docker_version": "20.10.24", "image": "img:1",
              "scenarios": judged["scenarios"], "counts": judged["counts"],
              "alert_file": "/var/log/falco/events.json", "alert_file_exists": True,
              "alert_file_events": [], "alerts_ignored": judged["alerts_ignored"],
              "internal_documents": judged["internal_documents"], "containers_removed": [],
              "stale_containers_removed": [],
              "forwarding": {"status": "not_configured", "transport": "none", "alerts": 0,
                             "reason": "no forwarding set up (falco_forwarding_transport none)"}}
    report.update(overrides)
    return report


def not_run_report(reason: str) -> dict:
    return {"status": "not_run", "reason": reason, "findings": [], "verify_run_id": RUN_ID,
            "docker_version": None, "image": "img:1", "scenarios": [], "counts": {}}


def _event(kind, **data):
    return {"event": kind, "event_data": {"playbook": "playbooks/verify.yml", **data}}


def events_for(reports: dict[str, dict], unreachable: dict[str, str] | None = None,
               failed: tuple[str, ...] = ()):
    events = [_event("playbook_on_task_start", task="Report the result")]
    for host, report in reports.items():
        events.append(_event("runner_on_ok", host=host, task="Report the result",
                             res={"changed": False, "falco_deploy_result": report}))
    for host in failed:
        events.append(_event("runner_on_failed", host=host,
                             task="Fail the host on which an attack went undetected",
                             res={"msg": "missed: docker_sock"}))
    for host, msg in (unreachable or {}).items():
        events.append(_event("runner_on_unreachable", host=host, task="Check the Docker engine",
                             res={"msg": msg, "unreachable": True}))
    processed = {host: 1 for host in [*reports, *(unreachable or {})]}
    events.append(_event("playbook_on_stats", processed=processed,
                         dark={host: 1 for host in unreachable or {}},
                         failures={host: 1 for host in failed}))
    return events


class FakeRunner:
    def __init__(self, events, rc=0, status="successful"):
        self.events, self.rc, self.status = events, rc, status
        self.calls: list[runner_mod.PlaybookRun] = []

    def __call__(self, run, on_event=None):
        self.calls.append(run)
        run.artifacts_dir.mkdir(parents=True, exist_ok=True)
        (run.artifacts_dir / "stdout").write_text("")
        for event in self.events:
            on_event(event)
        return runner_mod.RunnerOutcome(self.status, self.rc, run.artifacts_dir)


def invoke(monkeypatch, fake, inventory, *args):
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    return CliRunner().invoke(cli, ["verify", "-i", str(inventory), "--project-dir", str(ROOT),
                                    *args], catch_exceptions=False)


def test_the_recorded_run_is_verified_end_to_end(monkeypatch, inventory, catalogue,
                                                 recorded_lines, tmp_path):
    fake = FakeRunner(events_for({"vm": host_report(catalogue, recorded_lines)}))
    junit = tmp_path / "out" / "junit.xml"
    result = invoke(monkeypatch, fake, inventory, "--output", "json", "--junit", str(junit))
    assert result.exit_code == ExitCode.OK, result.output
    envelope = json.loads(result.stdout)
    assert envelope["schema"] == "falco-deploy.result/v1" and envelope["command"] == "verify"
    assert envelope["exit_status"] == "ok"
    assert envelope["verify"] == {"run_id": RUN_ID, "timeout_s": 30.0,
                                  "scenarios": [s["name"] for s in catalogue],
                                  "catalogue": "", "junit": str(junit)}
    host = envelope["hosts"][0]
    assert host["verdict"] == "verified"
    assert host["reason"] == "6 of 6 attacks detected; 4 benign clean"
    assert envelope["summary"]["verified"] == 1
    assert envelope["summary"]["scenarios"] == {"detected": 6, "missed": 0, "not_run": 0,
                                                "clean": 4, "false_positive": 0}
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("10", "0", "0")


def test_the_text_report_names_the_rules_and_what_covered_ours(monkeypatch, inventory,
                                                               catalogue, recorded_lines):
    fake = FakeRunner(events_for({"vm": host_report(catalogue, recorded_lines)}))
    result = invoke(monkeypatch, fake, inventory)
    assert result.exit_code == ExitCode.OK, result.output
    out = result.output
    assert "verified: 6 of 6 attacks detected; 4 benign clean" in out
    assert "Detect release_agent File Container Escapes (not ours" in out
    assert ("our Container Escape via cgroup release_agent Write: silent, covered by Detect "
            "release_agent File Container") in out  # the cell wraps after this
    assert "Namespace Change via setns to Host (ours" in out
    assert "Exit status: ok (0)" in out


def test_a_rule_that_never_fires_is_a_missed_detection(monkeypatch, inventory, catalogue,
                                                       recorded_lines):
    rule = "Docker Socket Accessed From Container"
    lines = [line for line in recorded_lines if json.loads(line)["rule"] != rule]
    fake = FakeRunner(events_for({"vm": host_report(catalogue, lines)}, failed=("vm",)))
    result = invoke(monkeypatch, fake, inventory)
    assert result.exit_code == ExitCode.DETECTION_MISSED == 7
    assert "missed: 5 of 6 attacks detected; missed: docker_sock" in result.output
    assert f"no alert with T1610/T1611 on its container; silent: {rule}" in result.output
    assert "Exit status: detection_missed (7)" in result.output


def test_catalogue_names_and_run_id_reach_the_playbook(monkeypatch, inventory, catalogue,
                                                       recorded_lines, tmp_path):
    site = tmp_path / "site.yml"
    site.write_text((ROOT / "roles" / "falco_verify" / "files" / "scenarios.yml").read_text())
    fake = FakeRunner(events_for({"vm": host_report(catalogue, recorded_lines)}))
    invoke(monkeypatch, fake, inventory, "--scenario", "nsenter", "--scenario", "shell_loop",
           "--timeout", "5", "-e", "falco_verify_image=site/purple:1", "--catalogue", str(site))
    run = fake.calls[0]
    assert run.playbook == ROOT / "playbooks" / "verify.yml"
    ours = json.loads(run.extra_vars[0])  # first: the operator's -e may still override
    assert ours == {"falco_verify_catalogue": str(site), "falco_verify_run_id": RUN_ID,
                    "falco_verify_scenario_names": ["nsenter", "shell_loop"],
                    "falco_verify_timeout": 5.0}
    assert run.extra_vars[1] == "falco_verify_image=site/purple:1"


def test_hosts_that_could_not_run(monkeypatch, inventory, catalogue, recorded_lines, tmp_path):
    fake = FakeRunner(events_for(
        {"vm": host_report(catalogue, recorded_lines),
         "plain": not_run_report("no docker: the docker CLI is not installed")},
        unreachable={"gone": "Failed to connect to the host via ssh"}))
    junit = tmp_path / "junit.xml"
    result = invoke(monkeypatch, fake, inventory, "--output", "json", "--junit", str(junit))
    assert result.exit_code == ExitCode.PARTIAL
    hosts = {h["host"]: h for h in json.loads(result.stdout)["hosts"]}
    assert (hosts["plain"]["verdict"], hosts["plain"]["reason"]) == (
        "not run", "no docker: the docker CLI is not installed")
    assert hosts["gone"]["verdict"] == "unreachable"
    suites = {s.get("name"): s for s in ET.parse(junit).getroot()}
    # A host that ran nothing skips the whole catalogue.
    everything = str(len(catalogue))
    assert (suites["plain"].get("tests"), suites["plain"].get("skipped")) == (everything,
                                                                             everything)
    assert suites["gone"].get("skipped") == everything


def test_a_scenario_the_kernel_refused_is_not_run_and_the_run_incomplete(
        monkeypatch, inventory, catalogue, recorded_lines):
    runs = recorded_runs(catalogue)
    runs[0].update(not_run_reason="the kernel refused a private cgroup v1 hierarchy "
                                  "(permission denied.)")
    fake = FakeRunner(events_for({"vm": host_report(catalogue, recorded_lines, runs=runs)}))
    result = invoke(monkeypatch, fake, inventory, "--output", "json")
    assert result.exit_code == ExitCode.PARTIAL
    host = json.loads(result.stdout)["hosts"][0]
    assert host["verdict"] == "incomplete"
    assert host["scenarios"][0]["status"] == "not_run"
    assert host["scenarios"][0]["reason"].startswith("the kernel refused")


def test_nothing_ran_anywhere_is_a_failure(monkeypatch, inventory):
    fake = FakeRunner(events_for({"vm": not_run_report("image missing: img:1 is not on the "
                                                       "host (it is never pulled)")}))
    result = invoke(monkeypatch, fake, inventory)
    assert result.exit_code == ExitCode.FAILED
    assert "image missing: img:1" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "nope"], "unknown scenario(s) nope"),
    (["--timeout", "nan"], "--timeout must be a number of seconds from 0 to 3600"),
])
def test_usage_errors_stop_before_any_host(monkeypatch, inventory, args, message):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, *args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.output
    assert fake.calls == []


def test_a_bad_site_catalogue_is_refused_before_any_host(monkeypatch, inventory, tmp_path):
    path = tmp_path / "bare.yml"
    path.write_text("version: 1\nscenarios:\n  x: {techniques: [T1611], expected_rules: [R]}\n")
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, "--catalogue", str(path))
    assert result.exit_code == ExitCode.USAGE
    assert f"{path}: scenarios.x.script must be a shell script" in result.output
    assert fake.calls == []


def test_no_host_matched(monkeypatch, inventory):
    fake = FakeRunner([_event("playbook_on_no_hosts_matched"),
                       _event("playbook_on_stats", processed={})])
    result = invoke(monkeypatch, fake, inventory, "--limit", "web*")
    assert result.exit_code == ExitCode.FAILED
    assert "no host matched the inventory and --limit web*" in result.output


def test_an_unwritable_junit_file_is_refused_before_the_run(monkeypatch, inventory, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, "--junit", str(blocker / "junit.xml"))
    assert result.exit_code == ExitCode.USAGE
    assert "--junit" in result.output and "cannot be written" in result.output
    assert fake.calls == []


def test_verify_help_lists_exit_codes():
    result = CliRunner().invoke(cli, ["verify", "--help"])
    assert result.exit_code == 0
    assert "7  detection missed" in result.output


def test_json_output_has_the_envelope_when_a_usage_error_stops_the_run(monkeypatch, inventory):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, "--scenario", "nope", "--output", "json")
    assert result.exit_code == ExitCode.USAGE
    doc = json.loads(result.stdout)
    assert doc["schema"] == "falco-deploy.result/v1" and doc["command"] == "verify"
    assert doc["exit_code"] == ExitCode.USAGE and doc["exit_status"] == "usage"
    assert "unknown scenario(s) nope" in doc["error"]
    assert doc["hosts"] == [] and fake.calls == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e300", "3601"])
def test_a_timeout_out_of_range_is_a_usage_error_before_any_run(monkeypatch, inventory, value):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, "--timeout", value)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert fake.calls == []
    assert "Traceback" not in result.output


def test_an_unwritable_junit_is_a_usage_error_before_any_run(monkeypatch, inventory, tmp_path):
    for bad in (tmp_path, "/proc/fd-junit.xml"):
        fake = FakeRunner([])
        result = invoke(monkeypatch, fake, inventory, "--junit", str(bad))
        assert result.exit_code == ExitCode.USAGE, result.output
        assert fake.calls == []
