"""`falco-deploy verify` in-process: the Ansible run is replaced by a replay of host reports as
ansible-runner delivers them; the alert lines are the real Falco 0.40 corpus."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner
from corpus_run import CORPUS_CONTAINERS, RUN_ID, TRIGGERS

from falco_deploy import runner as runner_mod
from falco_deploy.cli import cli
from falco_deploy.commands import verify as verify_cmd
from falco_deploy.exitcodes import ExitCode
from falco_deploy.verify.scenarios import Catalogue

SCRIPT = {"docker_args": ["--privileged"], "script": "true"}


def corpus_name(scenario: str) -> str:
    return f"purple-{RUN_ID}-{CORPUS_CONTAINERS[scenario]}"


def catalogue_yaml(catalogue: Catalogue, scripts: bool = True) -> str:
    data: dict = {"version": 1, "scenarios": {}, "benign": {}}
    for scenario in catalogue.scenarios:
        body: dict = {"description": scenario.description or scenario.name}
        if not scenario.benign:
            body["expected_rules"] = list(scenario.expected_rules)
        if scripts:
            body.update(SCRIPT)
        data["benign" if scenario.benign else "scenarios"][scenario.name] = body
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def catalogue_file(tmp_path, corpus_catalogue, run):
    """The corpus catalogue (rules real Falco raised) with a script per scenario."""
    assert run.run_id == RUN_ID and run.containers == CORPUS_CONTAINERS
    assert run.triggers == TRIGGERS
    path = tmp_path / "catalogue.yaml"
    path.write_text(catalogue_yaml(corpus_catalogue))
    return path


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    (root / "roles").mkdir()
    (root / "playbooks" / "verify.yml").write_text("- hosts: all\n")
    return root


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    vm:\n")
    return path


@pytest.fixture(autouse=True)
def fixed_run_id(monkeypatch, tmp_path):
    monkeypatch.setattr(verify_cmd, "new_run_id", lambda: RUN_ID)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("FALCO_DEPLOY_PROJECT_DIR", raising=False)


def _ns(stamp: str) -> int:
    from falco_deploy.verify.alerts import parse_rfc3339

    return parse_rfc3339(stamp)[1]


BENIGN = ("container_lifecycle", "read_etc_hosts")


def verify_runs(scenarios=(*CORPUS_CONTAINERS, *BENIGN), exit_codes=None):
    """What the falco_verify role reports for the corpus run (its container names)."""
    runs = []
    for scenario in scenarios:
        if scenario in CORPUS_CONTAINERS:
            name, trigger = corpus_name(scenario), _ns(TRIGGERS[scenario])
        else:  # benign: ran at the end of the corpus run
            name, trigger = f"purple-{RUN_ID}-{scenario}", _ns("2026-11-29T19:08:30Z")
        runs.append({"scenario": scenario, "container_name": name,
                     "container_id": "f" * 64, "trigger_ns": trigger,
                     "exit_code": (exit_codes or {}).get(scenario, 0),
                     "output": "done\n", "duration_s": 0.8, "not_run_reason": None})
    return runs


def host_report(**overrides):
    report = {"status": "ok", "reason": "", "not_run_reason": None, "verify_run_id": RUN_ID,
              "docker_version": "20.10.24", "image": "img:1", "verify_runs": verify_runs(),
              "containers_removed": [], "alert_file": "/var/log/falco/events.json",
              "alert_file_exists": True, "alert_file_events": [], "alert_lines": [],
              "alert_lines_dropped": 0, "other_alerts": 0}
    report.update(overrides)
    return report


def _event(kind, **data):
    return {"event": kind, "event_data": {"playbook": "playbooks/verify.yml", **data}}


def events_for(reports: dict[str, dict], unreachable: dict[str, str] | None = None):
    events = [_event("playbook_on_task_start", task="Report the result")]
    for host, report in reports.items():
        events.append(_event("runner_on_ok", host=host, task="Report the result",
                             res={"changed": False, "falco_deploy_result": report}))
    for host, msg in (unreachable or {}).items():
        events.append(_event("runner_on_unreachable", host=host, task="Check the Docker engine",
                             res={"msg": msg, "unreachable": True}))
    processed = {host: 1 for host in [*reports, *(unreachable or {})]}
    events.append(_event("playbook_on_stats", processed=processed,
                         dark={host: 1 for host in unreachable or {}}, failures={}))
    return events


class FakeRunner:
    def __init__(self, events, rc=0, status="successful"):
        self.events, self.rc, self.status = events, rc, status
        self.calls: list[runner_mod.PlaybookRun] = []

    def __call__(self, run, on_event=None):
        self.calls.append(run)
        run.artifacts_dir.mkdir(parents=True)
        (run.artifacts_dir / "stdout").write_text("")
        for event in self.events:
            on_event(event)
        return runner_mod.RunnerOutcome(self.status, self.rc, run.artifacts_dir)


def invoke(monkeypatch, fake, inventory, project, catalogue_file, *args):
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    return CliRunner().invoke(cli, ["verify", "-i", str(inventory), "--project-dir",
                                    str(project), "--catalogue", str(catalogue_file), *args],
                              catch_exceptions=False)


def test_every_detection_fired_on_the_real_corpus(monkeypatch, inventory, project,
                                                 catalogue_file, corpus_lines, tmp_path):
    fake = FakeRunner(events_for({"vm": host_report(alert_lines=corpus_lines)}))
    junit = tmp_path / "out" / "junit.xml"
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--output", "json",
                    "--junit", str(junit))
    assert result.exit_code == ExitCode.OK, result.output
    envelope = json.loads(result.stdout)
    assert envelope["exit_status"] == "ok"
    host = envelope["hosts"][0]
    statuses = {s["scenario"]: s["status"] for s in host["scenarios"]}
    assert statuses == {**{name: "fired" for name in CORPUS_CONTAINERS},
                        **{name: "clean" for name in BENIGN}}
    nsenter = next(s for s in host["scenarios"] if s["scenario"] == "nsenter")
    assert nsenter["fired"][0]["rule"] == "Namespace Change via setns to Host"
    assert 0 < nsenter["fired"][0]["latency_s"] < 5
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and root.get("tests") == "8"


def test_a_missing_alert_is_a_missed_detection(monkeypatch, inventory, project, catalogue_file,
                                              corpus_lines):
    shadow = corpus_name("sensitive_file_read")
    lines = [line for line in corpus_lines if shadow not in line]
    fake = FakeRunner(events_for({"vm": host_report(
        alert_lines=lines, verify_runs=verify_runs(exit_codes={"sensitive_file_read": 1}))}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file)
    assert result.exit_code == ExitCode.DETECTION_MISSED == 7
    assert "missed: Read Sensitive Host File From Container" in result.output
    assert "script exit 1: done" in result.output
    assert "Exit status: detection_missed (7)" in result.output
    assert "fired" in result.output  # the other five still fired


def test_scenarios_and_run_id_reach_the_playbook(monkeypatch, inventory, project,
                                                 catalogue_file):
    fake = FakeRunner(events_for({"vm": host_report(verify_runs=verify_runs(["nsenter"]))}))
    invoke(monkeypatch, fake, inventory, project, catalogue_file, "--scenario", "nsenter",
           "--timeout", "5", "-e", "falco_verify_image=site/purple:1")
    run = fake.calls[0]
    assert run.playbook == project / "playbooks" / "verify.yml"
    assert run.extra_vars[0] == "falco_verify_image=site/purple:1"
    ours = json.loads(run.extra_vars[-1])  # last, so -e cannot replace the run id
    assert ours["falco_verify_run_id"] == RUN_ID
    assert ours["falco_verify_timeout"] == 5
    assert ours["falco_verify_scenarios"] == [{
        "name": "nsenter", "script": "true", "docker_args": ["--privileged"],
        "expected_rules": ["Namespace Change via setns to Host"]}]


def test_hosts_that_could_not_run(monkeypatch, inventory, project, catalogue_file, corpus_lines):
    fake = FakeRunner(events_for(
        {"vm": host_report(alert_lines=corpus_lines),
         "plain": host_report(status="skipped", not_run_reason="no docker: the docker CLI is "
                              "not installed", verify_runs=[], alert_lines=[])},
        unreachable={"gone": "Failed to connect to the host via ssh"}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--output", "json")
    assert result.exit_code == ExitCode.PARTIAL
    hosts = {h["host"]: h for h in json.loads(result.stdout)["hosts"]}
    assert hosts["plain"]["not_run_reason"] == "no docker: the docker CLI is not installed"
    assert hosts["gone"]["not_run_reason"].startswith("unreachable: Failed to connect")
    assert {s["status"] for s in hosts["gone"]["scenarios"]} == {"not_run"}
    assert {s["status"] for s in hosts["vm"]["scenarios"]} == {"fired", "clean"}


def test_nothing_ran_anywhere_is_a_failure(monkeypatch, inventory, project, catalogue_file):
    fake = FakeRunner(events_for({"vm": host_report(
        status="skipped", not_run_reason="image missing: img:1 is not on the host",
        verify_runs=[])}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file)
    assert result.exit_code == ExitCode.FAILED
    assert "image missing: img:1" in result.output


def test_a_scenario_docker_refused_is_not_run(monkeypatch, inventory, project, catalogue_file,
                                              corpus_lines):
    runs = verify_runs()
    runs[0].update(trigger_ns=None, not_run_reason="docker run failed: privileged refused")
    fake = FakeRunner(events_for({"vm": host_report(alert_lines=corpus_lines,
                                                    verify_runs=runs)}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--output", "json")
    assert result.exit_code == ExitCode.PARTIAL
    first = json.loads(result.stdout)["hosts"][0]["scenarios"][0]
    assert first["status"] == "not_run"
    assert first["not_run_reason"] == "docker run failed: privileged refused"


def test_alerts_of_another_run_do_not_count(monkeypatch, inventory, project, catalogue_file,
                                            corpus_lines):
    fake = FakeRunner(events_for({"vm": host_report(alert_lines=corpus_lines,
                                                    verify_run_id="20261129T000000-other")}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--output", "json")
    host = json.loads(result.stdout)["hosts"][0]
    assert host["not_run_reason"].startswith("failed: host reported run 20261129T000000-other")
    assert result.exit_code == ExitCode.FAILED


def test_malformed_lines_are_counted(monkeypatch, inventory, project, catalogue_file,
                                     corpus_lines):
    fake = FakeRunner(events_for({"vm": host_report(
        alert_lines=[*corpus_lines, '{"rule": "x", "time": "yesterday"}', "garbage"])}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file)
    assert result.exit_code == ExitCode.OK
    assert "2 alert line(s) could not be parsed" in result.output


def test_unknown_scenario_is_a_usage_error(monkeypatch, inventory, project, catalogue_file):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--scenario", "nope")
    assert result.exit_code == ExitCode.USAGE
    assert "unknown scenario 'nope'" in result.output
    assert fake.calls == []


def test_a_catalogue_without_scripts_is_refused(monkeypatch, inventory, project, tmp_path,
                                                corpus_catalogue):
    path = tmp_path / "bare.yaml"
    path.write_text(catalogue_yaml(corpus_catalogue, scripts=False))
    result = invoke(monkeypatch, FakeRunner([]), inventory, project, path)
    assert result.exit_code == ExitCode.USAGE
    assert "without a script" in result.output


def test_no_host_matched(monkeypatch, inventory, project, catalogue_file):
    fake = FakeRunner([_event("playbook_on_no_hosts_matched"),
                       _event("playbook_on_stats", processed={})])
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--limit", "web*")
    assert result.exit_code == ExitCode.FAILED
    assert "no host matched the inventory and --limit web*" in result.output


def test_envelope_keys_are_pinned(monkeypatch, inventory, project, catalogue_file, corpus_lines):
    fake = FakeRunner(events_for({"vm": host_report(alert_lines=corpus_lines)}))
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--output", "json")
    envelope = json.loads(result.stdout)
    assert list(envelope) == ["schema", "command", "falco_deploy_version", "run_id", "started",
                              "finished", "exit_code", "exit_status", "artifacts_dir", "junit",
                              "error", "timeout_s", "summary", "hosts"]
    assert envelope["schema"] == "falco-deploy.verify/v1"
    host = envelope["hosts"][0]
    for key in ("host", "run_id", "not_run_reason", "scenarios", "ignored_alerts",
                "parse_errors", "docker_version", "alert_file", "alert_file_exists",
                "scenario_runs", "containers_removed"):
        assert key in host
    assert set(envelope["summary"]) >= {"fired", "missed", "not_run", "clean",
                                        "false_positive"}


def test_packaged_catalogue_runs_every_scenario(monkeypatch, inventory, project):
    """The real catalogue: each scenario carries a script and the role gets all ten."""
    fake = FakeRunner(events_for({"vm": host_report(verify_runs=[])}))
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    result = CliRunner().invoke(cli, ["verify", "-i", str(inventory), "--project-dir",
                                      str(project)], catch_exceptions=False)
    specs = json.loads(fake.calls[0].extra_vars[-1])["falco_verify_scenarios"]
    assert [spec["name"] for spec in specs][:6] == list(CORPUS_CONTAINERS)
    assert all(spec["script"].strip() for spec in specs)
    # Nothing reported for any scenario: nothing ran, nothing can be called a detection.
    assert result.exit_code == ExitCode.FAILED


def test_verify_help_lists_exit_codes():
    result = CliRunner().invoke(cli, ["verify", "--help"])
    assert result.exit_code == 0
    assert "7  detection missed" in result.output


def test_json_output_has_the_envelope_when_a_usage_error_stops_the_run(
        monkeypatch, inventory, project, catalogue_file):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, inventory, project, catalogue_file, "--scenario", "nope",
                    "--output", "json")
    assert result.exit_code == ExitCode.USAGE
    doc = json.loads(result.stdout)
    assert doc["schema"] == "falco-deploy.verify/v1"
    assert doc["exit_code"] == ExitCode.USAGE and doc["exit_status"] == "usage"
    assert "unknown scenario 'nope'" in doc["error"]
    assert doc["hosts"] == [] and fake.calls == []
