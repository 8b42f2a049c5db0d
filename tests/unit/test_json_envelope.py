"""Contract test for `--output json`: falco-deploy.result/v1.

Scripts and CI jobs parse this document. Adding a key is allowed; renaming, removing or
retyping one is a breaking change that needs a new schema version (and this test updated).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from install_events import recorded

from falco_deploy import __version__
from falco_deploy.exitcodes import ExitCode
from falco_deploy.results import SCHEMA, EventCollector, RunResult

TOP_LEVEL = {
    "schema": str,
    "command": str,
    "falco_deploy_version": str,
    "check_mode": bool,
    "started": str,
    "finished": str,
    "exit_code": int,
    "exit_status": str,
    "artifacts_dir": str,
    "error": (str, type(None)),
    "hosts": list,
    "summary": dict,
}
HOST = {
    "host": str,
    "verdict": str,
    "reason": str,
    "findings": list,
    "falco_version": (str, type(None)),
    "driver": (str, type(None)),
    "service": (str, type(None)),
    "changed": int,
    "tasks": dict,
}
TASKS = {"ok", "changed", "failed", "skipped", "ignored"}
SUMMARY = {"hosts", "installed", "unchanged", "would_change", "skipped", "failed", "unreachable",
           "changed_tasks"}
VERDICTS = {"installed", "unchanged", "would change", "skipped", "failed", "unreachable"}
EXIT_STATUSES = {"ok": 0, "partial": 3, "failed": 4}


def envelope(check_mode: bool = False) -> dict:
    collector = EventCollector(check_mode=check_mode)
    for event in recorded():
        collector.feed(event)
    started = datetime(2026, 11, 29, 20, 0, 0, tzinfo=timezone.utc)
    finished = datetime(2026, 11, 29, 20, 1, 30, tzinfo=timezone.utc)
    run = RunResult("install", collector.results(), "/state/runs/x-install", check_mode,
                    started, finished)
    # Through json, as a consumer sees it.
    return json.loads(json.dumps(run.to_envelope()))


def test_schema_id_is_pinned():
    assert SCHEMA == "falco-deploy.result/v1"
    assert envelope()["schema"] == "falco-deploy.result/v1"


def test_top_level_keys_and_types():
    doc = envelope()
    assert TOP_LEVEL.keys() <= doc.keys(), f"missing: {TOP_LEVEL.keys() - doc.keys()}"
    for key, kind in TOP_LEVEL.items():
        assert isinstance(doc[key], kind), key


def test_host_keys_and_types():
    doc = envelope()
    assert len(doc["hosts"]) == 5
    for host in doc["hosts"]:
        assert HOST.keys() <= host.keys(), f"missing: {HOST.keys() - host.keys()}"
        for key, kind in HOST.items():
            assert isinstance(host[key], kind), key
        assert host["verdict"] in VERDICTS
        assert host["tasks"].keys() >= TASKS
        assert all(isinstance(v, int) for v in host["tasks"].values())


def test_values_of_a_partial_run():
    doc = envelope()
    assert doc["command"] == "install"
    assert doc["falco_deploy_version"] == __version__
    assert doc["check_mode"] is False
    assert doc["started"] == "2026-11-29T20:00:00+00:00"
    assert doc["finished"] == "2026-11-29T20:01:30+00:00"
    assert doc["exit_code"] == ExitCode.PARTIAL == 3
    assert doc["exit_status"] == "partial"
    assert doc["artifacts_dir"] == "/state/runs/x-install"
    assert doc["error"] is None
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host["h3"] == {
        "host": "h3", "verdict": "skipped", "reason": "BTF: /sys/kernel/btf/vmlinux missing",
        "findings": [], "falco_version": None, "driver": None, "service": None, "changed": 0,
        "tasks": {"ok": 3, "changed": 0, "failed": 0, "skipped": 0, "ignored": 0},
        "planned": [],
    }


def test_summary_counts_every_verdict():
    summary = envelope()["summary"]
    assert summary.keys() >= SUMMARY
    assert summary == {"hosts": 5, "installed": 1, "unchanged": 1, "would_change": 0,
                       "skipped": 1, "failed": 1, "unreachable": 1, "changed_tasks": 1}


def test_exit_status_names_are_stable():
    for name, code in EXIT_STATUSES.items():
        assert ExitCode(code).name.lower() == name


def test_check_mode_flag_and_verdict():
    doc = envelope(check_mode=True)
    assert doc["check_mode"] is True
    assert {h["host"]: h["verdict"] for h in doc["hosts"]}["h1"] == "would change"
    assert doc["summary"]["would_change"] == 1
