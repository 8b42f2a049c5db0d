"""EventCollector: ansible-runner events in, per-host verdicts and exit codes out."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from install_events import (
    failed,
    no_hosts_matched,
    ok,
    recorded,
    report,
    skipped,
    start,
    stats,
    task_start,
    unreachable,
)

from falco_deploy.exitcodes import ExitCode
from falco_deploy.results import EventCollector, HostResult, RunResult, Verdict, exit_code_for


def collect(events, check_mode=False):
    collector = EventCollector(check_mode=check_mode)
    for event in events:
        collector.feed(event)
    return {r.host: r for r in collector.results()}


def test_recorded_run_gives_one_verdict_per_host():
    results = collect(recorded())
    assert list(results) == ["h1", "h2", "h3", "h4", "bad"]
    assert results["h1"].verdict is Verdict.INSTALLED
    assert results["h1"].changed == 1
    assert results["h1"].falco_version == "0.40.0"
    assert results["h1"].driver == "modern_ebpf"
    assert results["h1"].service == "active"
    assert results["h1"].findings == ["no CAP_SYS_RESOURCE"]
    assert results["h2"].verdict is Verdict.FAILED
    # Task name and the first line of the message only: the summary has one line per host.
    assert results["h2"].reason == "Hard fail: boom"
    assert results["h3"].verdict is Verdict.SKIPPED
    assert results["h3"].reason == "BTF: /sys/kernel/btf/vmlinux missing"
    assert results["h4"].verdict is Verdict.UNCHANGED
    assert results["bad"].verdict is Verdict.UNREACHABLE
    assert results["bad"].reason == (
        "Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 1: "
        "Connection refused")


def test_recorded_counts_match_event_stream():
    results = collect(recorded())
    h1 = results["h1"].tasks
    # h1 in the recorded run: 5 ok (one changed), 3 skipped, no failure.
    assert (h1.ok, h1.changed, h1.failed, h1.skipped) == (5, 1, 0, 3)
    assert results["h2"].tasks.failed == 1
    assert results["bad"].tasks.failed == 0


def test_recorded_run_is_partial():
    assert exit_code_for(list(collect(recorded()).values())) is ExitCode.PARTIAL


def test_changes_in_check_mode_mean_would_change():
    events = [ok("a", "Install package", changed=True), report("a")]
    assert collect(events, check_mode=True)["a"].verdict is Verdict.WOULD_CHANGE
    assert collect(events, check_mode=False)["a"].verdict is Verdict.INSTALLED


def test_check_mode_lists_what_would_change():
    events = [ok("a", "Write the repository keyring", changed=True),
              ok("a", "Report the planned installation",
                 msg="Would configure file:/mnt/falco-repo and install falco 0.44.0\nmore"),
              ok("a", "Show a note", msg="Nothing to say"),
              ok("a", "Read the engine kind"),
              report("a")]
    result = collect(events, check_mode=True)["a"]
    assert result.planned == ["Write the repository keyring",
                              "Would configure file:/mnt/falco-repo and install falco 0.44.0"]
    assert result.to_dict()["planned"] == result.planned


def test_no_change_is_unchanged_even_in_check_mode():
    events = [ok("a", "Install package"), report("a")]
    assert collect(events, check_mode=True)["a"].verdict is Verdict.UNCHANGED


def test_ignored_failure_does_not_fail_host():
    events = [failed("a", "Probe bpftool", "not found", ignore_errors=True), report("a")]
    result = collect(events)["a"]
    assert result.verdict is Verdict.UNCHANGED
    assert result.tasks.ignored == 1
    assert result.tasks.failed == 0


def test_rescued_failure_does_not_fail_host_when_recap_says_so():
    # A task failing inside a block with a rescue emits runner_on_failed without
    # ignore_errors; only the recap (playbook_on_stats) tells the host went on.
    events = [failed("a", "Start service", "timeout"), ok("a", "Roll back", changed=True),
              report("a"), stats(ok={"a": 3}, rescued={"a": 1}, processed={"a": 1})]
    assert collect(events)["a"].verdict is Verdict.INSTALLED


def test_failure_without_recap_fails_host():
    events = [failed("a", "Install package", "No package matching 'falco'\nmore")]
    result = collect(events)["a"]
    assert result.verdict is Verdict.FAILED
    assert result.reason == "Install package: No package matching 'falco'"


def test_failed_loop_reports_failing_item_message():
    res = {"results": [{"failed": False, "msg": "fine"},
                       {"failed": True, "msg": "key 14CB7A8D is revoked"}]}
    events = [failed("a", "Import keys", "One or more items failed", **res)]
    assert collect(events)["a"].reason == "Import keys: key 14CB7A8D is revoked"


def test_failure_without_msg_uses_stderr():
    events = [failed("a", "Run falcoctl", "", stderr="falcoctl: unknown flag\nusage")]
    assert collect(events)["a"].reason == "Run falcoctl: falcoctl: unknown flag"


def test_unreachable_wins_over_everything():
    events = [ok("a", "Gather", changed=True), report("a"),
              unreachable("a", "Restart", "Task failed: Data could not be sent")]
    result = collect(events)["a"]
    assert result.verdict is Verdict.UNREACHABLE
    assert result.reason == "Data could not be sent"


def test_host_only_in_recap_dark_is_unreachable():
    results = collect([stats(dark={"x": 1}, processed={"x": 1})])
    assert results["x"].verdict is Verdict.UNREACHABLE


def test_host_without_report_is_failed_naming_the_contract():
    result = collect([ok("a", "Install package", changed=True)])["a"]
    assert result.verdict is Verdict.FAILED
    assert "falco_deploy_result" in result.reason


def test_unknown_status_is_failed():
    result = collect([report("a", status="weird")])["a"]
    assert result.verdict is Verdict.FAILED
    assert "weird" in result.reason


def test_skip_reason_is_first_line_and_findings_kept():
    events = [report("a", status="skipped", reason="kernel 5.4 < 5.8\nBTF missing",
                     findings=["no CAP_SYS_RESOURCE"], falco_version="", driver="", service="")]
    result = collect(events)["a"]
    assert result.verdict is Verdict.SKIPPED
    assert result.reason == "kernel 5.4 < 5.8"
    assert result.findings == ["no CAP_SYS_RESOURCE"]
    # Empty strings from the playbook mean "unknown", rendered as "-" and null in JSON.
    assert (result.falco_version, result.driver, result.service) == (None, None, None)


def test_progress_state_follows_events():
    collector = EventCollector()
    collector.feed(task_start("Install package"))
    assert collector.current_task == "Install package"
    host = collector.feed(start("a", "Install package"))
    assert host is not None and host.current_task == "Install package"
    assert host.state == "running"
    collector.feed(skipped("a", "Mask follow unit"))
    assert host.counts.skipped == 1
    collector.feed(failed("a", "Start", "boom"))
    assert host.state == "failed"


def test_item_and_unrelated_events_are_ignored():
    collector = EventCollector()
    item = ok("a", "Loop", changed=True)
    item["event"] = "runner_item_on_ok"
    collector.feed(item)
    collector.feed(no_hosts_matched())
    assert collector.hosts == {}
    assert collector.no_hosts_matched


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["installed", "unchanged", "would change"], ExitCode.OK),
        (["installed", "skipped"], ExitCode.PARTIAL),
        (["unchanged", "unreachable"], ExitCode.PARTIAL),
        (["installed", "failed"], ExitCode.PARTIAL),
        (["failed", "skipped", "unreachable"], ExitCode.FAILED),
        ([], ExitCode.FAILED),
    ],
)
def test_exit_code_mapping(verdicts, expected):
    hosts = [HostResult(f"h{i}", Verdict(v)) for i, v in enumerate(verdicts)]
    assert exit_code_for(hosts) is expected
    now = datetime.now(timezone.utc)
    run = RunResult("install", hosts, "/tmp/a", False, now, now)
    assert run.exit_code is expected


def test_explicit_exit_code_is_kept():
    now = datetime.now(timezone.utc)
    run = RunResult("install", [], "/tmp/a", False, now, now, error="boom",
                    exit_code=ExitCode.ENVIRONMENT)
    assert run.exit_code is ExitCode.ENVIRONMENT


def test_module_that_never_ran_reports_its_stderr():
    # community.docker.docker against a container that is gone (recorded shape).
    events = [failed("gone", "Probe kernel", "Module result deserialization failed: No start "
                     "of json char found", module_stdout="", rc=1,
                     module_stderr="Error response from daemon: No such container: gone\n")]
    assert collect(events)["gone"].reason == (
        "Probe kernel: Error response from daemon: No such container: gone")


def test_recorded_run_of_the_real_roles():
    results = collect(recorded("install_events_roles.json"))
    assert list(results) == ["host-ok", "host-nobtf", "host-gone"]
    ok_host = results["host-ok"]
    assert ok_host.verdict is Verdict.INSTALLED
    assert (ok_host.falco_version, ok_host.driver) == ("0.44.0", "modern_ebpf")
    assert ok_host.service == "falco-modern-bpf.service active (running)"
    # Counted from the events, the numbers agree with ansible's own recap of that run.
    assert (ok_host.tasks.ok, ok_host.changed, ok_host.tasks.skipped) == (31, 6, 12)
    assert any("CAP_SYS_RESOURCE" in f for f in ok_host.findings)
    assert results["host-nobtf"].verdict is Verdict.SKIPPED
    assert results["host-nobtf"].reason == "no kernel BTF at /sys/kernel/btf/nope"
    gone = results["host-gone"]
    assert gone.verdict is Verdict.FAILED
    assert gone.reason.endswith("Error response from daemon: No such container: host-gone")


@pytest.mark.parametrize("name", ["install_events_mixed.json", "install_events_roles.json"])
def test_counts_agree_with_ansible_recap(name):
    events = recorded(name)
    recap = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    collector = EventCollector()
    for event in events:
        collector.feed(event)
    for host in collector.hosts.values():
        c = host.counts
        assert c.ok == recap["ok"].get(host.name, 0), host.name
        assert c.changed == recap["changed"].get(host.name, 0), host.name
        assert c.skipped == recap["skipped"].get(host.name, 0), host.name
        assert c.failed == recap["failures"].get(host.name, 0), host.name
