"""JUnit XML of a verify result: one testsuite per host, one testcase per scenario.

A missed or late expected rule is a <failure type="missed">, our rules firing on a benign
scenario a <failure type="false_positive">, a scenario that could not run is <skipped>. Elements
and attributes follow the Ant/Jenkins JUnit layout that CI dashboards read (testsuites >
testsuite > testcase > failure|skipped, system-out).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from falco_deploy.verify.alerts import format_ns
from falco_deploy.verify.matcher import (
    FALSE_POSITIVE,
    MISSED,
    NOT_RUN,
    HostResult,
    RuleHit,
    ScenarioResult,
    VerifyResult,
)

# Characters XML 1.0 cannot carry at all, not even escaped (Falco output fields may hold raw
# bytes of a command line). ElementTree escapes &<>" but writes these through, so they go first.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: object) -> str:
    return _XML_INVALID.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
        else f"\\u{ord(m.group()):04x}", str(text))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _hit_line(hit: RuleHit) -> str:
    latency = "?" if hit.latency_s is None else f"{hit.latency_s:.3f}s"
    return f"{hit.rule} after {latency} ({hit.count} alert(s), first {format_ns(hit.first_ns)})"


def _case_time(result: ScenarioResult) -> float:
    latencies = [hit.latency_s for hit in (*result.fired, *result.late)
                 if hit.latency_s is not None]
    return max(latencies, default=0.0)


def _details(result: ScenarioResult) -> str:
    lines = [f"container: {result.container_name or '-'}"]
    if result.trigger_ns is not None:
        lines.append(f"trigger: {format_ns(result.trigger_ns)}")
    lines += [f"fired: {_hit_line(hit)}" for hit in result.fired]
    lines += [f"late: {_hit_line(hit)}" for hit in result.late]
    lines += [f"missed: {rule}" for rule in result.missed]
    lines += [f"false positive: {_hit_line(hit)}" for hit in result.false_positives]
    lines += [f"also fired: {_hit_line(hit)}" for hit in result.also_fired]
    return "\n".join(lines)


def _testcase(parent: ET.Element, host: HostResult, result: ScenarioResult) -> None:
    case = ET.SubElement(parent, "testcase", {
        "classname": _clean(f"falco-deploy.verify.{host.host.replace('.', '_')}"),
        "name": _clean(result.scenario),
        "time": _seconds(_case_time(result)),
    })
    if result.status == NOT_RUN:
        ET.SubElement(case, "skipped", {"message": _clean(result.not_run_reason or "not run")})
    elif result.status == MISSED:
        parts = []
        if result.missed:
            parts.append("missed: " + ", ".join(result.missed))
        if result.late:
            parts.append(f"late (after {host.timeout_s:g}s): "
                         + ", ".join(hit.rule for hit in result.late))
        failure = ET.SubElement(case, "failure",
                                {"type": "missed", "message": _clean("; ".join(parts))})
        failure.text = _clean(_details(result))
    elif result.status == FALSE_POSITIVE:
        failure = ET.SubElement(case, "failure", {
            "type": "false_positive",
            "message": _clean("false positive: "
                              + ", ".join(hit.rule for hit in result.false_positives)),
        })
        failure.text = _clean(_details(result))
    out = ET.SubElement(case, "system-out")
    out.text = _clean(_details(result))


def to_element(result: VerifyResult) -> ET.Element:
    root = ET.Element("testsuites", {"name": "falco-deploy verify"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for host in result.hosts:
        counts = {
            "tests": len(host.scenarios),
            "failures": sum(1 for scenario in host.scenarios if scenario.failed),
            "errors": 0,
            "skipped": host.count(NOT_RUN),
        }
        suite_time = sum(_case_time(scenario) for scenario in host.scenarios)
        attributes = {"name": _clean(host.host), "hostname": _clean(host.host),
                      "time": _seconds(suite_time)}
        attributes.update({key: str(value) for key, value in counts.items()})
        triggers = [s.trigger_ns for s in host.scenarios if s.trigger_ns is not None]
        if triggers:
            attributes["timestamp"] = format_ns(min(triggers))[:19]
        suite = ET.SubElement(root, "testsuite", attributes)
        properties = ET.SubElement(suite, "properties")
        for name, value in (("run_id", host.run_id), ("timeout_s", f"{host.timeout_s:g}"),
                            ("ignored_alerts", str(host.ignored_alerts)),
                            ("parse_errors", str(len(host.parse_errors)))):
            ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
        if host.not_run_reason:
            ET.SubElement(properties, "property",
                          {"name": "not_run_reason", "value": _clean(host.not_run_reason)})
        for scenario in host.scenarios:
            _testcase(suite, host, scenario)
        for key, value in counts.items():
            totals[key] += value
        total_time += suite_time
    root.attrib.update({key: str(value) for key, value in totals.items()})
    root.set("time", _seconds(total_time))
    return root


def to_junit_xml(result: VerifyResult) -> str:
    root = to_element(result)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: VerifyResult, path: str | os.PathLike[str]) -> Path:
    """Write the report atomically: a CI job never reads half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(to_junit_xml(result), encoding="utf-8")
    os.replace(temporary, target)
    return target
