"""The falco_verify role's host-side modules: alert-file mark/collect and the scenario runner.

The file reading itself (module_utils/falco_alert_file.py) is tested in test_verify_follow.py;
here the modules' own logic: which lines of a run are kept, when collecting stops.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LIBRARY = ROOT / "plugins" / "modules"
RUN_ID = "20261129T190808-3fa9c1"


def _load(name: str):
    # The modules import the collection's module_utils by their collection path; the checkout's
    # .collections folder holds the link that makes that path importable.
    if str(ROOT / ".collections") not in sys.path:
        sys.path.insert(0, str(ROOT / ".collections"))
    spec = importlib.util.spec_from_file_location(name, LIBRARY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def alerts_module():
    return _load("falco_verify_alerts")


@pytest.fixture(scope="module")
def scenarios_module():
    return _load("falco_verify_scenarios")


def _alert(rule: str, container: str, time: str = "2026-11-29T19:08:13.133668249Z",
           container_id: str = "0123456789ab", tags: tuple[str, ...] = ("T1611",)) -> str:
    return json.dumps({"time": time, "rule": rule, "priority": "Warning", "source": "syscall",
                       "hostname": "vm", "output": f"{rule} fired", "tags": list(tags),
                       "output_fields": {"container.name": container,
                                         "container.id": container_id}})


def _name(scenario: str) -> str:
    return f"purple-{RUN_ID}-{scenario}"


# --- mark and read ---------------------------------------------------------------------------


def test_mark_of_a_missing_file_reads_it_from_the_start(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    mark = alerts_module.mark_end(str(path))
    assert mark["inode"] is None and mark["offset"] == 0
    path.write_text(_alert("R", _name("nsenter")) + "\n")
    lines, _, events = alerts_module.read_since(mark)
    assert len(lines) == 1 and events == ["appeared"]


def test_read_since_drains_a_rotated_file(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    path.write_text(_alert("Old", "other") + "\n")
    mark = alerts_module.mark_end(str(path))
    with path.open("a") as handle:
        handle.write(_alert("Before rotate", _name("nsenter")) + "\n")
    os.rename(path, tmp_path / "events.json.1")  # logrotate's rename
    path.write_text(_alert("After rotate", _name("nsenter")) + "\n" + '{"rule": "half')
    lines, new_mark, events = alerts_module.read_since(mark)
    assert [json.loads(line)["rule"] for line in lines] == ["Before rotate", "After rotate"]
    assert events == ["rotated", "rotated-drained"]
    assert new_mark["inode"] == path.stat().st_ino and new_mark["line_no"] == 1


def test_read_since_restarts_after_copytruncate(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    path.write_text(_alert("A", "x") + "\n" + _alert("B", "x") + "\n")
    mark = alerts_module.mark_end(str(path))
    path.write_text(_alert("C", _name("nsenter")) + "\n")  # truncated, then one new alert
    lines, _, events = alerts_module.read_since(mark)
    assert [json.loads(line)["rule"] for line in lines] == ["C"]
    assert events == ["truncated"]


class FakeClock:
    """Monotonic time that advances only when the collector sleeps; each sleep may append."""

    def __init__(self, path: Path, arrivals: dict[int, list[str]]):
        self.now = 0.0
        self.path = path
        self.arrivals = arrivals
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        for line in self.arrivals.pop(self.sleeps, []):
            with self.path.open("a") as handle:
                handle.write(line + "\n")


TRIGGER_NS = 1_795_979_292_000_000_000  # 2026-11-29T19:08:12Z


def _run(scenario: str, kind: str = "attack", techniques=("T1611",), expected=("Setns",),
         container_id: str = "") -> dict:
    return {"scenario": scenario, "kind": kind, "techniques": list(techniques) if kind ==
            "attack" else [], "expected_rules": list(expected) if kind == "attack" else [],
            "container_name": _name(scenario), "container_id": container_id,
            "trigger_ns": TRIGGER_NS, "trigger_source": "attack", "not_run_reason": None,
            "exit_code": 0, "output": "", "duration_s": 0.5}


def test_collect_stops_one_read_after_every_attack_was_detected(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    path.write_text(_alert("Older alert", _name("nsenter")) + "\n")
    mark = alerts_module.mark_end(str(path))
    fake = FakeClock(path, {
        1: [_alert("Setns", _name("nsenter")), _alert("Unrelated", "nginx")],
        3: [_alert("Read sensitive file untrusted", _name("sensitive_file_read"),
                   tags=("T1555",)), "not json at all"],
        4: [_alert("Shadow", _name("sensitive_file_read"), tags=("T1003.008",))],
        9: [_alert("Never read", _name("nsenter"))],
    })
    runs = [_run("nsenter"), _run("sensitive_file_read", techniques=("T1003.008", "T1555"),
                                  expected=("Shadow",))]
    result = alerts_module.collect(mark, runs, ["Setns", "Shadow"], timeout=30,
                                   poll_interval=0.5, clock=fake.clock, sleep=fake.sleep)
    # Detected at the read after sleep 3; one more read (after sleep 4) for the same instants.
    assert fake.sleeps == 4
    assert result["status"] == "verified"
    by_name = {s["scenario"]: s for s in result["scenarios"]}
    assert by_name["nsenter"]["detected_by"] == ["Setns"]
    read = by_name["sensitive_file_read"]
    assert read["detected_by"] == ["Read sensitive file untrusted", "Shadow"]
    assert read["expected"] == [{"rule": "Shadow", "status": "fired", "by": "Shadow",
                                 "latency_s": 1.134}]
    assert result["alerts_ignored"] == 1  # nginx; the older alert is before the mark
    assert result["parse_errors"] == 1


def test_collect_gives_up_after_the_timeout(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    mark = alerts_module.mark_end(str(path))  # the file does not even exist (stand-in Falco)
    fake = FakeClock(path, {})
    result = alerts_module.collect(mark, [_run("nsenter")], ["Setns"], timeout=5,
                                   poll_interval=0.5, clock=fake.clock, sleep=fake.sleep)
    assert result["status"] == "missed"
    assert result["scenarios"][0]["reason"] == ("no alert with T1611 on its container; "
                                                "silent: Setns")
    assert result["file_exists"] is False
    assert fake.now == pytest.approx(5.0)


def test_collect_attributes_unresolved_names_by_container_id(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    mark = alerts_module.mark_end(str(path))
    full_id = "0123456789ab" + "c" * 52
    fake = FakeClock(path, {1: [_alert("Setns", "<NA>", container_id="0123456789ab")]})
    result = alerts_module.collect(mark, [_run("nsenter", container_id=full_id)], ["Setns"],
                                   timeout=5, poll_interval=1, clock=fake.clock,
                                   sleep=fake.sleep)
    assert result["scenarios"][0]["status"] == "detected"


def test_collect_with_only_benign_scenarios_waits_the_whole_timeout(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    mark = alerts_module.mark_end(str(path))
    fake = FakeClock(path, {2: [_alert("Setns", _name("read_etc_hosts"))]})
    result = alerts_module.collect(mark, [_run("read_etc_hosts", kind="benign")], ["Setns"],
                                   timeout=3, poll_interval=1, clock=fake.clock,
                                   sleep=fake.sleep)
    assert fake.now == pytest.approx(3.0)
    assert result["scenarios"][0]["status"] == "false_positive"
    assert result["status"] == "verified"  # false positives are tuning work, not a miss


# --- scenario runner -----------------------------------------------------------------------


def test_scenario_command_is_a_removable_labelled_container(scenarios_module, tmp_path):
    name, argv = scenarios_module.scenario_command(
        RUN_ID, "img:1", {"name": "nsenter", "script": "nsenter -t 1 true",
                          "docker_args": ["--privileged", "--pid=host"]}, "/tmp/x.cid")
    assert name == _name("nsenter")
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[argv.index("--name") + 1] == name
    assert f"falco-deploy.verify.run={RUN_ID}" in argv
    # docker_args go before the image; the script is one argument after it.
    assert argv.index("--privileged") < argv.index("img:1")
    assert argv[-3:] == ["img:1", "-c", scenarios_module.PRELUDE + "nsenter -t 1 true"]
    assert argv[argv.index("--entrypoint") + 1] == "/bin/sh"


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A `docker` on PATH that logs its arguments; `run` writes the cidfile and runs the
    container's script here with /bin/sh (tests give only harmless scripts), exiting with
    $FAKE_DOCKER_RC when set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    script = bin_dir / "docker"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  version) [ -n "$FAKE_NO_DAEMON" ] && {{ echo "Cannot connect to the Docker daemon" >&2; exit 1; }}
           echo 20.10.24 ;;
  image) [ -n "$FAKE_NO_IMAGE" ] && {{ echo "No such image" >&2; exit 1; }}; echo sha256:abc ;;
  ps) ;;
  run) for script; do :; done
       while [ "$1" != --cidfile ]; do shift; done
       [ "$FAKE_DOCKER_RC" = 125 ] && {{
         echo "docker: Error response from daemon: boom" >&2; exit 125; }}
       echo fullcontainerid0123456789 > "$2"; echo "scenario output"
       /bin/sh -c "$script"; rc=$?
       exit "${{FAKE_DOCKER_RC:-$rc}}" ;;
esac
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_probe_reasons(scenarios_module, fake_docker, monkeypatch):
    assert scenarios_module.probe("img:1")["not_run_reason"] is None
    monkeypatch.setenv("FAKE_NO_IMAGE", "1")
    assert scenarios_module.probe("img:1")["not_run_reason"].startswith("image missing: img:1")
    monkeypatch.setenv("FAKE_NO_DAEMON", "1")
    reason = scenarios_module.probe("img:1")["not_run_reason"]
    assert reason.startswith("no docker: the daemon does not answer")
    assert "Cannot connect" in reason


def test_probe_without_docker_cli(scenarios_module, monkeypatch):
    monkeypatch.setattr(scenarios_module.shutil, "which", lambda _: None)
    assert scenarios_module.probe("img:1")["not_run_reason"] == (
        "no docker: the docker CLI is not installed")


def test_run_without_a_trigger_mark_counts_from_docker_run(scenarios_module, fake_docker,
                                                             tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_RC", "3")
    record = scenarios_module.run_one(RUN_ID, "img:1", {"name": "nsenter", "script": "true"},
                                      10, str(tmp_path), clock_ns=lambda: 1_764_443_293_000_000_000)
    assert record["trigger_ns"] == 1_764_443_293_000_000_000
    assert record["trigger_source"] == "docker run"
    assert record["container_id"] == "fullcontainerid0123456789"
    assert record["exit_code"] == 3  # the script's own failure: it ran
    assert record["not_run_reason"] is None
    assert "scenario output" in record["output"]
    assert f"rm -f {_name('nsenter')}" in fake_docker.read_text()


def test_run_refused_by_docker_is_not_run(scenarios_module, fake_docker, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_RC", "125")
    record = scenarios_module.run_one(RUN_ID, "img:1", {"name": "nsenter", "script": "true"},
                                      10, str(tmp_path))
    assert record["trigger_ns"] is None
    assert record["not_run_reason"].startswith("docker run failed: docker: Error response")


def test_run_takes_the_trigger_the_script_marked_right_before_its_attack(
        scenarios_module, fake_docker, tmp_path):
    before = time.time_ns()
    record = scenarios_module.run_one(
        RUN_ID, "img:1", {"name": "nsenter", "kind": "attack", "techniques": ["T1611"],
                          "script": "sleep 0.3; purple_trigger; echo attacked"},
        10, str(tmp_path), clock_ns=lambda: before)
    assert record["trigger_source"] == "attack"
    # The script's own clock after its sleep, not the time before docker run.
    assert record["trigger_ns"] - before >= 300_000_000
    assert record["exit_code"] == 0 and "attacked" in record["output"]
    assert record["kind"] == "attack" and record["techniques"] == ["T1611"]


def test_a_script_that_cannot_attack_here_is_not_run_with_its_reason(
        scenarios_module, fake_docker, tmp_path):
    record = scenarios_module.run_one(
        RUN_ID, "img:1", {"name": "release_agent", "script":
                          "purple_trigger; purple_not_run 'the kernel refused: EPERM'; "
                          "echo never here"}, 10, str(tmp_path))
    assert record["not_run_reason"] == "the kernel refused: EPERM"
    assert record["trigger_ns"] is None and "never here" not in record["output"]


def test_run_checks_the_catalogue_with_the_judge(scenarios_module):
    judge = sys.modules[
        "ansible_collections.falco_deploy.falco.plugins.module_utils.falco_verify_judge"]
    with pytest.raises(judge.CatalogueError, match="an attack needs techniques"):
        judge.check_catalogue({"version": 1, "scenarios": {"x": {"script": "true"}}})


def test_collect_does_not_wait_when_no_scenario_ran(alerts_module, tmp_path):
    path = tmp_path / "events.json"
    mark = alerts_module.mark_end(str(path))
    fake = FakeClock(path, {})
    refused = {**_run("release_agent"), "not_run_reason": "the kernel refused"}
    result = alerts_module.collect(mark, [refused], ["Setns"], timeout=30, poll_interval=0.5,
                                   clock=fake.clock, sleep=fake.sleep)
    assert result["status"] == "not_run"
    assert fake.now <= 0.5  # one read, one poll interval at most
