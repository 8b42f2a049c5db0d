"""Progress while a run goes on and the summary after it (rich), or the JSON envelope.

Progress is live per-host on a terminal and one plain line per host event otherwise, so CI logs
stay readable. In JSON mode stdout carries only the envelope; progress goes to stderr.
"""

from __future__ import annotations

import json
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from falco_deploy.exitcodes import ExitCode
from falco_deploy.results import EventCollector, HostState, RunResult, Verdict

_VERDICT_STYLE = {
    Verdict.INSTALLED: "green",
    Verdict.UNCHANGED: "green",
    Verdict.WOULD_CHANGE: "cyan",
    Verdict.SKIPPED: "yellow",
    Verdict.FAILED: "bold red",
    Verdict.UNREACHABLE: "bold red",
}

_EXIT_MEANING = {
    ExitCode.OK: "every host is good",
    ExitCode.PARTIAL: "some hosts failed, were skipped or were unreachable",
    ExitCode.FAILED: "no host succeeded",
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


def _progress_table(collector: EventCollector) -> Table:
    table = Table(title=f"[dim]{escape(collector.current_task)}[/]" if collector.current_task
                  else None, expand=False, show_edge=False)
    table.add_column("host")
    table.add_column("task")
    for col in ("ok", "changed", "failed", "skipped"):
        table.add_column(col, justify="right")
    for host in list(collector.hosts.values()):
        c = host.counts
        state = host.state
        if state in ("failed", "unreachable"):
            task = f"[red]{state}[/]"
        elif state == "running":
            task = escape(host.current_task)
        else:  # the host reported its result: ok (done) or skipped
            task = "done" if state == "ok" else escape(state)
        table.add_row(escape(host.name), task, str(c.ok),
                      f"[yellow]{c.changed}[/]" if c.changed else "0",
                      f"[red]{c.failed}[/]" if c.failed else "0", str(c.skipped))
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
    """Receives (event, collector) from the install command and draws progress."""

    def __init__(self, console: Console, live: bool | None = None, verbosity: int = 0) -> None:
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self.verbosity = verbosity
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(Text("starting ansible-playbook ..."), console=self.console,
                              refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def __call__(self, event: dict[str, Any], collector: EventCollector) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = collector.hosts.get(data.get("host") or "")
        line = plain_line(event, host)
        if self._live is not None:
            if kind.startswith(("runner_on_", "playbook_on_task_start",
                                "playbook_on_handler_task_start")):
                self._live.update(_progress_table(collector))
            # The table vanishes when the summary comes; what went wrong stays above it.
            if line is not None and (kind == "runner_on_unreachable" or (
                    kind == "runner_on_failed" and not data.get("ignore_errors"))):
                self._live.console.print(line, markup=False, highlight=False, style="red")
            return
        # Skipped tasks are most of a run's events and rarely news; -v shows them.
        if kind == "runner_on_skipped" and self.verbosity < 1:
            return
        if line is not None:
            _line(self.console, line)


def summary_table(result: RunResult) -> Table:
    table = Table()
    table.add_column("host", no_wrap=True)
    table.add_column("verdict")
    table.add_column("falco")
    table.add_column("driver")
    table.add_column("service")
    table.add_column("changed", justify="right")
    for h in result.hosts:
        verdict = Text(h.verdict.value, style=_VERDICT_STYLE[h.verdict])
        if h.reason:
            verdict.append(f": {h.reason}")
        table.add_row(h.host, verdict, h.falco_version or "-", h.driver or "-", h.service or "-",
                      str(h.changed))
    return table


def render_summary(result: RunResult, console: Console) -> None:
    title = f"falco-deploy {result.command}" + (" --check: nothing was changed"
                                                 if result.check_mode else "")
    console.print(title, style="bold", markup=False, highlight=False, soft_wrap=True)
    if result.hosts:
        console.print(summary_table(result))
    findings = [(h.host, f) for h in result.hosts for f in h.findings]
    if findings:
        console.print("Findings:", style="bold")
        for host, finding in findings:
            _line(console, f"  {host}: {finding}")
    if result.error:
        console.print(Text("Error: ", style="bold red") + Text(result.error), soft_wrap=True)
    _line(console, f"Artifacts: {result.artifacts_dir}")
    code = ExitCode(result.exit_code)
    meaning = _EXIT_MEANING.get(code, "")
    style = "green" if code == ExitCode.OK else "yellow" if code == ExitCode.PARTIAL else "red"
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
