"""The text report of `falco-deploy verify`: one table row per host and scenario (rich).

Cells say what happened in the operator's words: fired (rule, seconds from `docker run` to the
first alert), missed (and the script's exit code when it failed, the usual reason), late,
not run (why), clean, false positive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from falco_deploy.exitcodes import ExitCode
from falco_deploy.verify.matcher import (
    CLEAN,
    FALSE_POSITIVE,
    FIRED,
    MISSED,
    NOT_RUN,
    RuleHit,
    ScenarioResult,
)

if TYPE_CHECKING:
    from falco_deploy.commands.verify import HostNotes, VerifyOutcome

_STYLE = {FIRED: "green", CLEAN: "green", MISSED: "bold red", FALSE_POSITIVE: "yellow",
          NOT_RUN: "red"}
_WORD = {FIRED: "fired", CLEAN: "clean", MISSED: "missed", FALSE_POSITIVE: "false positive",
         NOT_RUN: "not run"}
_EXIT_MEANING = {
    ExitCode.OK: "every expected detection fired",
    ExitCode.DETECTION_MISSED: "an expected detection was missed",
    ExitCode.PARTIAL: "detections fired, but some scenarios or hosts did not run",
    ExitCode.FAILED: "no scenario ran",
    ExitCode.USAGE: "bad usage",
}


def _latency(hit: RuleHit) -> str:
    return "?" if hit.latency_s is None else f"{hit.latency_s:.2f} s"


def _hits(hits: tuple[RuleHit, ...]) -> list[str]:
    return [f"{hit.rule} ({_latency(hit)})" for hit in hits]


def cell(result: ScenarioResult, notes: HostNotes | None) -> str:
    """The details of one scenario on one host, one fact per line."""
    lines: list[str] = []
    if result.status == NOT_RUN:
        return result.not_run_reason or "not run"
    lines += _hits(result.fired)
    lines += [f"missed: {rule}" for rule in result.missed]
    lines += [f"late: {text}" for text in _hits(result.late)]
    lines += [f"false positive: {text}" for text in _hits(result.false_positives)]
    if result.also_fired:
        lines.append("also: " + ", ".join(_hits(result.also_fired)))
    note = notes.scenarios.get(result.scenario) if notes is not None else None
    if note is not None and note.exit_code not in (None, 0) and result.status != FIRED:
        last = next((line for line in reversed(note.output.splitlines()) if line.strip()), "")
        lines.append(f"script exit {note.exit_code}" + (f": {last.strip()}" if last else ""))
    elif note is not None and note.exit_code is None and result.status != FIRED:
        lines.append("script timed out")
    return "\n".join(lines) or "-"


def report_table(outcome: VerifyOutcome) -> Table:
    table = Table(title=f"falco-deploy verify, run {outcome.result.run_id}", title_justify="left")
    table.add_column("host", no_wrap=True)
    table.add_column("scenario", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("rules (s from docker run to first alert) / why")
    for host in outcome.result.hosts:
        notes = outcome.notes.get(host.host)
        if host.not_run_reason:
            table.add_row(host.host, "(all)", Text("not run", style=_STYLE[NOT_RUN]),
                          Text(host.not_run_reason))
            continue
        for result in host.scenarios:
            word = _WORD[result.status]
            table.add_row(host.host, result.scenario, Text(word, style=_STYLE[result.status]),
                          Text(cell(result, notes)))
    return table


def render_text(outcome: VerifyOutcome, console: Console) -> None:
    result = outcome.result
    if result.hosts:
        console.print(report_table(outcome))
    for host in result.hosts:
        notes = outcome.notes.get(host.host)
        if notes is not None and notes.alert_file and notes.alert_file_exists is False \
                and not host.not_run_reason:
            console.print(Text(f"{host.host}: alert file {notes.alert_file} does not exist: "
                               "Falco raised no alert since its file_output was set up, or "
                               "file_output is off (falco_service_alert_output_enabled)",
                               style="yellow"))
        if host.parse_errors:
            console.print(Text(f"{host.host}: {len(host.parse_errors)} alert line(s) could not "
                               "be parsed; see --output json", style="yellow"))
    if outcome.error:
        console.print(Text(outcome.error, style="bold red"))
    totals = result.summary()
    console.print(
        f"Scenarios: {totals[FIRED]} fired, {totals[MISSED]} missed, {totals[NOT_RUN]} not run, "
        f"{totals[CLEAN]} clean, {totals[FALSE_POSITIVE]} false positive "
        f"(timeout {result.timeout_s:g} s)", markup=False, highlight=False)
    if outcome.junit_path:
        console.print(f"JUnit: {outcome.junit_path}", markup=False, highlight=False)
    console.print(f"Artifacts: {outcome.artifacts_dir}", markup=False, highlight=False)
    meaning = _EXIT_MEANING.get(outcome.exit_code, "")
    console.print(f"Exit status: {outcome.exit_code.name.lower()} ({int(outcome.exit_code)})"
                  + (f": {meaning}" if meaning else ""), markup=False, highlight=False)
