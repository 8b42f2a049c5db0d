"""strace recordings as Falco events (falco_deploy.rules_engine.strace_events), checked on the
real recordings of rules/tests/traces/ and on the line forms strace prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from falco_deploy.rules_engine.strace_events import StraceError, events_from_strace, split_args

TRACES = Path(__file__).resolve().parents[3] / "rules" / "tests" / "traces"


def events(name: str, calls, context=None, match=None, unless=None):
    return events_from_strace(str(TRACES / f"{name}.strace"), calls, context or {},
                              match or {}, unless)


def test_split_args_keeps_quoted_commas_brackets_and_descriptor_annotations():
    text = ('3<TCP:[127.0.0.1:1->127.0.0.1:2]>, "a, b", ["x", "y"], {flags=O_WRONLY, mode=0}, '
            '0x7f /* 4 vars */')
    assert split_args(text) == ["3<TCP:[127.0.0.1:1->127.0.0.1:2]>", '"a, b"', '["x", "y"]',
                                "{flags=O_WRONLY, mode=0}", "0x7f /* 4 vars */"]


def test_a_relative_open_is_joined_to_the_working_directory_as_falco_does():
    (ev,) = events("shadow_read_relative", ["openat"], match={"fd.filename": "shadow"})
    assert ev["fd.name"] == "/etc/shadow" and ev["fd.directory"] == "/etc"
    assert ev["evt.is_open_read"] is True and ev["evt.is_open_write"] is False
    assert ev["evt.rawres"] == 3 and ev["evt.res"] == "SUCCESS"
    # the process is known from its execve, its parent (the script's sh, the first pid of the
    # recording) from the clone that started it
    assert (ev["proc.name"], ev["proc.exepath"], ev["proc.cmdline"]) == (
        "cat", "/usr/bin/cat", "cat shadow")
    script_pid = int((TRACES / "shadow_read_relative.strace").read_text().split()[0])
    assert ev["proc.pname"] == "sh" and ev["proc.pvpid"] == script_pid


def test_a_path_through_proc_self_root_is_kept_as_given():
    # Falco does not resolve symbolic links in fd.name: the path is the one opened
    (ev,) = events("shadow_read_proc_root", ["openat"], match={"fd.filename": "shadow"})
    assert ev["fd.name"] == "/proc/self/root/etc/shadow"


def test_openat2_takes_its_access_mode_from_the_open_how_struct():
    evs = events("release_agent_openat2", ["openat2"])
    assert evs and all(e["fd.filename"] == "release_agent" for e in evs)
    assert {e["evt.is_open_write"] for e in evs} == {True}


def test_an_openat_relative_to_a_directory_descriptor_uses_that_directory():
    evs = events("release_agent_relative_openat", ["openat"],
                 match={"evt.is_open_write": True, "fd.filename": "release_agent"})
    assert evs and all(e["fd.name"].startswith("/tmp/purple-cg.") for e in evs)


def test_unfinished_and_resumed_lines_make_one_call():
    evs = events("loopback_http", ["openat"], match={"fd.directory": "/tmp"})
    assert any(e["fd.name"].startswith("/tmp/purple-http.") and e["evt.rawres"] == 3
               for e in evs)


def test_descriptor_calls_describe_the_descriptor_they_act_on():
    evs = events("reverse_shell_fcntl_dupfd", ["fcntl"],
                 match={"evt.arg.cmd": "F_DUPFD", "fd.type": "ipv4"})
    assert sorted(e["evt.rawres"] for e in evs) == [0, 1, 2]
    ev = evs[0]
    assert ev["fd.typechar"] == "4" and ev["fd.l4proto"] == "tcp"
    assert ev["fd.sip"] == "127.0.0.1" and ev["fd.name"].startswith("127.0.0.1:")
    (pid,) = events("setns_pidfd", ["setns"], match={"evt.rawres": 0})
    assert pid["evt.arg.nstype"] == "CLONE_NEWUTS|CLONE_NEWIPC"


def test_argument_less_calls_carry_no_return_value_as_in_falcos_event_table():
    evs = events("mount_new_api", ["fsmount", "move_mount"])
    assert [e["evt.type"] for e in evs] == ["fsmount", "move_mount"]
    assert all("evt.rawres" not in e and "evt.res" not in e for e in evs)


def test_the_context_supplies_what_a_trace_cannot_show():
    ctx = {"container.id": "f0a1b2c3d4e5", "unix_peer_path": "/run/docker.sock",
           "exe_realpath": {"/usr/bin/python3": "/usr/bin/python3.11"}}
    (ev,) = events("docker_sock_renamed_mount", ["connect"], ctx, {"fd.typechar": "u"})
    # the client connected to /tmp/engine.sock; Falco prints the path the server bound
    assert ev["fd.name"] == "/run/docker.sock" and ev["container.id"] == "f0a1b2c3d4e5"
    assert ev["proc.exepath"] == "/usr/bin/python3.11" and ev["proc.name"] == "python3"
    assert "unix_peer_path" not in ev and "exe_realpath" not in ev
    (raw,) = events("docker_sock_renamed_mount", ["connect"], match={"fd.typechar": "u"})
    assert raw["fd.name"] == "/tmp/engine.sock"


def test_failed_calls_get_the_negative_errno_and_its_name():
    evs = events("docker_sock", ["openat"], match={"fd.filename": "docker.sock"})
    assert evs and {(e["evt.rawres"], e["evt.res"], e["fd.num"]) for e in evs} == {
        (-6, "ENXIO", -1)}


def test_unless_drops_the_events_it_matches():
    all_dups = events("reverse_shell_dup3", ["dup3"])
    kept = events("reverse_shell_dup3", ["dup3"], unless=[{"fd.type": "ipv4"}])
    assert len(kept) == len(all_dups) - 3


def test_a_recording_made_from_the_host_gets_the_containers_pids():
    # strace -p --pidns-translation on the container's PID 1 (host pid 5483): new children are
    # printed as `= VPID /* PID in strace's PID NS */`, and the init is vpid 1
    ctx = {"init_pid": 5483, "exe_realpath": {"/bin/": "/usr/bin/", "/lib/": "/usr/lib/"}}
    evs = events("systemd_boot_privileged", ["mount"], ctx, {"proc.name": "mount"})
    assert evs and all(e["proc.pvpid"] == 1 and 1 < e["proc.vpid"] < 1000 for e in evs)
    assert {e["proc.pexepath"] for e in evs} == {"/usr/lib/systemd/systemd"}
    assert {e["proc.exepath"] for e in evs} == {"/usr/bin/mount"}  # /bin/ -> /usr/bin/
    init = events("systemd_boot_privileged", ["mount"], ctx, {"proc.vpid": 1})
    assert init and {e["proc.exepath"] for e in init} == {"/usr/lib/systemd/systemd"}


def test_an_empty_recording_is_refused(tmp_path):
    empty = tmp_path / "x.strace"
    empty.write_text("")
    with pytest.raises(StraceError, match="empty recording"):
        events_from_strace(str(empty), ["openat"], {}, {})
