"""Progress while a run goes on and the summary after it (rich), or the JSON envelope.

Progress is one live row per host on a terminal, and a few plain lines per host otherwise (one
per change of its state), so CI logs stay readable at fleet scale. In JSON mode stdout carries
only the envelope; progress goes to stderr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from falco_deploy.exitcodes import ExitCode
from falco_deploy.results import EventCollector, HostResult, HostState, RunResult, Verdict

_VERDICT_STYLE = {
    Verdict.INSTALLED: "green",
    Verdict.CONFIGURED: "green",
    Verdict.REMOVED: "green",
    Verdict.DEPLOYED: "green",
    Verdict.UNCHANGED: "green",
    Verdict.IN_SYNC: "green",
    Verdict.WOULD_CHANGE: "cyan",
    Verdict.SKIPPED: "yellow",
    Verdict.DRIFTED: "yellow",
    Verdict.REFUSED: "bold red",
    Verdict.ROLLED_BACK: "bold red",
    Verdict.FAILED: "bold red",
    Verdict.UNREACHABLE: "bold red",
    Verdict.NOT_RUN: "red",
    Verdict.INTERRUPTED: "bold red",
    Verdict.NO_FALCO: "bold red",
    Verdict.FALCO_DOWN: "bold red",
    Verdict.RULES_MISSING: "bold red",
    Verdict.DEPLOYED_FALCO_DOWN: "bold red",
    Verdict.VERIFIED: "green",
    Verdict.MISSED: "bold red",
    Verdict.INCOMPLETE: "yellow",
}

_EXIT_MEANING = {
    ExitCode.OK: "every host is good",
    ExitCode.RULES_INVALID: "the rules set failed offline validation; no host was touched",
    ExitCode.PARTIAL: "some hosts failed, were skipped or were unreachable",
    ExitCode.FAILED: "no host succeeded",
    ExitCode.DRIFT: "every host answered; some live rules differ from their release manifest",
    ExitCode.UNPROTECTED: "on some host Falco is not installed, not running or has no rules",
    ExitCode.DETECTION_MISSED: "on some host an attack went undetected",
    ExitCode.INTERRUPTED: "stopped by Ctrl-C; hosts that had not finished are listed",
    ExitCode.TERMINATED: "stopped by SIGTERM; hosts that had not finished are listed",
    ExitCode.HANGUP: "stopped by SIGHUP; hosts that had not finished are listed",
}

# Wide enough that a host's reason stays on one line in CI logs, where there is no terminal width.
_PLAIN_WIDTH = 160


def make_console(stream: IO[str]) -> Console:
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, width=_PLAIN_WIDTH, no_color=True, highlight=False,
                   soft_wrap=False)


def _line(console: Console, text: str) -> None:
    """Plain text as is: no markup, no highlighting, never wrapped (one event, one log line)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


# Tasks that are the run's bookkeeping, not a step of the host's work: role argument checks,
# variable plumbing, includes. They count in the recap but never become a host's "step".
_BOOKKEEPING_ACTIONS = frozenset(
    f"{prefix}{name}" for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in ("validate_argument_spec", "meta", "set_fact", "include_tasks", "import_tasks",
                 "include_role", "import_role", "include_vars", "add_host", "group_by"))
_ARG_SPEC_TASK = "Validating arguments against arg spec"
# Above this many hosts the live view shows counts per state and only the running and failed
# hosts' rows: 30 rows still fit a terminal, a fleet does not.
COMPACT_ABOVE = 30


def is_bookkeeping(data: dict[str, Any]) -> bool:
    return (str(data.get("task_action") or "") in _BOOKKEEPING_ACTIONS
            or str(data.get("task") or "").startswith(_ARG_SPEC_TASK))


class _Row:
    """What the progress view keeps of a host beyond the collector's state."""

    __slots__ = ("started", "ended", "step", "stage", "done_said")

    def __init__(self) -> None:
        self.started: float | None = None
        self.ended: float | None = None
        self.step = ""  # "role: task" of the last real task started
        self.stage = ""  # the role (or play) it belongs to: a plain line when it changes
        self.done_said = False


def _elapsed(row: _Row, now: float) -> str:
    if row.started is None:
        return ""
    seconds = int((row.ended if row.ended is not None else now) - row.started)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _host_phase(host: HostState, row: _Row) -> str:
    """waiting, running, or the host's end: failed, unreachable, or its reported status."""
    phase = host.state
    if phase != "running":
        return phase
    if row.ended is not None:
        return "done"
    c = host.counts
    seen = row.started is not None or host.current_task or c.ok or c.changed or c.skipped
    return "running" if seen else "waiting"


def _mark(phase: str):
    if phase == "running":
        return Spinner("dots", style="cyan")
    if phase == "waiting":
        return Text("·", style="dim")
    if phase in ("failed", "unreachable"):
        return Text("✗", style="bold red")
    if phase == "skipped":
        return Text("–", style="yellow")
    return Text("✓", style="green")


def _verdict_text(collector: EventCollector, host: HostState, phase: str) -> str:
    """A finished host's verdict as the summary will say it ("installed", "would change",
    "skipped: <reason>"), from the result the host reported."""
    if host.report is None:
        return phase
    try:
        result = collector.result_for(host)
    except Exception:  # a report the summary will flag; progress just shows the status
        return phase
    return result.verdict.value + (f": {result.reason}" if result.reason else "")


def _counts_line(phases: list[str]) -> str:
    order = ["running", "waiting", "failed", "unreachable", "skipped"]
    counts: dict[str, int] = {}
    for phase in phases:
        key = phase if phase in order else "done"
        counts[key] = counts.get(key, 0) + 1
    return " · ".join(f"{counts[k]} {k}" for k in ["done", *order] if counts.get(k))


def _progress_table(collector: EventCollector, rows: dict[str, _Row] | None = None,
                    now: float | None = None) -> Table:
    """One row per host: mark, host, step (or the end, with a failure's reason), counters,
    elapsed time. Above COMPACT_ABOVE hosts only running and failed hosts get a row, under a
    caption that counts the hosts per state."""
    rows = rows if rows is not None else {}
    now = time.monotonic() if now is None else now
    hosts = list(collector.hosts.values())
    phases = {h.name: _host_phase(h, rows.get(h.name) or _Row()) for h in hosts}
    compact = len(hosts) > COMPACT_ABOVE
    table = Table(title=(f"[dim]{escape(collector.current_task)}[/]" if collector.current_task
                         and not compact else None),
                  caption=_counts_line(list(phases.values())) if compact else None,
                  expand=False, show_edge=False)
    table.add_column("", width=1)
    table.add_column("host", no_wrap=True)
    table.add_column("step", no_wrap=True, overflow="ellipsis", max_width=72)
    for col in ("ok", "changed", "failed", "skipped"):
        table.add_column(col, justify="right")
    table.add_column("time", justify="right")
    for host in hosts:
        phase = phases[host.name]
        if compact and phase not in ("running", "failed", "unreachable"):
            continue
        row = rows.get(host.name) or _Row()
        if phase == "failed":
            step = f"[red]failed: {escape(host.failure)}[/]"
        elif phase == "unreachable":
            step = f"[red]unreachable: {escape(host.unreachable)}[/]"
        elif phase == "running":
            step = escape(row.step or host.current_task)
        elif phase == "waiting":
            step = "[dim]waiting[/]"
        else:
            step = escape(_verdict_text(collector, host, phase))
        c = host.counts
        table.add_row(_mark(phase), escape(host.name), step, str(c.ok),
                      f"[yellow]{c.changed}[/]" if c.changed else "0",
                      f"[red]{c.failed}[/]" if c.failed else "0", str(c.skipped),
                      _elapsed(row, now))
    return table


_PLAIN_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def plain_line(event: dict[str, Any], host: HostState | None) -> str | None:
    """One line for a host event, or None for events a log reader does not need."""
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    word = _PLAIN_EVENTS.get(kind)
    if word is None or host is None:
        return None
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    if kind == "runner_on_ok" and res.get("changed"):
        word = "changed"
    if kind == "runner_on_failed" and data.get("ignore_errors"):
        word = "failed (ignored)"
    line = f"{host.name} | {word} | {data.get('task', '')}"
    if kind == "runner_on_unreachable":
        line += f" | {host.unreachable}"
    elif kind == "runner_on_failed" and not data.get("ignore_errors"):
        line += f" | {host.failure.split(': ', 1)[-1]}"
    return line


class Progress:
    """Receives (event, collector) from any Ansible-backed command and draws progress.

    On a terminal: a live table, one row per host updated in place (rich's Live; the last frame
    stays on screen, also after Ctrl-C). Otherwise a few plain lines per host, one per change
    of state: started, a new stage (role), failed or unreachable with the reason, done with its
    status. `-v` adds a line per task (and per skipped task), as ansible prints them."""

    def __init__(self, console: Console, live: bool | None = None, verbosity: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self.verbosity = verbosity
        self.clock = clock
        self.rows: dict[str, _Row] = {}
        self._live: Live | None = None
        self._collector: EventCollector | None = None

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(Text("starting ansible-playbook ..."), console=self.console,
                              refresh_per_second=8, transient=False,
                              get_renderable=self._frame)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            if self._collector is not None:
                self._finish_all(self.clock())
            self._live.refresh()
            self._live.__exit__(None, None, None)
            self._live = None

    def _frame(self):
        if self._collector is None or not self._collector.hosts:
            return Text("starting ansible-playbook ...")
        return _progress_table(self._collector, self.rows, self.clock())

    def _row(self, name: str, now: float) -> tuple[_Row, bool]:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = _Row()
        first = row.started is None
        if first:
            row.started = now
        return row, first

    def _finish_all(self, now: float) -> None:
        for row in self.rows.values():
            if row.started is not None and row.ended is None:
                row.ended = now

    def __call__(self, event: dict[str, Any], collector: EventCollector) -> None:
        self._collector = collector
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        name = data.get("host") or ""
        host = collector.hosts.get(name)
        if kind == "runner_on_file_diff":
            self._diff(event, data)
            return
        now = self.clock()
        said: list[str] = []
        if kind == "playbook_on_stats":
            for h in collector.hosts.values():
                row = self.rows.get(h.name)
                if row is not None and row.started is not None and not row.done_said:
                    row.ended = row.ended or now
                    row.done_said = True
                    said.append(self._done_line(collector, h, row))
        elif host is not None and kind.startswith("runner_on_"):
            row, first = self._row(name, now)
            if first:
                said.append(f"{name} | started")
            if kind == "runner_on_start" and not is_bookkeeping(data):
                role = str(data.get("role") or "")
                task = str(data.get("task") or "")
                row.step = f"{role}: {task}" if role else task
                stage = role or str(data.get("play") or "")
                if stage and stage != row.stage:
                    row.stage = stage
                    said.append(f"{name} | step | {stage}")
            phase = _host_phase(host, row)
            if phase in ("failed", "unreachable"):
                row.ended = row.ended or now
            if host.report is not None and not row.done_said and phase not in (
                    "failed", "unreachable"):
                row.ended = row.ended or now
                row.done_said = True
                said.append(self._done_line(collector, host, row))
        line = plain_line(event, host)
        trouble = line is not None and (kind == "runner_on_unreachable" or (
            kind == "runner_on_failed" and not data.get("ignore_errors")))
        if self._live is not None:
            # The view redraws itself from the collector (get_renderable, 8 times a second).
            # The reason is in the host's row; the whole line also stays above the table.
            if trouble:
                self._live.console.print(line, markup=False, highlight=False, style="red")
            return
        if self.verbosity >= 1:
            # ansible's per-task lines, as before: every task, skipped ones included
            if line is not None:
                _line(self.console, line)
            return
        for text in said:
            _line(self.console, text)
        if trouble:
            _line(self.console, line)

    @staticmethod
    def _done_line(collector: EventCollector, host: HostState, row: _Row) -> str:
        phase = _host_phase(host, row)
        if phase in ("failed", "unreachable"):
            return f"{host.name} | done | {phase}"
        return f"{host.name} | done | " + _verdict_text(collector, host, phase).replace(
            ": ", " | ", 1)

    def _diff(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        """--diff: ansible's own rendering of a changed (or, under --check, would-change) file,
        under a `host | diff | task` line; above the live table when there is one."""
        text = Text.from_ansi(str(event.get("stdout") or "").replace("\r\n", "\n"))
        text.rstrip()
        if not text.plain:
            return
        console = self._live.console if self._live is not None else self.console
        console.print(f"{data.get('host', '')} | diff | {data.get('task', '')}", markup=False,
                      highlight=False, soft_wrap=True)
        console.print(text, highlight=False, soft_wrap=True)


def _short(sha256: str) -> str:
    return sha256[:12] if sha256 else ""


def _release(h: HostResult) -> str:
    """Release id and short manifest hash: the two things to compare across hosts."""
    if not h.release:
        return "-"
    return f"{h.release} ({_short(h.release_sha256)})" if h.release_sha256 else h.release


def _drift(h: HostResult) -> str:
    if h.drift is None:
        return "-"
    return f"yes ({len(h.drift_files)} files)" if h.drift else "no"


# Columns after host and verdict, per command: (header, cell, justify).
_Column = tuple[str, Callable[[HostResult], str], str]
_COLUMNS: dict[str, list[_Column]] = {
    "install": [
        ("falco", lambda h: h.falco_version or "-", "left"),
        ("driver", lambda h: h.driver or "-", "left"),
        ("service", lambda h: h.service or "-", "left"),
        ("changed", lambda h: str(h.changed), "right"),
    ],
    "rules deploy": [
        ("release", _release, "left"),
        ("previous", lambda h: h.previous_release or "-", "left"),
        ("falco", lambda h: h.falco_version or "-", "left"),
        ("changed", lambda h: str(h.changed), "right"),
    ],
    "status": [
        ("falco", lambda h: h.falco_version or "-", "left"),
        ("engine", lambda h: str(h.details.get("engine_kind") or "-"), "left"),
        ("unit", lambda h: str(h.details.get("unit_state") or "-"), "left"),
        ("release", _release, "left"),
        ("drift", _drift, "left"),
    ],
}
_COLUMNS["rollback"] = _COLUMNS["rules deploy"]
# What went is listed below the table (and, under --check, what would go).
_COLUMNS["uninstall"] = [
    ("removed", lambda h: str(len(h.details.get("removed") or [])) if h.details else "-",
     "right"),
    ("kept", lambda h: "; ".join(h.details.get("kept") or []) or "-", "left"),
]


_COLUMNS["forwarding"] = [
    ("transport", lambda h: str(h.details.get("transport") or "-"), "left"),
    ("outputs", lambda h: ", ".join(h.details.get("outputs") or []) or "-", "left"),
    ("endpoint", lambda h: str(h.details.get("endpoint") or "-"), "left"),
    ("changed", lambda h: str(h.changed), "right"),
]


def _counts(h: HostResult) -> dict[str, int]:
    counts = h.details.get("counts")
    return counts if isinstance(counts, dict) else {}


def _detected(h: HostResult) -> str:
    scenarios = h.details.get("scenarios") or []
    attacks = sum(1 for s in scenarios if s.get("kind") == "attack")
    return f"{_counts(h).get('detected', 0)}/{attacks}" if scenarios else "-"


def _ours(h: HostResult) -> str:
    scenarios = [s for s in h.details.get("scenarios") or [] if s.get("kind") == "attack"
                 and s.get("status") == "detected"]
    return f"{sum(1 for s in scenarios if s.get('ours_fired'))}/{len(scenarios)}" \
        if scenarios else "-"


_COLUMNS["verify"] = [
    ("docker", lambda h: str(h.details.get("docker_version") or "-"), "left"),
    ("detected", _detected, "right"),
    ("ours fired", _ours, "right"),
    ("forwarding", lambda h: _forwarding(h), "left"),
]


def _forwarding(h: HostResult) -> str:
    """delivered / failed / no alerts / not configured, and the transport when there is one."""
    check = h.details.get("forwarding")
    if not isinstance(check, dict) or not check.get("status"):
        return "-"
    status = str(check["status"]).replace("_", " ")
    transport = check.get("transport")
    return f"{status} ({transport})" if transport and transport != "none" else status

_SCENARIO_STYLE = {"detected": "green", "clean": "green", "missed": "bold red",
                   "false_positive": "yellow", "not_run": "red"}


def _seconds(value: Any) -> str:
    return "?" if value is None else f"{value:.2f} s"


def scenario_cell(scenario: dict[str, Any]) -> str:
    """The rules that fired on one scenario's container and what that means, one per line."""
    status = scenario.get("status")
    if status == "not_run":
        return str(scenario.get("reason") or "not run")
    lines = []
    for hit in scenario.get("rules") or []:
        mark = "" if status != "detected" or hit.get("techniques") else "also: "
        whose = "ours" if hit.get("ours") else "not ours"
        lines.append(f"{mark}{hit['rule']} ({whose}, {_seconds(hit.get('latency_s'))})")
    for expected in scenario.get("expected") or []:
        if expected["status"] == "covered":
            lines.append(f"our {expected['rule']}: silent, covered by {expected['by']}")
    # A miss says which of our rules stayed silent, a false positive which of ours fired.
    if status in ("missed", "false_positive"):
        lines.append(str(scenario.get("reason") or ""))
    return "\n".join(line for line in lines if line) or "-"


def scenario_table(result: RunResult) -> Table | None:
    """verify: one row per host and scenario."""
    rows = [(h.host, s) for h in result.hosts for s in h.details.get("scenarios") or []]
    if not rows:
        return None
    table = Table(title=f"Scenarios (run {(result.verify or {}).get('run_id', '')})",
                  title_justify="left")
    table.add_column("host", no_wrap=True)
    table.add_column("scenario", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("rules that fired (seconds from the attack) / why")
    for host, scenario in rows:
        status = str(scenario.get("status"))
        table.add_row(host, str(scenario.get("scenario")),
                      Text(status.replace("_", " "), style=_SCENARIO_STYLE.get(status, "")),
                      Text(scenario_cell(scenario)))
    return table


def summary_table(result: RunResult) -> Table:
    columns = _COLUMNS[result.command]
    table = Table()
    table.add_column("host", no_wrap=True)
    table.add_column("verdict")
    for header, _, justify in columns:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for h in result.hosts:
        verdict = Text(h.verdict.value, style=_VERDICT_STYLE[h.verdict])
        if h.reason:
            verdict.append(f": {h.reason}")
        table.add_row(h.host, verdict, *(cell(h) for _, cell, _ in columns))
    return table


def render_summary(result: RunResult, console: Console) -> None:
    title = f"falco-deploy {result.command}" + (" --check: nothing was changed"
                                                 if result.check_mode else "")
    console.print(title, style="bold", markup=False, highlight=False, soft_wrap=True)
    if result.validation_text and (result.validation is None or not result.validation["ok"]):
        # The gate refused the set: the validator's own words are the whole story.
        _line(console, result.validation_text)
    if result.hosts:
        console.print(summary_table(result))
    scenarios = scenario_table(result)
    if scenarios is not None:
        console.print(scenarios)
    findings = [(h.host, f) for h in result.hosts for f in h.findings]
    if findings:
        console.print("Findings:", style="bold")
        for host, finding in findings:
            _line(console, f"  {host}: {finding}")
    if result.command == "uninstall" and not result.check_mode:
        removed = [(h.host, step) for h in result.hosts for step in h.details.get("removed") or []]
        if removed:
            console.print("Removed:", style="bold")
            for host, step in removed:
                _line(console, f"  {host}: {step}")
    if result.check_mode:
        planned = [(h.host, step) for h in result.hosts for step in h.planned]
        if planned:
            console.print("Would change:", style="bold")
            for host, step in planned:
                _line(console, f"  {host}: {step}")
    drifted = [(h.host, f) for h in result.hosts if h.drift for f in h.drift_files]
    if drifted:
        console.print("Drifted files:", style="bold")
        for host, path in drifted:
            _line(console, f"  {host}: {path}")
    if result.error:
        console.print(Text("Error: ", style="bold red") + Text(result.error), soft_wrap=True)
    if result.verify and result.verify.get("junit"):
        _line(console, f"JUnit: {result.verify['junit']}")
    if result.artifacts_dir:
        _line(console, f"Artifacts: {result.artifacts_dir}")
    code = ExitCode(result.exit_code)
    meaning = _EXIT_MEANING.get(code, "")
    style = ("green" if code == ExitCode.OK
             else "yellow" if code in (ExitCode.PARTIAL, ExitCode.DRIFT) else "red")
    status = Text(f"Exit status: {code.name.lower()} ({int(code)})", style=style)
    if meaning:
        status.append(f" - {meaning}")
    console.print(status)


def render_json(result: RunResult, stream: IO[str]) -> None:
    stream.write(json.dumps(result.to_envelope(), indent=2) + "\n")
    stream.flush()


def render_error(message: str, hint: str | None, console: Console) -> None:
    console.print(Text("Error: ", style="bold red") + Text(message))
    if hint:
        console.print(Text("Hint: ", style="bold") + Text(hint))
