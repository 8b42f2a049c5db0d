"""JUnit XML of a verify run, from the one result model (falco_deploy.results)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from verify_support import JUDGE, RUN_ID, recorded_runs

from falco_deploy.results import HostResult, RunResult, Verdict
from falco_deploy.verify.junit import to_junit_xml, write_junit

NOW = datetime(2026, 12, 1, 22, 43, tzinfo=timezone.utc)


def verify_result(*hosts: HostResult) -> RunResult:
    result = RunResult("verify", list(hosts), "/state/runs/x", False, NOW, NOW)
    result.verify = {"run_id": RUN_ID, "timeout_s": 30.0}
    return result


def judged_host(name, catalogue, lines, verdict=Verdict.VERIFIED, runs=None) -> HostResult:
    judged = JUDGE.judge_lines(runs or recorded_runs(catalogue), JUDGE.our_rules(catalogue),
                               30, lines)
    return HostResult(name, verdict, reason=judged["reason"],
                      details={"scenarios": judged["scenarios"], "counts": judged["counts"]})


def test_suites_cases_and_counts_of_the_recorded_run(tmp_path, catalogue, recorded_lines):
    missed = [line for line in recorded_lines if json.loads(line)["rule"] !=
              "Docker Socket Accessed From Container"]
    result = verify_result(
        judged_host("vm", catalogue, recorded_lines),
        judged_host("vm2", catalogue, missed, Verdict.MISSED),
        HostResult("plain", Verdict.NOT_RUN, reason="no docker: the docker CLI is not installed"))
    path = write_junit(result, catalogue, tmp_path / "reports" / "junit.xml")
    root = ET.parse(path).getroot()
    # Two hosts with the recorded run's ten scenarios, one that skips the whole catalogue.
    everything = len(catalogue)
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == (
        str(20 + everything), "1", str(everything))
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert suites["vm"].get("failures") == "0"
    case = next(c for c in suites["vm2"].findall("testcase") if c.get("name") == "docker_sock")
    failure = case.find("failure")
    assert failure.get("type") == "missed"
    assert failure.get("message") == ("no alert with T1610/T1611 on its container; silent: "
                                      "Docker Socket Accessed From Container")
    assert "our rule Docker Socket Accessed From Container: silent" in failure.text
    skipped = suites["plain"].find("testcase/skipped")
    assert skipped.get("message") == "not run: no docker: the docker CLI is not installed"
    props = {p.get("name"): p.get("value") for p in suites["vm"].find("properties")}
    assert props["run_id"] == RUN_ID and props["verdict"] == "verified"
    covered = next(c for c in suites["vm"].findall("testcase") if c.get("name") ==
                   "reverse_shell").find("system-out").text
    assert ("our rule Reverse Shell Redirect in Container: covered by Redirect STDOUT/STDIN to "
            "Network Connection in Container") in covered


def test_false_positive_is_a_failure_of_its_own_type(catalogue, recorded_lines):
    runs = recorded_runs(catalogue)
    # The sensitive_file_read container played as if it were a benign scenario's.
    benign = next(r for r in runs if r["scenario"] == "read_etc_hosts")
    victim = next(r for r in runs if r["scenario"] == "sensitive_file_read")
    benign["container_name"], benign["container_id"] = (victim["container_name"],
                                                        victim["container_id"])
    runs.remove(victim)
    lines = [*recorded_lines, json.dumps({
        "rule": "Read Sensitive Host File From Container", "time": "2026-12-01T22:43:29Z",
        "source": "syscall", "tags": ["T1003.008"],
        "output_fields": {"container.id": victim["container_id"]}})]
    xml = to_junit_xml(verify_result(judged_host("vm", catalogue, lines, runs=runs)), catalogue)
    case = next(c for c in ET.fromstring(xml).iter("testcase") if c.get("name") ==
                "read_etc_hosts")
    failure = case.find("failure")
    assert failure.get("type") == "false_positive"
    assert failure.get("message") == ("our rules fired on benign activity: Read Sensitive Host "
                                      "File From Container")


def test_hostile_text_is_escaped_and_stays_well_formed(catalogue):
    nasty = 'Rule <a href="x">&amp; \'quoted\' ]]> \x01\x1b[31m\ud800'
    scenario = {"scenario": "nsenter", "status": "missed", "reason": f"silent: {nasty}",
                "rules": [{"rule": nasty, "ours": False, "latency_s": 0.5, "techniques": [],
                           "count": 1}], "expected": [], "container_name": "purple-x"}
    result = verify_result(HostResult('host<"&>', Verdict.MISSED, details={
        "scenarios": [scenario, {"scenario": "shell_loop", "status": "not_run",
                                 "reason": "reason <&> \x00 \"quoted\""}]}))
    root = ET.fromstring(to_junit_xml(result, catalogue).encode("utf-8"))
    suite = root.find("testsuite")
    assert suite.get("name") == 'host<"&>'
    failure = suite.find("testcase/failure")
    # Characters XML cannot carry are shown as escapes; markup characters survive the round trip.
    assert failure.get("message") == "silent: Rule <a href=\"x\">&amp; 'quoted' ]]> " \
                                     "\\x01\\x1b[31m\\ud800"
    assert "fired: Rule <a href=\"x\">&amp; 'quoted' ]]>" in failure.text
    skipped = suite.findall("testcase")[1].find("skipped")
    assert skipped.get("message") == 'reason <&> \\x00 "quoted"'
