"""Summary tables of rules deploy, rollback and status: their own columns and words."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from install_events import failed, ok, stats
from rules_events import RELEASE_NEW, RELEASE_OLD, SHA_NEW, rules_report

from falco_deploy import render
from falco_deploy.exitcodes import ExitCode
from falco_deploy.results import EventCollector, RunResult

NOW = datetime(2026, 11, 29, 20, 0, tzinfo=timezone.utc)


def text_of(command, events, artifacts="/state/runs/x", **kw):
    collector = EventCollector(command=command)
    for event in events:
        collector.feed(event)
    result = RunResult(command, collector.results(), artifacts, False, NOW, NOW, **kw)
    out = io.StringIO()
    render.render_summary(result, render.make_console(out))
    return out.getvalue()


def header(text):
    return next(line for line in text.splitlines() if "host" in line and "verdict" in line)


def row(text, host):
    return next(line for line in text.splitlines() if line.strip("│┃ ").startswith(host + " "))


def test_deploy_table_shows_release_previous_and_verdicts():
    text = text_of("rules deploy", [
        ok("web-1", "Switch", changed=True), rules_report("web-1"),
        rules_report("web-2", status="refused", reason="falco -V: Invalid",
                     release=RELEASE_OLD, previous_release=""),
        failed("web-2", "Stop", "refused"), stats(failures={"web-2": 1},
                                                  processed={"web-1": 1, "web-2": 1}),
    ])
    cols = header(text).split()
    assert [c for c in cols if c.isalpha()][:5] == ["host", "verdict", "release", "previous",
                                                    "falco"]
    assert "deployed" in row(text, "web-1")
    assert f"{RELEASE_NEW} ({SHA_NEW[:12]})" in row(text, "web-1")
    assert RELEASE_OLD in row(text, "web-1")
    assert "refused: falco -V: Invalid" in row(text, "web-2")
    assert "driver" not in header(text)
    assert "Exit status: partial (3)" in text


def test_rollback_uses_the_deploy_columns():
    text = text_of("rollback", [ok("a", "Switch", changed=True),
                                rules_report("a", release=RELEASE_OLD)])
    assert "previous" in header(text) and "deployed" in row(text, "a")
    assert text.startswith("falco-deploy rollback")


def test_status_table_shows_engine_unit_release_and_drift():
    text = text_of("status", [
        rules_report("a"),
        rules_report("b", drift=True, drift_files=["/etc/falco/rules.d/x.yaml"]),
        rules_report("c", release="", release_sha256="", previous_release=""),
    ])
    for col in ("falco", "engine", "unit", "release", "drift"):
        assert col in header(text)
    assert "in sync" in row(text, "a") and "modern_ebpf" in row(text, "a")
    assert row(text, "a").rstrip(" │").endswith("no")
    assert "drifted" in row(text, "b") and "yes (1 files)" in row(text, "b")
    assert "Exit status: drift (6)" in text


def test_gate_failure_prints_the_validator_text_and_no_artifacts():
    text = text_of("rules deploy", [], artifacts="",
                   error="the rules set is invalid; no host was touched",
                   exit_code=ExitCode.RULES_INVALID, validation={"ok": False},
                   validation_text="/r/x.yaml: Invalid\n1 Errors:")
    assert "/r/x.yaml: Invalid" in text
    assert "Artifacts:" not in text
    assert "Exit status: rules_invalid (1) - the rules set failed offline validation" in text


def test_status_says_falco_is_down_and_what_the_exit_code_means():
    text = text_of("status", [
        rules_report("web-1"),
        rules_report("web-2", status="falco_down",
                     reason="falco-modern-bpf.service inactive (dead): Falco is not running"),
        stats(processed={"web-1": 1, "web-2": 1})])
    assert "falco down: falco-modern-bpf.service inactive (dead): Falco is" in row(text, "web-2")
    assert "Exit status: unprotected (8) - on some host Falco is not installed, not running or " \
           "has no rules" in text
