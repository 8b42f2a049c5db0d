"""Progress lines and the summary, rendered to strings (no terminal, no Ansible)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

from install_events import failed, ok, recorded, report, skipped, task_start, unreachable

from falco_deploy import render
from falco_deploy.results import EventCollector, RunResult


def run_result(events, check_mode=False, error=None, exit_code=None):
    collector = EventCollector(check_mode=check_mode)
    for event in events:
        collector.feed(event)
    now = datetime(2026, 11, 29, 20, 0, tzinfo=timezone.utc)
    return RunResult("install", collector.results(), "/state/runs/20261129T200000Z-install",
                     check_mode, now, now, error=error, exit_code=exit_code)


def summary_text(result) -> str:
    out = io.StringIO()
    render.render_summary(result, render.make_console(out))
    return out.getvalue()


def rows(text: str) -> dict[str, str]:
    """Table rows keyed by host (first cell)."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 6 and cells[0] and cells[0] != "host":
            found[cells[0]] = line
    return found


def test_summary_has_one_row_per_host_with_verdict_and_reason():
    text = summary_text(run_result(recorded()))
    table = rows(text)
    assert set(table) == {"h1", "h2", "h3", "h4", "bad"}
    assert "installed" in table["h1"]
    assert "0.40.0" in table["h1"] and "modern_ebpf" in table["h1"] and "active" in table["h1"]
    assert "failed: Hard fail: boom" in table["h2"]
    assert "skipped: BTF: /sys/kernel/btf/vmlinux missing" in table["h3"]
    assert "unchanged" in table["h4"]
    assert "unreachable: Failed to connect to the host via ssh" in table["bad"]


def test_summary_names_artifacts_exit_status_and_findings():
    text = summary_text(run_result(recorded()))
    assert "Artifacts: /state/runs/20261129T200000Z-install" in text
    assert "Exit status: partial (3)" in text
    assert "Findings:" in text
    assert "h1: no CAP_SYS_RESOURCE" in text
    # Findings come after the table.
    assert text.index("Findings:") > text.index("h4")


def test_summary_in_check_mode_says_nothing_changed():
    text = summary_text(run_result([ok("a", "Add repo", changed=True), report("a")],
                                   check_mode=True))
    assert "--check: nothing was changed" in text
    assert "would change" in rows(text)["a"]
    assert "Exit status: ok (0)" in text
    assert "Would change:" in text and "a: Add repo" in text


def test_summary_outside_check_mode_lists_no_plan():
    text = summary_text(run_result([ok("a", "Add repo", changed=True), report("a")]))
    assert "Would change:" not in text


def test_summary_of_run_without_hosts_shows_error():
    text = summary_text(run_result([], error="no host matched the inventory"))
    assert "Error: no host matched the inventory" in text
    assert "Exit status: failed (4)" in text
    assert "┏" not in text  # no empty table


def test_plain_summary_has_no_colour_codes():
    assert "\x1b[" not in summary_text(run_result(recorded()))


def plain_progress(events, verbosity=0) -> list[str]:
    out = io.StringIO()
    collector = EventCollector()
    with render.Progress(render.make_console(out), verbosity=verbosity) as progress:
        assert not progress.live_mode  # StringIO is no terminal
        for event in events:
            collector.feed(event)
            progress(event, collector)
    return out.getvalue().splitlines()


def test_plain_progress_one_line_per_host_event():
    lines = plain_progress([
        task_start("Install package"),
        ok("a", "Install package", changed=True),
        ok("b", "Install package"),
        failed("c", "Install package", "No package matching 'falco'"),
        failed("a", "Probe", "nope", ignore_errors=True),
        unreachable("d", "Install package", "Task failed: ssh: refused"),
        skipped("a", "Mask unit"),
        report("a"),
    ])
    assert lines == [
        "a | changed | Install package",
        "b | ok | Install package",
        "c | failed | Install package | No package matching 'falco'",
        "a | failed (ignored) | Probe",
        "d | unreachable | Install package | ssh: refused",
        "a | ok | Report the result",
    ]


def test_plain_progress_shows_skips_when_verbose():
    assert plain_progress([skipped("a", "Mask unit")], verbosity=1) == [
        "a | skipped | Mask unit"]


def test_live_progress_table_tracks_counters():
    collector = EventCollector()
    for event in [task_start("Install package"), ok("a", "Install package", changed=True),
                  failed("b", "Install package", "boom")]:
        collector.feed(event)
    out = io.StringIO()
    console = render.Console(file=out, width=100, no_color=True)
    console.print(render._progress_table(collector))
    text = out.getvalue()
    assert "Install package" in text
    line_a = next(line for line in text.splitlines() if line.strip().startswith("a "))
    assert [c.strip() for c in line_a.split("│")][2:] == ["1", "1", "0", "0"]
    assert "failed" in next(line for line in text.splitlines() if line.strip().startswith("b "))


def test_json_is_the_envelope_only():
    out = io.StringIO()
    render.render_json(run_result(recorded()), out)
    doc = json.loads(out.getvalue())
    assert doc["schema"] == "falco-deploy.result/v1"
    assert doc["exit_status"] == "partial"


def test_plain_lines_are_never_wrapped():
    msg = "python3-apt must be installed to use check mode. " + "x" * 200
    lines = plain_progress([failed("a", "Install gpg", msg)])
    assert lines == [f"a | failed | Install gpg | {msg}"]


def test_live_progress_keeps_failures_above_the_table():
    out = io.StringIO()
    console = render.Console(file=out, force_terminal=True, width=120, no_color=True)
    collector = EventCollector()
    with render.Progress(console) as progress:
        assert progress.live_mode
        for event in [ok("a", "Install", changed=True), failed("b", "Install", "boom"),
                      unreachable("c", "Install", "Task failed: refused")]:
            collector.feed(event)
            progress(event, collector)
    text = out.getvalue()
    assert "b | failed | Install | boom" in text
    assert "c | unreachable | Install | refused" in text
    assert "a | changed" not in text  # only trouble is kept; the table showed the rest


# Recorded from ansible-runner 2.4 / ansible-core 2.19 (`copy` with --diff): ansible's own
# coloured rendering of the diff is the event's stdout.
FILE_DIFF = {
    "event": "runner_on_file_diff",
    "stdout": "\x1b[0;31m--- before\x1b[0m\r\n\x1b[0;31m\x1b[0m\x1b[0;32m+++ after: "
              "/etc/falco/config.d/50-falco-deploy.yaml\x1b[0m\r\n\x1b[0;32m\x1b[0m\x1b[0;36m"
              "@@ -0,0 +1 @@\x1b[0m\r\n\x1b[0;36m\x1b[0m\x1b[0;32m+priority: notice\x1b[0m\r\n"
              "\x1b[0;32m\x1b[0m",
    "event_data": {"host": "a", "task": "Write the configuration drop-in"},
}


def test_diff_is_shown_under_its_host_and_task():
    lines = plain_progress([FILE_DIFF])
    assert lines == ["a | diff | Write the configuration drop-in", "--- before",
                     "+++ after: /etc/falco/config.d/50-falco-deploy.yaml", "@@ -0,0 +1 @@",
                     "+priority: notice"]


def test_live_progress_keeps_diffs_above_the_table():
    out = io.StringIO()
    console = render.Console(file=out, force_terminal=True, width=120, no_color=True)
    with render.Progress(console) as progress:
        progress(FILE_DIFF, EventCollector())
    assert "+priority: notice" in out.getvalue()


def test_every_verdict_has_a_summary_style():
    from falco_deploy.render import _VERDICT_STYLE
    from falco_deploy.results import Verdict

    assert set(Verdict) <= set(_VERDICT_STYLE)
