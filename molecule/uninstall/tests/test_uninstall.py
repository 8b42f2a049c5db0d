"""After install then uninstall, the host is back to its pre-install package and file state.

prepare.yml snapshotted the fresh host (files/snapshot.sh) before `install`; converge ran
`uninstall`, Molecule's idempotence step ran it again and saw no change. The tests below run in
file order: first the comparison, then --check and the keep options on a reinstalled host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

INVENTORY_FILE = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
HOST = "fd-uninstall-1"
ALERTS = "/var/log/falco/events.json"
RELEASES = "/var/lib/falco-deploy/releases"


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host(f"docker://{HOST}")


def run_playbook(name: str, extra: dict | None = None, check: bool = False) -> dict:
    """Run playbooks/<name> as the wrapper does; return rc, stats and the host's report."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_FORCE_COLOR="0")
    argv = [str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(Path(INVENTORY_FILE).parent), str(PROJECT / "playbooks" / name)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    doc = json.loads(proc.stdout)
    report = None
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            res = task.get("hosts", {}).get(HOST, {})
            if isinstance(res.get("falco_deploy_result"), dict):
                report = res["falco_deploy_result"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return {"stats": doc["stats"][HOST], "report": report}


def snapshot(host, name: str) -> dict[str, str]:
    host.run_test(f"/root/snapshot.sh /root/{name}")
    return {part: host.file(f"/root/{name}/{part}").content_string
            for part in ("packages", "files")}


def differences(before: str, after: str) -> list[str]:
    old, new = set(before.splitlines()), set(after.splitlines())
    return sorted(f"- {line}" for line in old - new) + sorted(f"+ {line}" for line in new - old)


def falco_is_installed(host) -> bool:
    return host.package("falco").is_installed


def test_packages_are_back_to_the_pre_install_state(host):
    before = host.file("/root/pre-install/packages").content_string
    assert differences(before, snapshot(host, "after-uninstall")["packages"]) == []


def test_files_are_back_to_the_pre_install_state(host):
    before = host.file("/root/pre-install/files").content_string
    assert differences(before, snapshot(host, "after-uninstall")["files"]) == []


def test_no_trace_of_falco_or_its_repository(host):
    assert not falco_is_installed(host)
    for path in ("/etc/falco", "/etc/falcoctl", "/var/lib/falco-deploy", "/var/log/falco",
                 "/etc/apt/sources.list.d/falcosecurity.list",
                 "/etc/apt/keyrings/falcosecurity.asc",
                 "/etc/logrotate.d/falco-deploy-alerts",
                 "/etc/systemd/system/falcoctl-artifact-follow.service"):
        assert not host.file(path).exists, path
    # falco_service installed logrotate for the alert file; the fresh host had none.
    assert not host.package("logrotate").is_installed
    # apt's lists of the Falco repository (file:/mnt/falco-repo) went with it.
    assert host.run("ls /var/lib/apt/lists/ | grep -c '^_mnt_falco-repo_'").stdout.strip() == "0"
    unit = host.run("systemctl show -p LoadState falco-modern-bpf.service").stdout.strip()
    assert unit == "LoadState=not-found"


def test_check_mode_lists_the_removals_and_changes_nothing(host):
    run_playbook("install.yml")
    assert falco_is_installed(host)
    before = snapshot(host, "installed")
    out = run_playbook("uninstall.yml", check=True)
    removed = out["report"]["removed"]
    for step in ("stop falco-modern-bpf.service", "unmask falcoctl-artifact-follow.service",
                 "remove /etc/falco/rules.d", "remove /etc/apt/sources.list.d/falcosecurity.list",
                 "remove /etc/apt/keyrings/falcosecurity.asc",
                 "remove /etc/logrotate.d/falco-deploy-alerts", "purge package falco",
                 "remove /var/lib/falco-deploy"):
        assert step in removed, removed
    # python3-apt came with the first install (for Ansible's apt module), logrotate with
    # falco_service's policy for the alert file: they go too.
    assert "purge package python3-apt" in removed
    assert "purge package logrotate" in removed
    assert out["stats"]["changed"] == 1
    assert falco_is_installed(host)
    assert snapshot(host, "installed-after-check") == before


def test_keep_options_leave_the_releases_and_the_alert_log(host):
    host.run_test(f"echo '{{\"rule\": \"kept\"}}' >> {ALERTS}")
    releases = sorted(host.file(RELEASES).listdir())
    assert releases
    out = run_playbook("uninstall.yml", {"falco_uninstall_keep_releases": True,
                                         "falco_uninstall_keep_alert_log": True})
    assert not falco_is_installed(host)
    assert sorted(host.file(RELEASES).listdir()) == releases
    assert sorted(host.file("/var/lib/falco-deploy").listdir()) == ["releases"]
    assert host.file(ALERTS).content_string.endswith('{"rule": "kept"}\n')
    assert any(k.startswith(RELEASES) for k in out["report"]["kept"]), out["report"]
    # What was kept goes with a run that keeps nothing; the host is then back to the snapshot.
    out = run_playbook("uninstall.yml")
    assert f"remove {ALERTS}" in out["report"]["removed"]
    after = snapshot(host, "after-second-uninstall")
    for part in ("packages", "files"):
        before = host.file(f"/root/pre-install/{part}").content_string
        assert differences(before, after[part]) == [], part
