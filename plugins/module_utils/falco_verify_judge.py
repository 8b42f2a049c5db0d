# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Judge purple-team scenario runs by what Falco detected, not by which rule said so.

A scenario of the catalogue (files/scenarios.yml) names the MITRE ATT&CK techniques it performs
and the rules of ours expected to catch it. An attack is *detected* when an alert attributed to
its container, from any rule (ours or upstream's), carries one of those techniques in its tags,
within the timeout after the attack. Falco's `rule_matching: first` (the upstream default) lets
only the first matching rule in load order alert on an event, and rules.d loads after
falco_rules.yaml, so our rule of a technique upstream also covers often stays silent: that is
reported as "covered by <rule>", not as a miss.

Attribution is by container: the container name `purple-<run id>-<scenario>`, or the id the run
recorded when Falco had not resolved the name yet. Falco's internal documents (`"source":
"internal"`, e.g. a hot restart failure) and alerts of any other container, or of the host's own
processes, are never detections.

Standard library only: the falco_verify modules ship it to the host
(ansible.module_utils.falco_verify_judge), and `falco-deploy` loads it on the control node to
check a catalogue before a run.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

CATALOGUE_VERSION = 1
SCENARIO_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
# MITRE ATT&CK technique ids as upstream rules tag them: T1611, T1059.004.
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_KEYS = {"description", "techniques", "expected_rules", "script", "docker_args"}

DETECTED, MISSED, NOT_RUN, CLEAN, FALSE_POSITIVE = (
    "detected", "missed", "not_run", "clean", "false_positive")
STATUSES = (DETECTED, MISSED, NOT_RUN, CLEAN, FALSE_POSITIVE)

# Falco's container.id is the 12-character short id; Docker reports the 64-character id.
SHORT_ID = 12
# Values Falco prints for a container field it cannot resolve (yet).
UNRESOLVED = ("", "<NA>", "N/A", "null")
_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the text says where and why."""


# -- the catalogue ------------------------------------------------------------------------------


def _strings(value, what: str, unique: bool = True) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogueError(f"{what} must be a list of non-empty strings")
    # a command line keeps its repeated words (`-v a:b -v c:d`); a set of names does not
    return list(dict.fromkeys(value)) if unique else list(value)


def check_catalogue(data, source: str = "scenarios.yml") -> list[dict]:
    """The scenarios of a catalogue document, attacks first, each {name, kind ("attack" or
    "benign"), description, techniques, expected_rules, script, docker_args}."""
    if not isinstance(data, dict):
        raise CatalogueError(f"{source}: the top level must be a mapping")
    if data.get("version") != CATALOGUE_VERSION:
        raise CatalogueError(f"{source}: unsupported version {data.get('version')!r} "
                             f"(expected {CATALOGUE_VERSION})")
    scenarios: list[dict] = []
    for section, kind in (("scenarios", "attack"), ("benign", "benign")):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise CatalogueError(f"{source}: '{section}' must map scenario names to settings")
        for name, body in entries.items():
            where = f"{source}: {section}.{name}"
            if not isinstance(name, str) or not SCENARIO_NAME.match(name):
                raise CatalogueError(f"{source}: {section}: invalid scenario name {name!r} "
                                     "(lower case letters, digits and '_')")
            body = body or {}
            if not isinstance(body, dict):
                raise CatalogueError(f"{where} must be a mapping")
            unknown = sorted(set(body) - _KEYS)
            if unknown:
                raise CatalogueError(f"{where}: unknown keys {unknown}")
            description = body.get("description", "")
            script = body.get("script", "")
            if not isinstance(description, str):
                raise CatalogueError(f"{where}.description must be a string")
            if not isinstance(script, str) or not script.strip():
                raise CatalogueError(f"{where}.script must be a shell script (a string)")
            techniques = _strings(body.get("techniques", []), f"{where}.techniques")
            rules = _strings(body.get("expected_rules", []), f"{where}.expected_rules")
            docker_args = _strings(body.get("docker_args", []), f"{where}.docker_args",
                                   unique=False)
            bad = [t for t in techniques if not TECHNIQUE.match(t)]
            if bad:
                raise CatalogueError(f"{where}.techniques: {bad} are not ATT&CK technique ids "
                                     "(T1611, T1059.004)")
            if kind == "attack" and not (techniques and rules):
                raise CatalogueError(f"{where}: an attack needs techniques and expected_rules")
            if kind == "benign" and (techniques or rules):
                raise CatalogueError(f"{where}: a benign scenario has no techniques or rules")
            if any(s["name"] == name for s in scenarios):
                raise CatalogueError(f"{source}: scenario {name!r} is defined twice")
            scenarios.append({"name": name, "kind": kind, "description": description.strip(),
                              "techniques": techniques, "expected_rules": rules,
                              "script": script, "docker_args": docker_args})
    if not scenarios:
        raise CatalogueError(f"{source}: no scenarios defined")
    return scenarios


def select(scenarios: list[dict], names) -> list[dict]:
    """The scenarios named, in the order given (duplicates dropped), or all when none are."""
    if not names:
        return list(scenarios)
    by_name = {s["name"]: s for s in scenarios}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise CatalogueError(f"unknown scenario(s) {', '.join(map(str, unknown))}; known: "
                             + ", ".join(by_name))
    return [by_name[n] for n in dict.fromkeys(names)]


def our_rules(scenarios: list[dict]) -> list[str]:
    """Every rule some scenario expects: our detections (their alerts on benign activity are
    false positives)."""
    return sorted({rule for s in scenarios for rule in s["expected_rules"]})


# -- alerts -------------------------------------------------------------------------------------


def parse_time_ns(text) -> int:
    """Exact nanoseconds since the epoch of an RFC 3339 time; Falco writes
    `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (falcosecurity/falco userspace/engine/formats.cpp)."""
    match = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"time {text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, frac, zone = match.groups()
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                     tzinfo=timezone(offset))
    return (stamp - _EPOCH) // timedelta(seconds=1) * _NS + int((frac or "")[:9].ljust(9, "0"))


def format_ns(epoch_ns: int) -> str:
    """Epoch nanoseconds as Falco prints alert times."""
    seconds, frac = divmod(epoch_ns, _NS)
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def _field(fields: dict, key: str) -> str:
    value = fields.get(key)
    return value.strip() if isinstance(value, str) and value.strip() not in UNRESOLVED else ""


def parse_alert(line: str) -> dict:
    """One line of Falco's JSON output as {rule, time_ns, source, priority, tags,
    container_name, container_id}; ValueError with the reason for anything else."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if not isinstance(doc.get("rule"), str) or not doc["rule"]:
        raise ValueError("no 'rule'")
    tags = doc.get("tags") or []
    fields = doc.get("output_fields") or {}
    if not isinstance(tags, list) or not isinstance(fields, dict):
        raise ValueError("'tags' is not a list or 'output_fields' not an object")
    return {
        "rule": doc["rule"], "time_ns": parse_time_ns(doc.get("time")),
        "source": str(doc.get("source") or ""), "priority": str(doc.get("priority") or ""),
        "tags": [str(t) for t in tags],
        "container_name": _field(fields, "container.name").lstrip("/"),
        # container.full_id exists on newer Falco (container plugin); container.id everywhere.
        "container_id": _field(fields, "container.id") or _field(fields, "container.full_id"),
    }


def same_technique(tag: str, technique: str) -> bool:
    """A tag names the technique, one of its sub-techniques, or its parent technique."""
    return tag == technique or tag.startswith(technique + ".") or technique.startswith(tag + ".")


def _same_container(alert_id: str, recorded: str) -> bool:
    shorter, longer = sorted((alert_id.lower(), recorded.lower()), key=len)
    return longer.startswith(shorter) if len(shorter) >= SHORT_ID else shorter == longer


# -- judging ------------------------------------------------------------------------------------


class Judge:
    """Takes the alert lines of one host and judges its scenario runs.

    `runs` are the run records of the scenarios module (scenario, kind, techniques,
    expected_rules, container_name, container_id, trigger_ns, trigger_source, not_run_reason,
    exit_code, output, duration_s); `ours` are our rule names; `timeout` the seconds after an
    attack within which its detection must come.
    """

    def __init__(self, runs: list[dict], ours, timeout: float) -> None:
        self.runs = [dict(r) for r in runs]
        self.ours = set(ours)
        self.timeout_ns = int(max(float(timeout), 0.0) * _NS)
        self.alerts: dict[str, list[dict]] = {r["scenario"]: [] for r in self.runs}
        self.ignored = 0  # alerts of other containers or of the host's own processes
        self.internal = 0  # Falco's internal documents (hot restart failure, drops, ...)
        self.parse_errors = 0
        self.error_samples: list[str] = []

    def _ran(self, run: dict) -> bool:
        return not run.get("not_run_reason") and bool(run.get("container_name")
                                                      or run.get("container_id"))

    def _owner(self, alert: dict) -> str:
        for run in self.runs:
            if not self._ran(run):
                continue
            if alert["container_name"]:
                if alert["container_name"] == run.get("container_name"):
                    return run["scenario"]
            elif alert["container_id"] and run.get("container_id") \
                    and _same_container(alert["container_id"], run["container_id"]):
                return run["scenario"]
        return ""

    def feed(self, line: str) -> None:
        if not line.strip():
            return
        try:
            alert = parse_alert(line)
        except ValueError as exc:
            self.parse_errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{exc}: {line[:120]}")
            return
        if alert["source"] == "internal" or alert["rule"].startswith("Falco internal:"):
            self.internal += 1
            return
        owner = self._owner(alert)
        if owner:
            self.alerts[owner].append(alert)
        else:
            self.ignored += 1

    def _hits(self, run: dict) -> list[dict]:
        by_rule: dict[str, list[dict]] = {}
        for alert in self.alerts.get(run["scenario"], []):
            by_rule.setdefault(alert["rule"], []).append(alert)
        trigger = run.get("trigger_ns")
        hits = []
        for rule, group in by_rule.items():
            first = min(a["time_ns"] for a in group)
            tags = sorted({t for a in group for t in a["tags"]
                           if any(same_technique(t, want) for want in run["techniques"])})
            latency = None if trigger is None else first - int(trigger)
            hits.append({"rule": rule, "ours": rule in self.ours, "count": len(group),
                         "first_alert": format_ns(first), "first_ns": first,
                         "latency_s": None if latency is None else round(latency / _NS, 3),
                         "in_time": latency is None or latency <= self.timeout_ns,
                         "techniques": tags})
        return sorted(hits, key=lambda h: (h["first_ns"], h["rule"]))

    def detected(self, run: dict) -> bool:
        return any(h["techniques"] and h["in_time"] for h in self._hits(run))

    @property
    def complete(self) -> bool:
        """Every attack that ran is detected, or nothing ran at all: collecting further can only
        add detail. (Benign scenarios alone are given the whole timeout, as false positives
        take as long to show up as detections.)"""
        if not any(self._ran(r) for r in self.runs):
            return True
        attacks = [r for r in self.runs if r["kind"] == "attack" and self._ran(r)]
        return bool(attacks) and all(self.detected(r) for r in attacks)

    def judge(self, run: dict) -> dict:
        out = {key: run.get(key) for key in (
            "scenario", "kind", "techniques", "expected_rules", "container_name",
            "container_id", "trigger_source", "exit_code", "output", "duration_s")}
        out["trigger"] = format_ns(int(run["trigger_ns"])) if run.get("trigger_ns") else None
        if not self._ran(run):
            reason = run.get("not_run_reason") or "the scenario did not run"
            return {**out, "status": NOT_RUN, "reason": reason, "rules": [], "detected_by": [],
                    "ours_fired": False, "expected": [], "latency_s": None}
        hits = self._hits(run)
        rules = [{k: h[k] for k in ("rule", "ours", "count", "first_alert", "latency_s",
                                    "techniques")} for h in hits]
        ours_fired = any(h["ours"] for h in hits)
        if run["kind"] == "benign":
            mine = [h["rule"] for h in hits if h["ours"]]
            return {**out, "status": FALSE_POSITIVE if mine else CLEAN,
                    "reason": ("our rules fired on benign activity: " + ", ".join(mine)) if mine
                    else "", "rules": rules, "detected_by": [], "ours_fired": ours_fired,
                    "expected": [], "latency_s": None}
        detecting = [h for h in hits if h["techniques"] and h["in_time"]]
        # What most likely took the event from a silent rule of ours: another project's rule
        # loaded before rules.d (rule_matching: first), else another rule of ours.
        covering = sorted(detecting, key=lambda h: h["ours"])
        expected = []
        for rule in run["expected_rules"]:
            hit = next((h for h in hits if h["rule"] == rule and h["in_time"]), None)
            if hit is not None:
                expected.append({"rule": rule, "status": "fired", "by": rule,
                                 "latency_s": hit["latency_s"]})
            elif detecting:
                expected.append({"rule": rule, "status": "covered", "by": covering[0]["rule"],
                                 "latency_s": None})
            else:
                expected.append({"rule": rule, "status": "silent", "by": None,
                                 "latency_s": None})
        silent = [e["rule"] for e in expected if e["status"] != "fired"]
        if detecting:
            first = detecting[0]
            timing = "" if first["latency_s"] is None else f" after {first['latency_s']:.3f} s"
            reason = f"detected by {first['rule']}{timing}"
            covered = [f"{e['rule']} (covered by {e['by']})" for e in expected
                       if e["status"] == "covered"]
            if covered:
                reason += "; silent, covered: " + ", ".join(covered)
            status, latency = DETECTED, first["latency_s"]
        else:
            late = [h for h in hits if h["techniques"]]
            reason = f"no alert with {'/'.join(run['techniques'])} on its container"
            if late:
                reason += (f" within {self.timeout_ns / _NS:g} s (first after "
                           f"{late[0]['latency_s']:.3f} s)")
            if silent:
                reason += "; silent: " + ", ".join(silent)
            status, latency = MISSED, None
        return {**out, "status": status, "reason": reason, "rules": rules,
                "detected_by": [h["rule"] for h in detecting], "ours_fired": ours_fired,
                "expected": expected, "latency_s": latency}

    def results(self) -> dict:
        """The judged scenarios in run order, counts per status, and what was not attributed."""
        scenarios = [self.judge(run) for run in self.runs]
        counts = {status: sum(1 for s in scenarios if s["status"] == status)
                  for status in STATUSES}
        return {"scenarios": scenarios, "counts": counts, "status": host_status(counts),
                "reason": summary(scenarios), "alerts_ignored": self.ignored,
                "alerts_attributed": sum(len(v) for v in self.alerts.values()),
                "internal_documents": self.internal, "parse_errors": self.parse_errors,
                "parse_error_samples": self.error_samples}


def host_status(counts: dict) -> str:
    """A host's status: missed when an attack ran undetected; not_run when no scenario ran;
    incomplete when some did not run; otherwise verified. False positives are reported by
    their scenarios and leave the status alone: they are tuning work, not a detection gap."""
    if counts.get(MISSED):
        return MISSED
    if not any(counts.get(s) for s in (DETECTED, CLEAN, FALSE_POSITIVE)):
        return NOT_RUN
    return "incomplete" if counts.get(NOT_RUN) else "verified"


def summary(scenarios: list[dict]) -> str:
    """One line for a host: how many attacks were detected, and which were missed, did not run
    or raised false positives."""
    by_status: dict[str, list[str]] = {}
    for scenario in scenarios:
        by_status.setdefault(scenario["status"], []).append(scenario["scenario"])
    attacks = sum(1 for s in scenarios if s["kind"] == "attack")
    parts = [f"{len(by_status.get(DETECTED, []))} of {attacks} attacks detected"]
    for status, word in ((MISSED, "missed"), (NOT_RUN, "not run"),
                         (FALSE_POSITIVE, "false positives")):
        if by_status.get(status):
            parts.append(f"{word}: {', '.join(by_status[status])}")
    if by_status.get(CLEAN):
        parts.append(f"{len(by_status[CLEAN])} benign clean")
    return "; ".join(parts)


def judge_lines(runs: list[dict], ours, timeout: float, lines) -> dict:
    """Judge a whole set of alert lines at once (a recorded alert file, a test)."""
    judge = Judge(runs, ours, timeout)
    for line in lines:
        judge.feed(line)
    return judge.results()
