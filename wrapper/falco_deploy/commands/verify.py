"""`falco-deploy verify`: run the purple-team scenarios on every Docker host of an inventory and
say, per host and scenario, whether Falco's expected rules fired, and how fast.

playbooks/verify.yml (role falco_verify) runs the scenarios and returns, per host, the scenario
runs (container name and id, trigger time from the host's clock) and the alert lines written
since the run began; this module parses those lines and matches them with the verify core
(falco_deploy.verify), then derives the exit code. No alert is ever made up here: a scenario
without an alert of its expected rule is "missed".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from falco_deploy import __version__, runner
from falco_deploy.commands.playbook import (
    resolve_extra_vars,
    resolve_inventories,
    why_no_host_ran,
)
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import find_project
from falco_deploy.results import EventCollector, HostState
from falco_deploy.verify.alerts import parse_alert_lines
from falco_deploy.verify.junit import write_junit
from falco_deploy.verify.matcher import (
    DEFAULT_TIMEOUT_S,
    NOT_RUN,
    HostResult,
    HostRun,
    ScenarioRun,
    VerifyResult,
    build_result,
    match_host,
)
from falco_deploy.verify.scenarios import Catalogue, Scenario, load_catalogue, new_run_id

COMMAND = "verify"
SCHEMA = "falco-deploy.verify/v1"
RESULT_VAR = "falco_deploy_result"
# ansible-core's words when no inventory source parsed (ansible/inventory/manager.py).
ProgressCallback = Callable[[dict[str, Any], EventCollector], None]


@dataclass
class VerifyOptions:
    inventory: list[str]
    scenarios: list[str] = field(default_factory=list)  # names; empty means the whole catalogue
    timeout: float = DEFAULT_TIMEOUT_S
    junit: str | None = None
    limit: str | None = None
    extra_vars: list[str] = field(default_factory=list)
    output: str = "text"
    catalogue: str | None = None  # a site's own scenarios.yaml
    project_dir: str | None = None
    artifacts_dir: str | None = None
    verbosity: int = 0


@dataclass
class ScenarioNote:
    """What the host said about one scenario run beyond the matcher's inputs."""

    exit_code: int | None = None
    output: str = ""
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "output": self.output,
                "duration_s": self.duration_s}


@dataclass
class HostNotes:
    docker_version: str | None = None
    image: str | None = None
    alert_file: str | None = None
    alert_file_exists: bool | None = None
    alert_file_events: list[str] = field(default_factory=list)
    alert_lines_dropped: int = 0
    containers_removed: list[str] = field(default_factory=list)
    scenarios: dict[str, ScenarioNote] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "docker_version": self.docker_version, "image": self.image,
            "alert_file": self.alert_file, "alert_file_exists": self.alert_file_exists,
            "alert_file_events": list(self.alert_file_events),
            "alert_lines_dropped": self.alert_lines_dropped,
            "containers_removed": list(self.containers_removed),
            "scenario_runs": {name: note.to_dict() for name, note in self.scenarios.items()},
        }


@dataclass
class VerifyOutcome:
    result: VerifyResult
    notes: dict[str, HostNotes]
    artifacts_dir: str
    started: datetime
    finished: datetime
    junit_path: str | None = None
    error: str | None = None
    exit_code: ExitCode = ExitCode.OK

    def to_envelope(self) -> dict[str, Any]:
        """The versioned document `--output json` prints; adding keys is fine, renaming or
        removing one needs schema v2 (tests/unit/test_cli_verify.py pins them)."""
        body = self.result.to_dict()
        for host in body["hosts"]:
            host.update(self.notes.get(host["host"], HostNotes()).to_dict())
        return {
            "schema": SCHEMA,
            "command": COMMAND,
            "falco_deploy_version": __version__,
            "run_id": self.result.run_id,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "exit_code": int(self.exit_code),
            "exit_status": self.exit_code.name.lower(),
            "artifacts_dir": self.artifacts_dir,
            "junit": self.junit_path,
            "error": self.error,
            "timeout_s": self.result.timeout_s,
            "summary": body["summary"],
            "hosts": body["hosts"],
        }


def select_scenarios(catalogue: Catalogue, names: list[str]) -> tuple[Scenario, ...]:
    chosen = catalogue.select(names)
    scriptless = [scenario.name for scenario in chosen if not scenario.script.strip()]
    if scriptless:
        raise FalcoDeployError(
            f"scenarios without a script in {catalogue.source}: {', '.join(scriptless)}",
            hint="every scenario needs `script:` (and `docker_args:` when it needs privileges)",
            exit_code=ExitCode.USAGE)
    return chosen


def role_vars(run_id: str, scenarios: tuple[Scenario, ...], timeout: float) -> str:
    """The falco_verify variables as one JSON `-e` value (JSON keeps scripts byte-exact)."""
    return json.dumps({
        "falco_verify_run_id": run_id,
        "falco_verify_scenarios": [scenario.to_run_spec() for scenario in scenarios],
        "falco_verify_timeout": timeout,
    })


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def host_run(state: HostState, run_id: str, scenarios: tuple[Scenario, ...],
             unreachable: bool) -> tuple[HostRun, list[str], HostNotes]:
    """One host's run record, its alert lines and notes, from what its events said."""
    names = [scenario.name for scenario in scenarios]
    report = state.report if isinstance(state.report, dict) else None
    skipped = tuple(ScenarioRun.skipped(name, "host not run") for name in names)
    if unreachable:
        return (HostRun(state.name, run_id, skipped, f"unreachable: {state.unreachable}"),
                [], HostNotes())
    if report is None:
        reason = f"failed: {state.failure}" if state.failure else (
            f"finished without reporting {RESULT_VAR}")
        return HostRun(state.name, run_id, skipped, reason), [], HostNotes()
    notes = HostNotes(
        docker_version=report.get("docker_version") or None,
        image=report.get("image") or None,
        alert_file=report.get("alert_file") or None,
        alert_file_exists=bool(report.get("alert_file_exists")),
        alert_file_events=[str(e) for e in report.get("alert_file_events") or []],
        alert_lines_dropped=_int_or_none(report.get("alert_lines_dropped")) or 0,
        containers_removed=[str(c) for c in report.get("containers_removed") or []],
    )
    reported_id = report.get("verify_run_id")
    if reported_id and reported_id != run_id:
        return (HostRun(state.name, run_id, skipped,
                        f"failed: host reported run {reported_id}, expected {run_id}"), [], notes)
    if report.get("not_run_reason"):
        return HostRun(state.name, run_id, skipped, str(report["not_run_reason"])), [], notes
    by_name: dict[str, dict[str, Any]] = {}
    for entry in report.get("verify_runs") or []:
        if isinstance(entry, dict) and entry.get("scenario") in names:
            by_name[entry["scenario"]] = entry
    runs = []
    for name in names:
        entry = by_name.get(name)
        if entry is None:
            runs.append(ScenarioRun.skipped(name, "no run reported by the host"))
            continue
        notes.scenarios[name] = ScenarioNote(
            exit_code=_int_or_none(entry.get("exit_code")),
            output=str(entry.get("output") or ""),
            duration_s=entry.get("duration_s"))
        trigger = _int_or_none(entry.get("trigger_ns"))
        if entry.get("not_run_reason") or trigger is None:
            runs.append(ScenarioRun.skipped(
                name, str(entry.get("not_run_reason") or "no trigger time recorded")))
        else:
            runs.append(ScenarioRun(name, entry.get("container_name") or None, trigger,
                                    entry.get("container_id") or None))
    lines = [str(line) for line in report.get("alert_lines") or []]
    return HostRun(state.name, run_id, tuple(runs)), lines, notes


def exit_code_for(result: VerifyResult) -> ExitCode:
    """DETECTION_MISSED beats everything; then FAILED when nothing ran anywhere, PARTIAL when
    some scenario or host did not run. False positives show in the report and the JUnit file
    but do not change the exit code: they are tuning work, not a detection gap."""
    if result.detections_missed:
        return ExitCode.DETECTION_MISSED
    statuses = [scenario.status for host in result.hosts for scenario in host.scenarios]
    if not statuses or all(status == NOT_RUN for status in statuses):
        return ExitCode.FAILED
    if NOT_RUN in statuses:
        return ExitCode.PARTIAL
    return ExitCode.OK


def judge(collector: EventCollector, run_id: str, scenarios: tuple[Scenario, ...],
          catalogue: Catalogue, timeout: float) -> tuple[VerifyResult, dict[str, HostNotes]]:
    hosts: list[HostResult] = []
    notes: dict[str, HostNotes] = {}
    dark = (collector.stats or {}).get("dark") or {}
    for state in collector.hosts.values():
        run, lines, host_notes = host_run(state, run_id, scenarios,
                                          bool(state.unreachable) or state.name in dark)
        parsed = parse_alert_lines(lines)
        hosts.append(match_host(run, parsed.alerts, catalogue, timeout,
                                parse_errors=parsed.errors))
        notes[state.name] = host_notes
    return build_result(run_id, timeout, hosts), notes


def error_outcome(options: VerifyOptions, exc: FalcoDeployError) -> VerifyOutcome:
    """The outcome of a run stopped before any host ran (bad option, missing inventory...)."""
    now = datetime.now(timezone.utc)
    return VerifyOutcome(result=VerifyResult(run_id="", timeout_s=options.timeout), notes={},
                         artifacts_dir="", started=now, finished=now,
                         error=exc.message + (f" (hint: {exc.hint})" if exc.hint else ""),
                         exit_code=exc.exit_code)


def run(options: VerifyOptions, on_event: ProgressCallback | None = None) -> VerifyOutcome:
    if options.timeout < 0:
        raise FalcoDeployError(f"--timeout must not be negative (got {options.timeout:g})")
    catalogue = load_catalogue(options.catalogue)
    scenarios = select_scenarios(catalogue, options.scenarios)
    inventories = resolve_inventories(options.inventory)
    extra_vars = resolve_extra_vars(options.extra_vars)
    project = find_project(options.project_dir)
    playbook = project.playbook(COMMAND)
    artifacts = runner.artifacts_dir_for(COMMAND, options.artifacts_dir)
    run_id = new_run_id()

    collector = EventCollector(result_var=RESULT_VAR)

    def handle(event: dict[str, Any]) -> None:
        collector.feed(event)
        if on_event is not None:
            on_event(event, collector)

    started = datetime.now(timezone.utc)
    outcome = runner.run_playbook(
        runner.PlaybookRun(
            project=project, playbook=playbook, inventories=inventories,
            artifacts_dir=artifacts, limit=options.limit,
            # Ours last: the run id and the scenarios must be the ones this command matches;
            # the operator's -e may still set falco_verify_image and the like.
            extra_vars=[*extra_vars, role_vars(run_id, scenarios, options.timeout)],
            verbosity=options.verbosity,
        ),
        handle,
    )
    finished = datetime.now(timezone.utc)
    if outcome.canceled:
        raise KeyboardInterrupt

    result, notes = judge(collector, run_id, scenarios, catalogue, options.timeout)
    error = None
    exit_code = exit_code_for(result)
    if not result.hosts:
        error, exit_code = why_no_host_ran(outcome, collector, options.limit)
    junit_path = None
    if options.junit:
        junit_path = str(write_junit(result, options.junit))
    return VerifyOutcome(result=result, notes=notes, artifacts_dir=str(artifacts),
                         started=started, finished=finished, junit_path=junit_path,
                         error=error, exit_code=exit_code)
