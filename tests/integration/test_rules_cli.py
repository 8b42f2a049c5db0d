"""`falco-deploy rules deploy` end to end on local systemd test hosts with the stand-in Falco:
a deploy killed mid-flight leaves every host on exactly the old or the new release, a refused
batch stops a --serial rollout, a set the offline validator rejects touches no host, and a no-op
deploy or status runs no module on the host (the probe answers) while drift still gets repaired."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from falco_deploy.exitcodes import ExitCode

from .conftest import booted_hosts, make_inventory
from .fleet import (
    FALCO_DEPLOY,
    LOCAL_RULES,
    REPO_ROOT,
    RULES_D,
    STATE_DIR,
    active_release,
    by_host,
    cli,
    deploy,
    exception_tuning,
    kill_playbook,
    live_manifest,
    loaded_rules_d,
    make_set,
    probe_rule,
    python_processes,
    set_manifest,
    settle,
    sh,
    staging_watcher,
)

# Their runs leave artifacts in the base temporary folder for the session's secret scan.
pytestmark = pytest.mark.run_artifacts


@pytest.fixture(scope="module")
def fleet(testbed: Path, tmp_path_factory):
    """Three test hosts with Falco installed by `falco-deploy install`; removed afterwards."""
    with booted_hosts(testbed, "fd-rules", ["1", "2", "3"]) as names:
        workdir = tmp_path_factory.mktemp("fleet")
        # Ordered mapping: --serial batches follow inventory order, names[0] goes first.
        inventory = make_inventory(workdir, {n: {} for n in names})
        rc, envelope, stderr = cli(workdir, "install", "--inventory", str(inventory))
        assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
        yield names, inventory, workdir


def test_killed_deploy_leaves_old_or_new_release_and_rerun_converges(fleet):
    """SIGKILL of ansible-playbook once staging began, while the module on the host outlives its
    controller (docker exec does not stop it). The fault matrix (test_fault_matrix.py) kills the
    host-side processes of the run as well, on three hosts."""
    names, inventory, workdir = fleet
    host = names[-1]
    old_set = make_set(workdir, "kill-old", {"zz_kill_old.yaml": probe_rule("kill-old")})
    rc, envelope, stderr = deploy(workdir, inventory, old_set, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    old_release = by_host(envelope)[host]["release"]
    old = live_manifest(host)
    assert old == set_manifest(old_set)

    new_set = make_set(workdir, "kill-new", {"zz_kill_new.yaml": probe_rule("kill-new"),
                                             "zz_kill_more.yaml": probe_rule("kill-more")})
    new = set_manifest(new_set)
    idle = python_processes(host)
    watcher = staging_watcher(host, kill_run=False)
    proc = subprocess.Popen(
        [str(FALCO_DEPLOY), "rules", "deploy", "--inventory", str(inventory), "--rules",
         str(new_set), "--limit", host, "--output", "json", "--artifacts-dir",
         str(workdir / f"run-kill-{uuid.uuid4().hex[:6]}")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        staged = watcher.stdout.readline().strip()
        assert staged, "no new release folder appeared on the host"
        kill_playbook(proc)
    finally:
        watcher.kill()
        watcher.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # The module may go on running on the host after its controller died (docker exec does not
    # kill what it started); wait until the host runs only what it ran before, then look.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and python_processes(host) != idle:
        time.sleep(0.2)
    live = live_manifest(host)
    assert live in (old, new), f"mixed live set: {live}\nold: {old}\nnew: {new}"
    # Which one depends on how far the module got before the kill; -rP shows it.
    print(f"killed after {staged!r} appeared; live set is the {'old' if live == old else 'new'}")
    # Falco itself never loaded a mix either (give a triggered reload time to finish).
    time.sleep(1.5)
    assert loaded_rules_d(host) in (old, new)
    # The active release's manifest describes exactly the live files.
    manifest = json.loads(sh(host, f"cat {RULES_D}/../manifest.json"))
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == live

    rc, envelope, stderr = deploy(workdir, inventory, new_set, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    result = by_host(envelope)[host]
    assert result["verdict"] in ("deployed", "unchanged")
    assert result["release"] != old_release
    assert live_manifest(host) == new
    assert loaded_rules_d(host) == new
    assert not [d for d in sh(host, f"ls -A {STATE_DIR}/releases").split()
                if d.startswith(".staging")], "staging leftovers were not cleaned up"
    rc, envelope, _ = cli(workdir, "status", "--inventory", str(inventory), "--limit", host)
    assert rc == ExitCode.OK and by_host(envelope)[host]["drift"] is False


def test_serial_rollout_stops_after_the_batch_that_refused(fleet):
    names, inventory, workdir = fleet
    first, later = names[0], names[1:]
    base_set = make_set(workdir, "serial-base", {"zz_serial.yaml": probe_rule("serial")})
    rc, envelope, stderr = deploy(workdir, inventory, base_set)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    base_release = {h: by_host(envelope)[h]["release"] for h in names}
    assert len(set(base_release.values())) == 1

    original_local = sh(first, f"cat {LOCAL_RULES}")
    subprocess.run(["docker", "exec", "-i", first, "sh", "-c", f"cat > {LOCAL_RULES}"],
                   input=exception_tuning(["proc.name"], ["fd-site-a"]), text=True, check=True)
    try:
        tuned_set = make_set(workdir, "serial-new", {
            "zz_serial.yaml": probe_rule("serial"),
            "zz_tuning.yaml": exception_tuning(["proc.name", "proc.pname"],
                                               ["fd-site-b", "fd-site-parent"])})
        rc, envelope, stderr = deploy(workdir, inventory, tuned_set, "--serial", "1")
        results = by_host(envelope)
        assert rc in (ExitCode.PARTIAL, ExitCode.FAILED), f"{envelope}\n{stderr[-3000:]}"
        assert results[first]["verdict"] == "refused"
        assert "Can not append exception fields" in (
            results[first]["reason"] + json.dumps(results[first]["findings"])), results[first]
        for host in later:
            assert results[host]["verdict"] in ("not run", "failed"), results[host]
        # Every host still runs the previous release, the refusing one included.
        for host in names:
            assert active_release(host) == base_release[host], host
            assert live_manifest(host) == set_manifest(base_set), host
    finally:
        subprocess.run(["docker", "exec", "-i", first, "sh", "-c", f"cat > {LOCAL_RULES}"],
                       input=original_local, text=True, check=True)
        settle(first)


def test_invalid_set_exits_1_and_touches_no_host(fleet):
    names, inventory, workdir = fleet
    broken = make_set(workdir, "broken", {
        "zz_broken.yaml": probe_rule("broken").replace("proc.name = fd-probe-broken",
                                                       "proc.nosuchfield = x")})
    snapshot = ("find /etc/falco /var/lib/falco-deploy -printf '%p %y %T@ %s\\n' | sort; "
                "readlink /etc/falco/rules.d; cat /run/falco/standin-state.json")
    for host in names:
        settle(host)
    before = {h: sh(h, snapshot) for h in names}
    artifacts = workdir / "run-broken"
    proc = subprocess.run([str(FALCO_DEPLOY), "rules", "deploy", "--inventory", str(inventory),
                           "--rules", str(broken), "--artifacts-dir", str(artifacts)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == ExitCode.RULES_INVALID == 1, proc.stdout + proc.stderr
    assert "zz_broken.yaml: Invalid" in proc.stdout
    assert "nonexistent field proc.nosuchfield" in proc.stdout
    # The playbook ran, and its first task (the control node's gate) ended it: no task that
    # reaches a host ran (argument validation stays on the control node too).
    events = [json.loads(p.read_text()) for p in artifacts.glob("job_events/*.json")]
    actions = {e["event_data"].get("task_action") for e in events
               if e["event"].startswith("runner_on_")}
    assert actions == {"ansible.builtin.validate_argument_spec",
                       "falco_deploy.falco.falco_rules_bundle"}, actions
    assert {h: sh(h, snapshot) for h in names} == before


def test_rollback_with_package_version_installs_that_falco_first(fleet):
    names, inventory, workdir = fleet
    host = names[-1]
    first = make_set(workdir, "pkg-a", {"zz_pkg.yaml": probe_rule("pkga")})
    second = make_set(workdir, "pkg-b", {"zz_pkg.yaml": probe_rule("pkgb")})
    rc, envelope, stderr = deploy(workdir, inventory, first, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    release_first = by_host(envelope)[host]["release"]
    rc, envelope, stderr = deploy(workdir, inventory, second, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    assert by_host(envelope)[host]["release"] != release_first
    try:
        rc, envelope, stderr = cli(workdir, "rollback", "--inventory", str(inventory),
                                   "--limit", host, "--steps", "1",
                                   "--package-version", "0.43.0")
        assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
        assert by_host(envelope)[host]["release"] == release_first
        assert sh(host, "dpkg-query -W -f '${Version}' falco").strip() == "0.43.0"
        # The downgrade's postinst stopped and disabled Falco; it runs again, on the old rules.
        assert sh(host, "systemctl is-active falco-modern-bpf.service").strip() == "active"
        assert active_release(host) == release_first
        assert live_manifest(host) == set_manifest(first)
        settle(host)
        assert loaded_rules_d(host) == set_manifest(first)
    finally:
        # Back to the pinned version for whatever runs after this test.
        rc, envelope, stderr = cli(workdir, "install", "--inventory", str(inventory),
                                   "--limit", host)
        assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"


def module_calls(host: str) -> int:
    """Runs of the falco_rules_release module on the host: each logs `Invoked with` to the
    journal (AnsibleModule's invocation log, tagged `ansible-<the name the task called>`, here
    the FQCN), a probe logs nothing."""
    time.sleep(0.5)  # journald takes the module's syslog line asynchronously
    out = sh(host, "journalctl --no-pager -o cat "
                    "-t ansible-falco_deploy.falco.falco_rules_release", check=False)
    return sum(1 for line in out.splitlines() if line.startswith("Invoked with"))


def test_a_no_op_deploy_and_status_run_no_module_and_drift_is_repaired(fleet):
    names, inventory, workdir = fleet
    host = names[1]
    folder = make_set(workdir, "noop", {"zz_noop.yaml": probe_rule("noop")})
    rc, envelope, stderr = deploy(workdir, inventory, folder, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    release = by_host(envelope)[host]["release"]
    calls = module_calls(host)

    rc, envelope, stderr = deploy(workdir, inventory, folder, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    assert by_host(envelope)[host]["verdict"] == "unchanged"
    assert envelope["summary"]["changed_tasks"] == 0
    assert by_host(envelope)[host]["falco_version"] == "0.44.0"  # the report is complete
    rc, envelope, _ = cli(workdir, "status", "--inventory", str(inventory), "--limit", host)
    assert rc == ExitCode.OK
    assert by_host(envelope)[host]["release"] == release
    assert by_host(envelope)[host]["drift"] is False
    assert module_calls(host) == calls, "the no-op deploy or status ran the module"

    # An out-of-band edit: the probe sees drift, so the deploy runs the module and repairs it.
    sh(host, f"echo '# edited on the host' >> {RULES_D}/zz_noop.yaml")
    settle(host)
    rc, envelope, _ = cli(workdir, "status", "--inventory", str(inventory), "--limit", host)
    assert rc == ExitCode.DRIFT
    rc, envelope, stderr = deploy(workdir, inventory, folder, "--limit", host)
    assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
    assert by_host(envelope)[host]["verdict"] == "deployed"
    assert module_calls(host) == calls + 1
    assert live_manifest(host) == set_manifest(folder)
    settle(host)
    assert loaded_rules_d(host) == set_manifest(folder)


def status_of(workdir, inventory, host) -> tuple[int, dict]:
    rc, envelope, stderr = cli(workdir, "status", "--inventory", str(inventory), "--limit", host)
    assert envelope, stderr[-3000:]
    return rc, by_host(envelope)[host]


def test_status_and_deploy_tell_the_truth_about_falco_itself(fleet):
    """A stopped Falco, one restarting in a loop, a dangling rules.d and no Falco at all each get
    their own verdict and exit 8 (unprotected); a deploy that goes live on a stopped Falco says
    so. Everything is put back at the end of each step."""
    names, inventory, workdir = fleet
    host = names[0]
    unit = "falco-modern-bpf.service"
    rc, report = status_of(workdir, inventory, host)
    assert (rc, report["verdict"], report["falco_state"]) == (ExitCode.OK, "in sync", "running")

    sh(host, f"systemctl stop {unit}")
    try:
        rc, report = status_of(workdir, inventory, host)
        assert rc == ExitCode.UNPROTECTED == 8
        assert report["verdict"] == "falco down" and report["falco_state"] == "stopped"
        assert report["reason"] == f"{unit} inactive (dead): Falco is not running"
        folder = make_set(workdir, "down", {"zz_down.yaml": probe_rule("down")})
        rc, envelope, stderr = deploy(workdir, inventory, folder, "--limit", host)
        assert rc == ExitCode.UNPROTECTED, f"{envelope}\n{stderr[-3000:]}"
        deployed = by_host(envelope)[host]
        assert deployed["verdict"] == "deployed, falco down"
        assert deployed["health_checks"] == ["not reloaded: Falco is not running"]
        assert live_manifest(host) == set_manifest(folder)  # live on disk all the same
    finally:
        sh(host, f"systemctl start {unit}")

    # A drop-in Falco cannot read stops it at every start: systemd restarts it every RestartSec
    # (Restart=on-failure), and in between the unit waits in auto-restart.
    sh(host, "printf 'webserver: [\\n' > /etc/falco/config.d/zz-crash.yaml && "
              f"systemctl restart {unit}; sleep 1")
    try:
        rc, report = status_of(workdir, inventory, host)
        assert rc == ExitCode.UNPROTECTED
        assert report["verdict"] == "falco down" and report["falco_state"] == "restarting"
        assert "restarting in a loop" in report["reason"], report["reason"]
    finally:
        sh(host, f"rm -f /etc/falco/config.d/zz-crash.yaml && systemctl reset-failed {unit}; "
                  f"systemctl restart {unit}")
        settle(host)
    rc, report = status_of(workdir, inventory, host)
    assert (rc, report["verdict"]) == (ExitCode.OK, "in sync"), report

    target = sh(host, f"readlink {RULES_D}").strip()
    sh(host, f"ln -sfn /nonexistent/rules {RULES_D}")
    try:
        rc, report = status_of(workdir, inventory, host)
        assert rc == ExitCode.UNPROTECTED, report
        assert (report["verdict"], report["rules_dir_state"]) == ("rules missing", "dangling")
        assert report["reason"] == (f"{RULES_D} is a dangling symlink (to /nonexistent/rules): "
                                    "Falco loads no rules from it")
    finally:
        sh(host, f"ln -sfn {target} {RULES_D}")

    sh(host, "mv /usr/bin/falco /usr/bin/falco.away")
    try:
        rc, report = status_of(workdir, inventory, host)
        assert rc == ExitCode.UNPROTECTED
        assert report["verdict"] == "no falco" and report["falco_state"] == "missing"
    finally:
        sh(host, "mv /usr/bin/falco.away /usr/bin/falco")
    settle(host)
    rc, report = status_of(workdir, inventory, host)
    assert (rc, report["verdict"]) == (ExitCode.OK, "in sync")
