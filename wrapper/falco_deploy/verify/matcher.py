"""Match Falco alerts to the scenario runs of one verify run, host by host.

An alert belongs to a scenario when its `container.name` is that scenario's container name; when
Falco could not resolve the name (yet), the `container.id` recorded when the container started is
used instead. Alerts of other containers, and of scenario containers of other runs, are counted as
ignored. For each expected rule, the first alert decides: within `timeout` of the trigger it
fired (latency = alert time - trigger time, both in exact nanoseconds), after it was late, and
with no alert at all it was missed.

Alert times are the host kernel's event timestamps; trigger times must come from the same host's
clock (e.g. `date +%s%N` run right before the trigger), or the latency carries the clock skew.
A latency may be slightly negative when the trigger was recorded after the first syscall.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.verify.alerts import Alert, ParseError, format_ns, parse_rfc3339
from falco_deploy.verify.scenarios import Catalogue, container_name, parse_container_name

DEFAULT_TIMEOUT_S = 30.0
_NS_PER_S = 1_000_000_000
# Falco's container.id is the 12-character short id; Docker reports the 64-character full id.
_SHORT_ID = 12

FIRED, MISSED, NOT_RUN, CLEAN, FALSE_POSITIVE = (
    "fired", "missed", "not_run", "clean", "false_positive")


def to_epoch_ns(value: int | datetime | str) -> int:
    """Epoch nanoseconds from int ns, an aware datetime, or an RFC 3339 string."""
    if isinstance(value, bool):
        raise TypeError("a trigger time cannot be a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("trigger datetime must be timezone-aware")
        return parse_rfc3339(value.isoformat())[1]
    if isinstance(value, str):
        return parse_rfc3339(value)[1]
    raise TypeError(f"unsupported trigger time {value!r}")


@dataclass(frozen=True)
class ScenarioRun:
    """What the runner recorded for one scenario on one host."""

    scenario: str
    container_name: str | None = None
    trigger_ns: int | None = None
    container_id: str | None = None
    not_run_reason: str | None = None

    @classmethod
    def started(cls, run_id: str, scenario: str, trigger: int | datetime | str,
                container_id: str | None = None,
                name: str | None = None) -> ScenarioRun:
        """A scenario that ran; `name` overrides the conventional container name."""
        return cls(scenario, name or container_name(run_id, scenario), to_epoch_ns(trigger),
                   container_id or None)

    @classmethod
    def skipped(cls, scenario: str, reason: str) -> ScenarioRun:
        return cls(scenario, not_run_reason=reason)

    @property
    def ran(self) -> bool:
        return self.not_run_reason is None and self.trigger_ns is not None


@dataclass(frozen=True)
class HostRun:
    host: str
    run_id: str
    scenarios: tuple[ScenarioRun, ...]
    not_run_reason: str | None = None  # the whole host was skipped (unreachable, no docker)


@dataclass(frozen=True)
class RuleHit:
    rule: str
    count: int
    first_ns: int
    latency_ns: int | None

    @property
    def latency_s(self) -> float | None:
        return None if self.latency_ns is None else self.latency_ns / _NS_PER_S

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "count": self.count, "first_alert": format_ns(self.first_ns),
                "latency_s": self.latency_s, "latency_ns": self.latency_ns}


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    benign: bool
    status: str
    expected_rules: tuple[str, ...]
    container_name: str | None = None
    container_id: str | None = None
    trigger_ns: int | None = None
    fired: tuple[RuleHit, ...] = ()
    late: tuple[RuleHit, ...] = ()
    missed: tuple[str, ...] = ()
    also_fired: tuple[RuleHit, ...] = ()
    false_positives: tuple[RuleHit, ...] = ()
    not_run_reason: str | None = None

    @property
    def failed(self) -> bool:
        """An expected detection did not arrive in time, or our rules fired on benign activity."""
        return self.status in (MISSED, FALSE_POSITIVE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "benign": self.benign,
            "status": self.status,
            "expected_rules": list(self.expected_rules),
            "container_name": self.container_name,
            "container_id": self.container_id,
            "trigger": None if self.trigger_ns is None else format_ns(self.trigger_ns),
            "fired": [hit.to_dict() for hit in self.fired],
            "late": [hit.to_dict() for hit in self.late],
            "missed": list(self.missed),
            "also_fired": [hit.to_dict() for hit in self.also_fired],
            "false_positives": [hit.to_dict() for hit in self.false_positives],
            "not_run_reason": self.not_run_reason,
        }


@dataclass(frozen=True)
class HostResult:
    host: str
    run_id: str
    timeout_s: float
    scenarios: tuple[ScenarioResult, ...]
    not_run_reason: str | None = None
    ignored_alerts: int = 0
    unattributed: tuple[Alert, ...] = ()  # this run's container names that match no scenario
    parse_errors: tuple[ParseError, ...] = ()

    def count(self, status: str) -> int:
        return sum(1 for scenario in self.scenarios if scenario.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "run_id": self.run_id,
            "timeout_s": self.timeout_s,
            "not_run_reason": self.not_run_reason,
            "scenarios": [scenario.to_dict() for scenario in self.scenarios],
            "ignored_alerts": self.ignored_alerts,
            "unattributed_alerts": [alert.to_dict() for alert in self.unattributed],
            "parse_errors": [error.to_dict() for error in self.parse_errors],
        }


@dataclass(frozen=True)
class VerifyResult:
    run_id: str
    timeout_s: float
    hosts: tuple[HostResult, ...] = field(default_factory=tuple)

    @property
    def detections_missed(self) -> bool:
        """True when any expected detection was missed or late (the command exits non-zero)."""
        return any(host.count(MISSED) for host in self.hosts)

    @property
    def false_positives(self) -> bool:
        return any(host.count(FALSE_POSITIVE) for host in self.hosts)

    def summary(self) -> dict[str, int]:
        totals = {status: 0 for status in (FIRED, MISSED, NOT_RUN, CLEAN, FALSE_POSITIVE)}
        for host in self.hosts:
            for scenario in host.scenarios:
                totals[scenario.status] += 1
        totals["parse_errors"] = sum(len(host.parse_errors) for host in self.hosts)
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "timeout_s": self.timeout_s, "summary": self.summary(),
                "hosts": [host.to_dict() for host in self.hosts]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def _same_container(alert_id: str, recorded: str) -> bool:
    alert_id, recorded = alert_id.lower(), recorded.lower()
    shorter, longer = sorted((alert_id, recorded), key=len)
    if len(shorter) < _SHORT_ID:
        return shorter == longer
    return longer.startswith(shorter)


def _hits(alerts: list[Alert], trigger_ns: int | None) -> dict[str, RuleHit]:
    by_rule: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_rule.setdefault(alert.rule, []).append(alert)
    hits = {}
    for rule, group in by_rule.items():
        first = min(alert.time_ns for alert in group)
        latency = None if trigger_ns is None else first - trigger_ns
        hits[rule] = RuleHit(rule, len(group), first, latency)
    return hits


def _judge(run: ScenarioRun, catalogue: Catalogue, alerts: list[Alert], timeout_ns: int,
           our_rules: frozenset[str]) -> ScenarioResult:
    scenario = catalogue.get(run.scenario)
    common = {"scenario": scenario.name, "benign": scenario.benign,
              "expected_rules": scenario.expected_rules, "container_name": run.container_name,
              "container_id": run.container_id, "trigger_ns": run.trigger_ns}
    if not run.ran:
        return ScenarioResult(status=NOT_RUN,
                              not_run_reason=run.not_run_reason or "no trigger time recorded",
                              **common)
    hits = _hits(alerts, run.trigger_ns)
    fired, late, missed = [], [], []
    for rule in scenario.expected_rules:
        hit = hits.get(rule)
        if hit is None:
            missed.append(rule)
        elif hit.latency_ns is not None and hit.latency_ns > timeout_ns:
            late.append(hit)
        else:
            fired.append(hit)
    others = [hit for rule, hit in sorted(hits.items()) if rule not in scenario.expected_rules]
    if scenario.benign:
        false_positives = tuple(hit for hit in others if hit.rule in our_rules)
        also = tuple(hit for hit in others if hit.rule not in our_rules)
        status = FALSE_POSITIVE if false_positives else CLEAN
    else:
        false_positives, also = (), tuple(others)
        status = MISSED if missed or late else FIRED
    return ScenarioResult(status=status, fired=tuple(fired), late=tuple(late),
                          missed=tuple(missed), also_fired=also,
                          false_positives=false_positives, **common)


def match_host(run: HostRun, alerts: Iterable[Alert], catalogue: Catalogue,
               timeout_s: float = DEFAULT_TIMEOUT_S,
               our_rules: Iterable[str] | None = None,
               parse_errors: Iterable[ParseError] = ()) -> HostResult:
    """Judge every scenario of one host's run against the alerts read from that host.

    `our_rules` are the rules whose alerts on benign scenarios count as false positives; by
    default every rule some scenario of the catalogue expects.
    """
    if timeout_s < 0:
        raise FalcoDeployError(f"timeout must not be negative (got {timeout_s})",
                               exit_code=ExitCode.USAGE)
    names = [scenario_run.scenario for scenario_run in run.scenarios]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise FalcoDeployError(f"scenarios recorded twice for {run.host}: {duplicates}",
                               exit_code=ExitCode.USAGE)
    ours = frozenset(our_rules) if our_rules is not None else catalogue.our_rules
    timeout_ns = round(timeout_s * _NS_PER_S)
    if run.not_run_reason is not None:
        scenario_runs = [ScenarioRun.skipped(sr.scenario, run.not_run_reason)
                         for sr in run.scenarios]
    else:
        scenario_runs = list(run.scenarios)

    by_name: dict[str, int] = {}
    by_id: list[tuple[str, int]] = []
    for index, scenario_run in enumerate(scenario_runs):
        if not scenario_run.ran:
            continue
        if scenario_run.container_name:
            by_name[scenario_run.container_name.lstrip("/")] = index
        if scenario_run.container_id:
            by_id.append((scenario_run.container_id, index))

    buckets: list[list[Alert]] = [[] for _ in scenario_runs]
    unattributed: list[Alert] = []
    ignored = 0
    for alert in alerts:
        name = alert.container_name
        if name is not None:
            name = name.lstrip("/")
            index = by_name.get(name)
            if index is None:
                ref = parse_container_name(name)
                if ref is not None and ref.run_id == run.run_id:
                    unattributed.append(alert)
                else:
                    ignored += 1
                continue
        else:
            # The name is unresolved (container metadata arrives asynchronously): fall back to
            # the id recorded when the container started.
            alert_id = alert.container_id
            index = next((i for recorded, i in by_id
                          if alert_id is not None and _same_container(alert_id, recorded)), None)
            if index is None:
                ignored += 1
                continue
        buckets[index].append(alert)

    results = tuple(_judge(scenario_run, catalogue, bucket, timeout_ns, ours)
                    for scenario_run, bucket in zip(scenario_runs, buckets, strict=True))
    return HostResult(host=run.host, run_id=run.run_id, timeout_s=timeout_s, scenarios=results,
                      not_run_reason=run.not_run_reason, ignored_alerts=ignored,
                      unattributed=tuple(unattributed), parse_errors=tuple(parse_errors))


def build_result(run_id: str, timeout_s: float,
                 hosts: Iterable[HostResult]) -> VerifyResult:
    hosts = tuple(hosts)
    foreign = sorted({host.run_id for host in hosts if host.run_id != run_id})
    if foreign:
        raise FalcoDeployError(f"host results of other runs: {foreign}",
                               exit_code=ExitCode.USAGE)
    return VerifyResult(run_id, timeout_s, hosts)

