"""Typed results of a run, the ansible-runner event stream turned into them, and the JSON envelope.

Pure Python: no ansible_runner or rich import, so tests feed recorded event dicts straight in.

Contract with the playbooks: every host that finishes, or that preflight skips, runs
`ansible.builtin.debug: var: falco_deploy_result`, so one `runner_on_ok` event carries
`event_data.res.falco_deploy_result` = {status: ok|skipped, reason, findings, falco_version,
driver, service}. The rules playbooks (rules_deploy, rollback, status) add status values
refused|rolled_back and the keys release, release_sha256, previous_release, drift, drift_files.

What a verdict is called, which verdicts the summary counts, which report keys a host's JSON
carries and how verdicts become an exit code depend on the command: see PROFILES.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from falco_deploy import __version__
from falco_deploy.exitcodes import ExitCode

SCHEMA = "falco-deploy.result/v1"
RESULT_VAR = "falco_deploy_result"


class Verdict(str, enum.Enum):
    INSTALLED = "installed"
    CONFIGURED = "configured"  # forwarding: the host's forwarding was set up or changed
    REMOVED = "removed"  # uninstall: Falco and falco-deploy's files went
    DEPLOYED = "deployed"  # rules deploy / rollback: the host switched to another release
    UNCHANGED = "unchanged"
    WOULD_CHANGE = "would change"  # check mode: the host is fine, a real run would change it
    REFUSED = "refused"  # the host's own `falco -V` rejected the set; nothing was switched
    ROLLED_BACK = "rolled back"  # switched, failed the health check, switched back
    IN_SYNC = "in sync"  # status: live rules match the active release's manifest
    DRIFTED = "drifted"  # status: live rules differ from the active release's manifest
    SKIPPED = "skipped"  # preflight found the host unfit; nothing was changed on it
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    NOT_RUN = "not run"  # --serial: an earlier batch failed, so this host's batch never started
    INTERRUPTED = "interrupted"  # the run was stopped by a signal before this host finished
    # Falco itself does not protect the host (the module's health statuses):
    NO_FALCO = "no falco"  # Falco is not installed
    FALCO_DOWN = "falco down"  # not running, or restarting in a loop
    RULES_MISSING = "rules missing"  # the rules folder is missing or a dangling symlink
    DEPLOYED_FALCO_DOWN = "deployed, falco down"  # the release went live on a stopped Falco
    # verify: every attack that ran was detected / one went undetected / some could not run
    VERIFIED = "verified"
    MISSED = "missed"
    INCOMPLETE = "incomplete"

    @property
    def good(self) -> bool:
        return self in (Verdict.INSTALLED, Verdict.CONFIGURED, Verdict.REMOVED, Verdict.DEPLOYED,
                        Verdict.UNCHANGED, Verdict.WOULD_CHANGE, Verdict.IN_SYNC,
                        Verdict.VERIFIED)

    @property
    def key(self) -> str:
        """The verdict as a JSON key of the summary: "would_change", "deployed_falco_down"."""
        return "_".join(self.value.replace(",", " ").split())

    @property
    def unprotected(self) -> bool:
        return self in (Verdict.NO_FALCO, Verdict.FALCO_DOWN, Verdict.RULES_MISSING,
                        Verdict.DEPLOYED_FALCO_DOWN)


# falco_deploy_result.status values of a host whose Falco does not protect it, and the verdict
# each one gets (module_utils/falco_rules_host.py, health_status).
_HEALTH_STATUS = {"no_falco": Verdict.NO_FALCO, "falco_down": Verdict.FALCO_DOWN,
                  "rules_missing": Verdict.RULES_MISSING}


_RULES_KEYS = ("release", "release_sha256", "previous_release", "drift", "drift_files",
               "falco_state", "rules_dir_state", "health_checks")


@dataclass(frozen=True)
class Profile:
    """How one command speaks about its hosts."""

    command: str
    changed: Verdict  # a host that reported ok and changed something (outside check mode)
    verdicts: tuple[Verdict, ...]  # what the summary counts, in table order
    report_keys: tuple[str, ...] = ()  # falco_deploy_result keys copied into a host's JSON
    drift_is_news: bool = False  # status: an ok host whose report says drift is DRIFTED
    # falco_deploy_result.status values of this command's own and the verdict of each.
    statuses: tuple[tuple[str, Verdict], ...] = ()

    @property
    def slug(self) -> str:
        """The command as one word, for artifact directory names."""
        return self.command.replace(" ", "-")


_UNPROTECTED = (Verdict.NO_FALCO, Verdict.FALCO_DOWN, Verdict.RULES_MISSING)
_DEPLOY_VERDICTS = (Verdict.DEPLOYED, Verdict.UNCHANGED, Verdict.WOULD_CHANGE, Verdict.REFUSED,
                    Verdict.ROLLED_BACK, Verdict.DEPLOYED_FALCO_DOWN, *_UNPROTECTED,
                    Verdict.SKIPPED, Verdict.FAILED, Verdict.UNREACHABLE, Verdict.NOT_RUN)
PROFILES = {
    # install's summary and host keys are pinned by tests/unit/test_json_envelope.py.
    "install": Profile("install", Verdict.INSTALLED,
                       (Verdict.INSTALLED, Verdict.UNCHANGED, Verdict.WOULD_CHANGE,
                        Verdict.SKIPPED, Verdict.FAILED, Verdict.UNREACHABLE)),
    "rules deploy": Profile("rules deploy", Verdict.DEPLOYED, _DEPLOY_VERDICTS, _RULES_KEYS),
    "rollback": Profile("rollback", Verdict.DEPLOYED, _DEPLOY_VERDICTS, _RULES_KEYS),
    "status": Profile("status", Verdict.IN_SYNC,
                      (Verdict.IN_SYNC, Verdict.DRIFTED, *_UNPROTECTED, Verdict.SKIPPED,
                       Verdict.FAILED, Verdict.UNREACHABLE, Verdict.NOT_RUN),
                      _RULES_KEYS + ("engine_kind", "unit_state"), drift_is_news=True),
    # playbooks/forwarding.yml (role falco_forwarding): where the host's alerts go now.
    "forwarding": Profile("forwarding", Verdict.CONFIGURED,
                          (Verdict.CONFIGURED, Verdict.UNCHANGED, Verdict.WOULD_CHANGE,
                           Verdict.SKIPPED, Verdict.FAILED, Verdict.UNREACHABLE),
                          ("transport", "outputs", "endpoint")),
    # roles/falco_uninstall: what went (under --check: would go) and what stayed.
    "uninstall": Profile("uninstall", Verdict.REMOVED,
                         (Verdict.REMOVED, Verdict.UNCHANGED, Verdict.WOULD_CHANGE,
                          Verdict.FAILED, Verdict.UNREACHABLE), ("removed", "kept")),
    # roles/falco_verify/tasks/report.yml: per host the judged scenarios and their counts.
    "verify": Profile("verify", Verdict.VERIFIED,
                      (Verdict.VERIFIED, Verdict.MISSED, Verdict.INCOMPLETE, Verdict.NOT_RUN,
                       Verdict.FAILED, Verdict.UNREACHABLE),
                      ("verify_run_id", "scenarios", "counts", "docker_version", "image",
                       "alert_file", "alert_file_exists", "alert_file_events", "alerts_ignored",
                       "internal_documents", "containers_removed", "stale_containers_removed",
                       "forwarding"),
                      statuses=(("verified", Verdict.VERIFIED), ("missed", Verdict.MISSED),
                                ("incomplete", Verdict.INCOMPLETE),
                                ("not_run", Verdict.NOT_RUN))),
}


def profile_for(command: str) -> Profile:
    try:
        return PROFILES[command]
    except KeyError:
        raise ValueError(f"no result profile for command {command!r}") from None


@dataclass
class TaskCounts:
    ok: int = 0  # tasks that succeeded, changed or not
    changed: int = 0
    failed: int = 0  # failures that were not ignored
    skipped: int = 0
    ignored: int = 0  # failures with ignore_errors

    def to_dict(self) -> dict[str, int]:
        return {"ok": self.ok, "changed": self.changed, "failed": self.failed,
                "skipped": self.skipped, "ignored": self.ignored}


@dataclass
class HostResult:
    host: str
    verdict: Verdict
    reason: str = ""
    findings: list[str] = field(default_factory=list)
    falco_version: str | None = None
    driver: str | None = None
    service: str | None = None
    tasks: TaskCounts = field(default_factory=TaskCounts)
    # What changed (or, under --check, would change): see HostState.planned.
    planned: list[str] = field(default_factory=list)
    # The profile's report_keys as the host reported them (None: not reported); install has none.
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return self.tasks.changed

    @property
    def release(self) -> str:
        return str(self.details.get("release") or "")

    @property
    def release_sha256(self) -> str:
        return str(self.details.get("release_sha256") or "")

    @property
    def previous_release(self) -> str:
        return str(self.details.get("previous_release") or "")

    @property
    def drift(self) -> bool | None:
        value = self.details.get("drift")
        return None if value is None else bool(value)

    @property
    def drift_files(self) -> list[str]:
        return [str(f) for f in self.details.get("drift_files") or []]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "host": self.host,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "findings": list(self.findings),
            "falco_version": self.falco_version,
            "driver": self.driver,
            "service": self.service,
            "changed": self.changed,
            "tasks": self.tasks.to_dict(),
            "planned": list(self.planned),
        }
        out.update(self.details)
        return out


def exit_code_for(hosts: list[HostResult]) -> ExitCode:
    """OK when every host is good, PARTIAL when some are, FAILED when none are (or none ran).

    DETECTION_MISSED first (verify: an attack went undetected on some host), then UNPROTECTED:
    some host answered and its Falco is not installed, not running or has no rules folder.
    DRIFT when no host is bad but some drifted (status): every host answered, the fleet is not
    what its manifests say. A failed or unreachable host outranks drift."""
    if any(h.verdict == Verdict.MISSED for h in hosts):
        return ExitCode.DETECTION_MISSED
    if any(h.verdict.unprotected for h in hosts):
        return ExitCode.UNPROTECTED
    good = sum(1 for h in hosts if h.verdict.good)
    drifted = sum(1 for h in hosts if h.verdict == Verdict.DRIFTED)
    # verify: a host where some scenarios ran and were all detected is partly good.
    incomplete = sum(1 for h in hosts if h.verdict == Verdict.INCOMPLETE)
    if hosts and good == len(hosts):
        return ExitCode.OK
    if hosts and good + drifted == len(hosts):
        return ExitCode.DRIFT
    if good or drifted or incomplete:
        return ExitCode.PARTIAL
    return ExitCode.FAILED


@dataclass
class RunResult:
    command: str
    hosts: list[HostResult]
    artifacts_dir: str
    check_mode: bool
    started: datetime
    finished: datetime
    error: str | None = None  # the run as a whole went wrong (no host ran, playbook error)
    exit_code: ExitCode | None = None  # derived from hosts unless given
    # rules deploy: the offline validation the playbook ran before any host was touched
    # ({"ok", "falco_version", "base", "files", "allow_warnings", "falco_load_results"});
    # None for other commands.
    validation: dict[str, Any] | None = None
    validation_text: str | None = None  # the validator's human output, for the text summary
    # verify: the run as a whole ({"run_id", "timeout_s", "scenarios", "catalogue", "junit"}).
    verify: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.exit_code is None:
            self.exit_code = exit_code_for(self.hosts)

    @property
    def profile(self) -> Profile:
        return profile_for(self.command)

    def summary(self) -> dict[str, int]:
        counts = {"hosts": len(self.hosts)}
        for verdict in self.profile.verdicts:
            counts[verdict.key] = 0
        for h in self.hosts:
            # A verdict outside the profile's table (install meeting a stopped Falco) still counts.
            counts[h.verdict.key] = counts.get(h.verdict.key, 0) + 1
        counts["changed_tasks"] = sum(h.changed for h in self.hosts)
        per_scenario = [h.details["counts"] for h in self.hosts
                        if isinstance(h.details.get("counts"), dict)]
        if self.command == "verify":
            # Scenarios over all hosts, by status (detected, missed, not_run, clean, ...).
            counts["scenarios"] = {key: sum(int(c.get(key) or 0) for c in per_scenario)
                                   for key in ("detected", "missed", "not_run", "clean",
                                               "false_positive")}
        return counts

    def to_envelope(self) -> dict[str, Any]:
        """The versioned JSON document `--output json` prints; tests/unit/test_json_envelope.py
        pins its keys. Adding a key is fine; renaming or removing one needs schema v2."""
        assert self.exit_code is not None
        doc = {
            "schema": SCHEMA,
            "command": self.command,
            "falco_deploy_version": __version__,
            "check_mode": self.check_mode,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "exit_code": int(self.exit_code),
            "exit_status": self.exit_code.name.lower(),
            "artifacts_dir": self.artifacts_dir,
            "error": self.error,
            "hosts": [h.to_dict() for h in self.hosts],
            "summary": self.summary(),
        }
        if self.validation is not None:
            doc["validation"] = self.validation
        if self.verify is not None:
            doc["verify"] = self.verify
        return doc


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    line = lines[0].strip() if lines else ""
    # ansible-core >= 2.19 prefixes connection errors with this; it says nothing in a summary.
    return line.removeprefix("Task failed: ") or line


def _failure_message(res: dict[str, Any]) -> str:
    """The most telling one-line message of a failed task result."""
    msg = res.get("msg")
    # When a module never ran (container gone, interpreter missing) msg is a generic
    # "Module result deserialization failed" / "MODULE FAILURE"; module_stderr says why.
    if res.get("module_stderr") and (not msg or "MODULE FAILURE" in str(msg)
                                     or "deserialization failed" in str(msg)):
        msg = res["module_stderr"]
    # A failed loop says only "One or more items failed"; the failing item says why.
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            msg = item.get("msg") or item.get("stderr") or msg
            break
    if not msg:
        msg = res.get("stderr") or res.get("reason") or "failed"
    return _first_line(msg)


@dataclass
class HostState:
    """What is known about a host while the run goes on; the renderer reads it for progress."""

    name: str
    current_task: str = ""
    counts: TaskCounts = field(default_factory=TaskCounts)
    failure: str = ""  # "<task>: <msg>" of the last failure that was not ignored
    unreachable: str = ""
    report: dict[str, Any] | None = None
    # Names of the tasks that changed something, plus the roles' own plan messages: a step that
    # --check cannot simulate (e.g. installing from a repository not configured yet) is announced
    # by a debug task whose message starts with "Would ". Together: what a --check run would do.
    planned: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.counts.failed:
            return "failed"
        if self.report is not None:
            return str(self.report.get("status") or "done")
        return "running"


class EventCollector:
    """Turns ansible-runner events (the dicts its event_handler receives, the same as
    artifacts/<ident>/job_events/*.json) into per-host state and, at the end, HostResults."""

    def __init__(self, check_mode: bool = False, result_var: str = RESULT_VAR,
                 command: str = "install") -> None:
        self.check_mode = check_mode
        self.result_var = result_var
        self.profile = profile_for(command)
        self.hosts: dict[str, HostState] = {}
        self.not_run_reason = ""
        self.stats: dict[str, Any] | None = None
        self.no_hosts_matched = False
        self.current_task = ""
        # The signal that stopped the run ("SIGTERM"), or "" when it ran to its end.
        self.interrupted = ""
        # rules deploy: the offline gate's verdict, from the falco_rules_bundle task's result
        # (one per batch; a refusal is kept over a later pass)
        self.validation: dict[str, Any] | None = None

    def expect_hosts(self, names: list[str], reason: str) -> None:
        """Hosts the play targeted; those that never show up in the events are NOT_RUN."""
        self.not_run_reason = reason
        for name in names:
            self._host(name)

    def _never_ran(self, host: HostState) -> bool:
        processed = (self.stats or {}).get("processed") or {}
        return (bool(self.not_run_reason) and host.name not in processed
                and host.report is None and not host.unreachable and not host.current_task
                and host.counts == TaskCounts())

    def _host(self, name: str) -> HostState:
        if name not in self.hosts:
            self.hosts[name] = HostState(name)
        return self.hosts[name]

    def feed(self, event: dict[str, Any]) -> HostState | None:
        """Take one event; return the host it was about, if any."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.current_task = data.get("task") or data.get("name") or ""
            return None
        if kind == "playbook_on_no_hosts_matched":
            self.no_hosts_matched = True
            return None
        if kind == "playbook_on_stats":
            self.stats = data
            for name in data.get("processed") or {}:
                self._host(name)
            return None
        # Per-item events (runner_item_on_*) are followed by one runner_on_* for the whole task,
        # which is what ansible's own recap counts.
        if not kind.startswith("runner_on_") or not data.get("host"):
            return None

        host = self._host(data["host"])
        task = data.get("task") or ""
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        if isinstance(res.get("validation"), dict) and (
                self.validation is None or self.validation.get("ok")):
            self.validation = res["validation"]
        if kind == "runner_on_start":
            host.current_task = task
        elif kind == "runner_on_ok":
            host.counts.ok += 1
            if res.get("changed"):
                host.counts.changed += 1
                # A task that says what it changed (falco_uninstall's plan) is listed by that.
                plan = res.get("plan")
                if isinstance(plan, list) and plan and all(isinstance(p, str) for p in plan):
                    host.planned.extend(plan)
                else:
                    host.planned.append(task)
            elif isinstance(res.get("msg"), str) and res["msg"].startswith("Would "):
                host.planned.append(_first_line(res["msg"]))
            report = res.get(self.result_var)
            if isinstance(report, dict):
                host.report = report
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                host.counts.ignored += 1
            else:
                host.counts.failed += 1
                msg = _failure_message(res)
                host.failure = f"{task}: {msg}" if task else msg
        elif kind == "runner_on_skipped":
            # ansible's recap does not count skipped meta tasks (e.g. a conditional end_host).
            if data.get("task_action") not in ("meta", "ansible.builtin.meta"):
                host.counts.skipped += 1
        elif kind == "runner_on_unreachable":
            host.unreachable = _first_line(res.get("msg")) or "unreachable"
        return host

    def _failed_for_good(self, host: HostState) -> bool:
        # A failure inside a block with a rescue is not the host's end; the recap knows.
        if self.stats is not None:
            return host.name in (self.stats.get("failures") or {})
        return host.counts.failed > 0

    def _unreachable(self, host: HostState) -> bool:
        if host.unreachable:
            return True
        return self.stats is not None and host.name in (self.stats.get("dark") or {})

    def result_for(self, host: HostState) -> HostResult:
        report = host.report or {}
        findings = [str(f) for f in report.get("findings") or []]
        profile = self.profile
        details = {key: report.get(key) for key in profile.report_keys}
        if "engine_kind" in details and details["engine_kind"] is None:
            details["engine_kind"] = report.get("driver")
        if "unit_state" in details and details["unit_state"] is None:
            details["unit_state"] = report.get("service")
        result = HostResult(
            host=host.name,
            verdict=Verdict.FAILED,
            findings=findings,
            falco_version=report.get("falco_version") or None,
            driver=report.get("driver") or None,
            service=report.get("service") or None,
            tasks=host.counts,
            planned=list(host.planned),
            details=details,
        )
        status = report.get("status")
        if self._unreachable(host):
            result.verdict = Verdict.UNREACHABLE
            result.reason = host.unreachable or "unreachable"
        elif self._never_ran(host):
            result.verdict = Verdict.NOT_RUN
            result.reason = self.not_run_reason
        elif self.interrupted and host.report is None and host.counts.failed == 0:
            result.verdict = Verdict.INTERRUPTED
            task = host.current_task or self.current_task
            result.reason = f"{self.interrupted}" + (f" during: {task}" if task else "")
        elif status in ("refused", "rolled_back"):
            # The role may fail the host after reporting (so --serial stops the later batches);
            # the report says why, which is worth more than the name of the failing task.
            result.verdict = Verdict.REFUSED if status == "refused" else Verdict.ROLLED_BACK
            result.reason = (_first_line(report.get("reason"))
                             or host.failure.split(": ", 1)[-1] or status.replace("_", " "))
        elif status in dict(profile.statuses):
            result.verdict = dict(profile.statuses)[status]
            result.reason = _first_line(report.get("reason"))
        elif status in _HEALTH_STATUS:
            result.verdict = _HEALTH_STATUS[status]
            if status == "falco_down" and host.counts.changed and not self.check_mode \
                    and profile.changed == Verdict.DEPLOYED:
                result.verdict = Verdict.DEPLOYED_FALCO_DOWN
            result.reason = _first_line(report.get("reason")) or status.replace("_", " ")
        elif self._failed_for_good(host):
            result.reason = host.failure or "failed"
        elif host.report is None:
            result.reason = f"finished without reporting {self.result_var}"
        elif status == "skipped":
            result.verdict = Verdict.SKIPPED
            result.reason = _first_line(report.get("reason")) or "skipped by preflight"
        elif status == "ok" and profile.drift_is_news:
            result.verdict = Verdict.DRIFTED if report.get("drift") else Verdict.IN_SYNC
            result.reason = _first_line(report.get("reason"))
            if result.verdict == Verdict.DRIFTED and not result.reason:
                files = result.drift_files
                result.reason = (f"{len(files)} live file(s) differ from the manifest: "
                                 + ", ".join(files)) if files else "live rules differ"
        elif status == "ok":
            if host.counts.changed == 0:
                result.verdict = Verdict.UNCHANGED
            elif self.check_mode:
                result.verdict = Verdict.WOULD_CHANGE
            else:
                result.verdict = profile.changed
            result.reason = _first_line(report.get("reason"))
        else:
            result.reason = f"unexpected {self.result_var}.status {status!r}"
        return result

    def results(self) -> list[HostResult]:
        return [self.result_for(h) for h in self.hosts.values()]
