"""JUnit XML: well-formed, one testsuite per host, failures for missed, escaping."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

from falco_deploy.verify.alerts import parse_alert_line
from falco_deploy.verify.junit import to_junit_xml, write_junit
from falco_deploy.verify.matcher import HostRun, ScenarioRun, build_result, match_host
from falco_deploy.verify.scenarios import parse_catalogue


def _result(corpus, corpus_catalogue, run, timeout_s=0.6):
    vm = match_host(run.host(*(run.scenario(name) for name in run.containers),
                             ScenarioRun.skipped("container_lifecycle", "image missing")),
                    corpus.alerts, corpus_catalogue, timeout_s)
    edge = match_host(HostRun("edge-2.example.org", run.run_id, (run.scenario("nsenter"),),
                              "unreachable"), [], corpus_catalogue, timeout_s)
    return build_result(run.run_id, timeout_s, [vm, edge])


def test_junit_parses_back_with_suites_cases_and_counts(tmp_path, corpus, corpus_catalogue, run):
    path = write_junit(_result(corpus, corpus_catalogue, run), tmp_path / "out" / "verify.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("8", "3", "2")
    vm, edge = root.findall("testsuite")
    assert vm.get("name") == "vm" and edge.get("name") == "edge-2.example.org"
    assert (vm.get("tests"), vm.get("failures"), vm.get("skipped")) == ("7", "3", "1")
    assert vm.get("timestamp") == "2026-11-29T19:08:12"
    cases = {case.get("name"): case for case in vm.findall("testcase")}
    assert list(cases) == [*run.containers, "container_lifecycle"]
    # timeout 0.6 s: release_agent (0.634 s), nsenter (0.706 s), docker_sock (0.602 s) are late.
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failed == {"release_agent", "nsenter", "docker_sock"}
    failure = cases["nsenter"].find("failure")
    assert failure.get("type") == "missed"
    assert failure.get("message") == "late (after 0.6s): Namespace Change via setns to Host"
    assert cases["nsenter"].get("time") == "0.706"
    assert cases["sensitive_file_read"].get("time") == "0.358"
    assert "also fired: Read sensitive file untrusted" in cases["sensitive_file_read"].find(
        "system-out").text
    assert cases["container_lifecycle"].find("skipped").get("message") == "image missing"
    (edge_case,) = edge.findall("testcase")
    assert edge_case.find("skipped").get("message") == "unreachable"
    props = {p.get("name"): p.get("value") for p in vm.find("properties")}
    assert props["run_id"] == run.run_id and props["timeout_s"] == "0.6"
    assert not list(tmp_path.joinpath("out").glob(".*.tmp"))


def test_missed_rule_is_a_failure_with_the_rule_name(corpus, run):
    catalogue = parse_catalogue({"version": 1, "scenarios": {
        "reverse_shell": {"expected_rules": ["Reverse Shell Redirect in Container"]}}})
    result = build_result(run.run_id, 30, [
        match_host(run.host(run.scenario("reverse_shell")), corpus.alerts, catalogue)])
    case = ET.fromstring(to_junit_xml(result)).find("testsuite/testcase")
    failure = case.find("failure")
    assert failure.get("message") == "missed: Reverse Shell Redirect in Container"
    assert "also fired: Redirect STDOUT/STDIN to Network Connection in Container" in failure.text


def test_hostile_text_is_escaped_and_stays_well_formed(corpus_objects, run):
    nasty = 'Rule <a href="x">&amp; \'quoted\' ]]> \x01\x1b[31m\ud800'
    obj = json.loads(json.dumps(corpus_objects[0]))
    obj["rule"] = nasty
    alert = parse_alert_line(json.dumps(obj))
    catalogue = parse_catalogue({"version": 1, "scenarios": {
        "release_agent": {"expected_rules": ["Expected & <missing>"]}},
        "benign": {"shell_loop": {}}})
    host = match_host(
        HostRun('host<"&>', run.run_id, (
            run.scenario("release_agent"),
            ScenarioRun.skipped("shell_loop", "reason <&> \x00 \"quoted\""))),
        [alert], catalogue)
    text = to_junit_xml(build_result(run.run_id, 30, [host]))
    root = ET.fromstring(text.encode("utf-8"))
    suite = root.find("testsuite")
    assert suite.get("name") == 'host<"&>'
    failures = [case.find("failure") for case in suite.findall("testcase")]
    assert failures[0].get("message") == "missed: Expected & <missing>"
    # Characters XML cannot carry are shown as escapes; markup characters survive the round trip.
    assert "\\x01\\x1b[31m\\ud800" in failures[0].text
    assert "also fired: Rule <a href=\"x\">&amp; 'quoted' ]]>" in failures[0].text
    skipped = suite.findall("testcase")[1].find("skipped")
    assert skipped.get("message") == 'reason <&> \\x00 "quoted"'


def test_false_positive_is_a_failure_of_its_own_type(corpus, corpus_catalogue, run):
    benign = replace(run.scenario("sensitive_file_read"), scenario="read_etc_hosts")
    result = build_result(run.run_id, 30,
                          [match_host(run.host(benign), corpus.alerts, corpus_catalogue)])
    failure = ET.fromstring(to_junit_xml(result)).find("testsuite/testcase/failure")
    assert failure.get("type") == "false_positive"
    assert failure.get("message") == "false positive: Read Sensitive Host File From Container"
