"""Progress lines and the summary, rendered to strings (no terminal, no Ansible)."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone

from install_events import (
    failed,
    ok,
    recorded,
    report,
    skipped,
    start,
    stats,
    task_start,
    unreachable,
)

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


def test_plain_progress_verbose_has_one_line_per_task_event():
    lines = plain_progress([
        task_start("Install package"),
        ok("a", "Install package", changed=True),
        ok("b", "Install package"),
        failed("c", "Install package", "No package matching 'falco'"),
        failed("a", "Probe", "nope", ignore_errors=True),
        unreachable("d", "Install package", "Task failed: ssh: refused"),
        skipped("a", "Mask unit"),
        report("a"),
    ], verbosity=1)
    assert lines == [
        "a | changed | Install package",
        "b | ok | Install package",
        "c | failed | Install package | No package matching 'falco'",
        "a | failed (ignored) | Probe",
        "d | unreachable | Install package | ssh: refused",
        "a | skipped | Mask unit",
        "a | ok | Report the result",
    ]


def _role_start(host, role, task, action="ansible.builtin.command"):
    event = start(host, task)
    event["event_data"].update(role=role, task_action=action)
    return event


def test_plain_progress_says_each_change_of_a_hosts_state_once():
    lines = plain_progress([
        _role_start("a", "falco_preflight", "Validating arguments against arg spec 'main' - x",
                    "ansible.builtin.validate_argument_spec"),
        ok("a", "Validating arguments against arg spec 'main' - x"),
        _role_start("a", "falco_preflight", "Probe the kernel"),
        ok("a", "Probe the kernel"),
        _role_start("b", "falco_preflight", "Probe the kernel"),
        ok("b", "Probe the kernel"),
        _role_start("a", "falco_preflight", "Evaluate the probe", "ansible.builtin.set_fact"),
        _role_start("a", "falco_package", "Install falco"),
        ok("a", "Install falco", changed=True),
        _role_start("b", "falco_package", "Install falco"),
        failed("b", "Install falco", "No package matching 'falco'"),
        failed("a", "Probe", "nope", ignore_errors=True),
        skipped("a", "Mask unit"),
        report("a"),
        stats(ok={"a": 4, "b": 1}, failures={"b": 1}),
    ])
    assert lines == [
        "a | started",
        "a | step | falco_preflight",
        "b | started",
        "b | step | falco_preflight",
        "a | step | falco_package",
        "b | step | falco_package",
        "b | failed | Install falco | No package matching 'falco'",
        "a | done | installed",
        "b | done | failed",
    ]


def test_plain_progress_of_a_real_install_is_a_handful_of_lines_per_host():
    # a real `falco-deploy install` on three hosts (one installed, one skipped by preflight,
    # one failing): ~150 events, of which a reader needs the state changes and the reasons
    lines = plain_progress(recorded("install_events_roles.json"))
    assert "\x1b[" not in "\n".join(lines)
    per_host = {}
    for line in lines:
        per_host.setdefault(line.split(" | ")[0], []).append(line)
    assert set(per_host) == {"host-ok", "host-nobtf", "host-gone"}
    assert all(len(host_lines) <= 8 for host_lines in per_host.values()), per_host
    assert not any("Validating arguments" in line for line in lines)
    # no per-task lines: only started, step, failed/unreachable and done
    assert {line.split(" | ")[1] for line in lines} <= {"started", "step", "failed", "done"}
    failure = [line for line in per_host["host-gone"] if " | failed | " in line]
    assert failure and failure[0].split(" | ", 3)[3], failure  # the reason is on the line
    assert per_host["host-nobtf"][-1].startswith("host-nobtf | done | skipped | ")
    assert "btf" in per_host["host-nobtf"][-1].lower()


def test_plain_progress_shows_skips_when_verbose():
    assert plain_progress([skipped("a", "Mask unit")], verbosity=1) == [
        "a | skipped | Mask unit"]


def table_text(collector, rows=None, now=100.0, width=140) -> str:
    out = io.StringIO()
    console = render.Console(file=out, width=width, no_color=True)
    console.print(render._progress_table(collector, rows, now))
    return out.getvalue()


def test_live_progress_table_has_one_row_per_host_with_its_step_counters_and_time():
    collector = EventCollector()
    events = [_role_start("a", "falco_package", "Install falco"), ok("a", "Install falco",
              changed=True), _role_start("b", "falco_package", "Install falco"),
              failed("b", "Install falco", "boom")]
    progress = render.Progress(render.Console(file=io.StringIO()), live=False,
                               clock=iter([10.0, 11.0, 12.0, 13.0]).__next__)
    for event in events:
        collector.feed(event)
        progress(event, collector)
    text = table_text(collector, progress.rows, now=75.0)
    line_a = next(line for line in text.splitlines() if " a " in line)
    assert "falco_package: Install falco" in line_a
    assert [c.strip() for c in line_a.split("│")][3:] == ["1", "1", "0", "0", "1:05"]
    line_b = next(line for line in text.splitlines() if " b " in line)
    assert "failed: Install falco: boom" in line_b and "✗" in line_b
    assert line_b.rstrip().endswith("0:01")  # its clock stopped when it failed


def test_live_progress_finished_rows_keep_their_verdict():
    collector = EventCollector()
    collector.expect_hosts(["a", "c"], "not reached")
    for event in [ok("a", "Install", changed=True), report("a")]:
        collector.feed(event)
    text = table_text(collector)
    assert "✓" in text and "installed" in text
    assert "waiting" in next(line for line in text.splitlines() if " c " in line)


def test_live_progress_is_compact_above_thirty_hosts():
    collector = EventCollector()
    names = [f"h{i:02d}" for i in range(40)]
    for name in names[:30]:
        collector.feed(ok(name, "Install"))
        collector.feed(report(name))
    for name in names[30:38]:
        collector.feed(ok(name, "Install"))
    collector.feed(failed(names[38], "Install", "boom"))
    collector.expect_hosts(names, "not reached")
    text = table_text(collector)
    listed = {n for n in names if f" {n} " in text}
    assert listed == set(names[30:39])  # the running and the failed hosts only
    assert "30 done · 8 running · 1 waiting · 1 failed" in text


def test_live_progress_leaves_its_last_frame_on_screen():
    out = io.StringIO()
    console = render.Console(file=out, force_terminal=True, width=120, no_color=True)
    collector = EventCollector()
    with render.Progress(console) as progress:
        for event in [_role_start("a", "falco_package", "Install falco"),
                      ok("a", "Install falco", changed=True), report("a")]:
            collector.feed(event)
            progress(event, collector)
    # not transient: after the view stops, its last frame is the last thing on screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    last = [line for line in plain.splitlines() if line.strip()][-1]
    assert "✓" in last and " a " in last and "installed" in last, last


def test_json_is_the_envelope_only():
    out = io.StringIO()
    render.render_json(run_result(recorded()), out)
    doc = json.loads(out.getvalue())
    assert doc["schema"] == "falco-deploy.result/v1"
    assert doc["exit_status"] == "partial"


def test_plain_lines_are_never_wrapped():
    msg = "python3-apt must be installed to use check mode. " + "x" * 200
    lines = plain_progress([failed("a", "Install gpg", msg)])
    assert lines == ["a | started", f"a | failed | Install gpg | {msg}"]


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
