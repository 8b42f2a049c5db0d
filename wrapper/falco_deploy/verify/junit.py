"""JUnit XML of a verify run: one testsuite per host, one testcase per scenario.

An attack that went undetected is a <failure type="missed">, our rules firing on a benign
scenario a <failure type="false_positive">, a scenario that could not run (or a host that ran
none) is <skipped>. Elements and attributes follow the Ant/Jenkins JUnit layout that CI
dashboards read (testsuites > testsuite > testcase > failure|skipped, system-out).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from falco_deploy.results import RunResult

# Characters XML 1.0 cannot carry at all, not even escaped (Falco output fields may hold raw
# bytes of a command line). ElementTree escapes &<>" but writes these through, so they go first.
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: object) -> str:
    return _XML_INVALID.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
        else f"\\u{ord(m.group()):04x}", str(text))


def _seconds(value: float | None) -> str:
    return f"{max(value or 0.0, 0.0):.3f}"


def details(scenario: dict[str, Any]) -> str:
    """What happened to one scenario, one fact per line."""
    lines = [f"container: {scenario.get('container_name') or '-'}"]
    if scenario.get("trigger"):
        lines.append(f"trigger: {scenario['trigger']} ({scenario.get('trigger_source')})")
    for hit in scenario.get("rules") or []:
        latency = "?" if hit.get("latency_s") is None else f"{hit['latency_s']:.3f}s"
        whose = "ours" if hit.get("ours") else "not ours"
        tags = ", ".join(hit.get("techniques") or []) or "no technique of the scenario"
        lines.append(f"fired: {hit['rule']} ({whose}; {tags}) after {latency}, "
                     f"{hit.get('count', 1)} alert(s)")
    for expected in scenario.get("expected") or []:
        word = expected["status"]
        if word == "covered":
            word = f"covered by {expected['by']}"
        lines.append(f"our rule {expected['rule']}: {word}")
    if scenario.get("reason"):
        lines.append(f"verdict: {scenario['status']}: {scenario['reason']}")
    return "\n".join(lines)


def _testcase(suite: ET.Element, host: str, scenario: dict[str, Any]) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": _clean(f"falco-deploy.verify.{host.replace('.', '_')}"),
        "name": _clean(scenario["scenario"]),
        "time": _seconds(scenario.get("latency_s")),
    })
    status = scenario.get("status")
    reason = scenario.get("reason") or status or ""
    if status == "not_run":
        ET.SubElement(case, "skipped", {"message": _clean(reason)})
    elif status in ("missed", "false_positive"):
        failure = ET.SubElement(case, "failure", {"type": status, "message": _clean(reason)})
        failure.text = _clean(details(scenario))
    ET.SubElement(case, "system-out").text = _clean(details(scenario))


def to_element(result: RunResult, chosen: list[dict[str, Any]]) -> ET.Element:
    """`chosen` are the scenarios the run asked for: a host that ran none lists them skipped."""
    root = ET.Element("testsuites", {"name": "falco-deploy verify"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for host in result.hosts:
        scenarios = host.details.get("scenarios") or [
            {"scenario": s["name"], "status": "not_run",
             "reason": f"{host.verdict.value}: {host.reason}" if host.reason
             else host.verdict.value} for s in chosen]
        counts = {
            "tests": len(scenarios),
            "failures": sum(1 for s in scenarios if s["status"] in ("missed", "false_positive")),
            "errors": 0,
            "skipped": sum(1 for s in scenarios if s["status"] == "not_run"),
        }
        attributes = {"name": _clean(host.host), "hostname": _clean(host.host),
                      "time": _seconds(sum(s.get("latency_s") or 0 for s in scenarios))}
        attributes.update({key: str(value) for key, value in counts.items()})
        suite = ET.SubElement(root, "testsuite", attributes)
        properties = ET.SubElement(suite, "properties")
        for name, value in (("run_id", (result.verify or {}).get("run_id", "")),
                            ("verdict", host.verdict.value), ("reason", host.reason)):
            ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
        for scenario in scenarios:
            _testcase(suite, host.host, scenario)
        for key, value in counts.items():
            totals[key] += value
    root.attrib.update({key: str(value) for key, value in totals.items()})
    return root


def to_junit_xml(result: RunResult, chosen: list[dict[str, Any]]) -> str:
    root = to_element(result, chosen)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: RunResult, chosen: list[dict[str, Any]],
                path: str | os.PathLike[str]) -> Path:
    """Write the report atomically: a CI job never reads half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(to_junit_xml(result, chosen), encoding="utf-8")
    os.replace(temporary, target)
    return target
