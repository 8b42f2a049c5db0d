"""`falco-deploy install` end to end on local systemd test hosts: --check, partial runs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from falco_deploy.exitcodes import ExitCode
from known_secrets import MIRROR_TOKEN, MIRROR_USER, mirror_url

from .conftest import booted_hosts, docker, make_inventory

# Every run's artifacts stay under the test's tmp_path, where the session's secret scan looks.
pytestmark = pytest.mark.run_artifacts

REPO_ROOT = Path(__file__).resolve().parents[2]
FALCO_DEPLOY = Path(sys.executable).with_name("falco-deploy")


@pytest.fixture
def hosts(testbed: Path):
    """Two fresh test hosts; removed afterwards whatever happened."""
    with booted_hosts(testbed, "fd-cli", ["good", "nobtf"]) as names:
        yield names


def _inventory(tmp_path: Path, good: str, nobtf: str) -> Path:
    return make_inventory(tmp_path, {
        good: {},
        nobtf: {"falco_preflight_btf_path": "/nonexistent/btf/vmlinux"},
        # Nothing listens on port 1 of loopback: a genuinely unreachable host.
        "fd-cli-gone": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1",
                        "ansible_port": 1, "ansible_ssh_timeout": 3},
    })


def _install(inventory: Path, tmp_path: Path, *args: str,
             command: str = "install") -> tuple[int, dict]:
    artifacts = tmp_path / f"run-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run([str(FALCO_DEPLOY), command, "--inventory", str(inventory),
                           "--output", "json", "--artifacts-dir", str(artifacts), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.stdout, f"no JSON on stdout; stderr:\n{proc.stderr[-4000:]}"
    return proc.returncode, json.loads(proc.stdout)


def _by_host(envelope: dict) -> dict:
    return {h["host"]: h for h in envelope["hosts"]}


def test_check_mode_changes_nothing_on_a_fresh_host(hosts, tmp_path):
    good, nobtf = hosts
    inventory = _inventory(tmp_path, good, nobtf)
    rc, envelope = _install(inventory, tmp_path, "--check", "--limit", good)
    result = _by_host(envelope)[good]
    assert rc == ExitCode.OK, envelope
    assert envelope["check_mode"] is True
    assert result["verdict"] == "would change" and result["changed"] > 0
    # It says what it would do, including what --check cannot simulate (the package install).
    assert "Write the repository keyring" in result["planned"]
    assert any(step.startswith("Would ") and "install falco 0.44.0" in step
               for step in result["planned"]), result["planned"]
    # Nothing was written: no package, no key, no repository, no Falco config.
    probe = docker("exec", good, "sh", "-c",
                    "dpkg -s falco >/dev/null 2>&1 && echo pkg; "
                    "ls /etc/apt/keyrings/falcosecurity.asc /etc/falco"
                    " /etc/apt/sources.list.d/falcosecurity.list 2>/dev/null; true")
    assert probe.stdout.strip() == ""


def test_partial_run_reports_skipped_and_unreachable_hosts(hosts, tmp_path):
    good, nobtf = hosts
    inventory = _inventory(tmp_path, good, nobtf)
    rc, envelope = _install(inventory, tmp_path)
    results = _by_host(envelope)
    assert rc == ExitCode.PARTIAL and envelope["exit_status"] == "partial"
    assert results[good]["verdict"] == "installed"
    assert results[good]["falco_version"] == "0.44.0"
    assert results[good]["driver"] == "modern_ebpf"
    assert "active" in results[good]["service"]
    assert results[nobtf]["verdict"] == "skipped"
    assert "/nonexistent/btf/vmlinux" in results[nobtf]["reason"]
    assert results["fd-cli-gone"]["verdict"] == "unreachable"
    assert results["fd-cli-gone"]["reason"]
    assert Path(envelope["artifacts_dir"]).is_dir()
    # The skipped host was not touched.
    assert docker("exec", nobtf, "test", "-e", "/etc/falco", check=False).returncode != 0

    # A second run on the installed host changes nothing.
    rc, envelope = _install(inventory, tmp_path, "--limit", good)
    assert rc == ExitCode.OK
    assert _by_host(envelope)[good]["verdict"] == "unchanged"
    assert _by_host(envelope)[good]["changed"] == 0

    # uninstall through the CLI: --check lists the steps and changes nothing, then the host is
    # cleared, and a second run has nothing left to do (molecule/uninstall compares the whole
    # package and file state).
    rc, envelope = _install(inventory, tmp_path, "--limit", good, "--check",
                            command="uninstall")
    result = _by_host(envelope)[good]
    assert rc == ExitCode.OK and result["verdict"] == "would change", envelope
    assert "purge package falco" in result["planned"]
    assert docker("exec", good, "dpkg", "-s", "falco", check=False).returncode == 0
    rc, envelope = _install(inventory, tmp_path, "--limit", good, command="uninstall")
    result = _by_host(envelope)[good]
    assert rc == ExitCode.OK and result["verdict"] == "removed", envelope
    assert "purge package falco" in result["removed"]
    assert docker("exec", good, "dpkg", "-s", "falco", check=False).returncode != 0
    rc, envelope = _install(inventory, tmp_path, "--limit", good, command="uninstall")
    assert rc == ExitCode.OK and _by_host(envelope)[good]["verdict"] == "unchanged", envelope


def test_repository_credentials_go_to_a_root_only_file_and_nowhere_else(hosts, tmp_path):
    good, nobtf = hosts
    inventory = _inventory(tmp_path, good, nobtf)
    secret = MIRROR_TOKEN
    # Nothing listens there: the package index update fails after the files are written.
    url = mirror_url("127.0.0.1:9/falco/deb")
    rc, envelope = _install(inventory, tmp_path, "--limit", good, "-e",
                            f"falco_package_repo_url={url}")
    assert rc == ExitCode.FAILED, envelope
    source = docker("exec", good, "cat", "/etc/apt/sources.list.d/falcosecurity.list").stdout
    assert "https://127.0.0.1:9/falco/deb stable main" in source and secret not in source
    auth = docker("exec", good, "stat", "-c", "%a %U:%G",
                  "/etc/apt/auth.conf.d/falcosecurity.conf").stdout.strip()
    assert auth == "600 root:root"
    assert docker("exec", good, "cat", "/etc/apt/auth.conf.d/falcosecurity.conf").stdout == \
        f"machine 127.0.0.1:9/falco/deb login {MIRROR_USER} password {secret}\n"
    # Not in the result, not in any artifact of the run.
    assert secret not in json.dumps(envelope)
    for path in Path(envelope["artifacts_dir"]).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# A third-party repository on the host's loopback that offers a higher `falco` (it stands for any
# other source a host may have configured). trusted=yes only because this test repository is
# unsigned; the pin, not the signature, is under test.
_OTHER_REPO = r"""
set -e
mkdir -p /srv/other/pkg/DEBIAN
cd /srv/other
printf '%s\n' 'Package: falco' 'Version: 0.99.0' 'Architecture: all' \
  'Maintainer: test <test@localhost>' 'Description: falco from another source' > pkg/DEBIAN/control
dpkg-deb -b pkg falco_0.99.0_all.deb >/dev/null
python3 - <<'EOF'
import hashlib
deb = open("falco_0.99.0_all.deb", "rb").read()
control = open("pkg/DEBIAN/control").read()
open("Packages", "w").write(control + "Filename: ./falco_0.99.0_all.deb\nSize: %d\nSHA256: %s\n\n"
                            % (len(deb), hashlib.sha256(deb).hexdigest()))
EOF
echo 'deb [trusted=yes] http://127.0.0.1:8081/ ./' > /etc/apt/sources.list.d/other.list
"""


def test_falco_comes_only_from_the_configured_repository(hosts, tmp_path):
    good, nobtf = hosts
    inventory = _inventory(tmp_path, good, nobtf)
    docker("exec", good, "bash", "-c", _OTHER_REPO)
    docker("exec", "-d", good, "python3", "-m", "http.server", "-b", "127.0.0.1", "-d",
           "/srv/other", "8081")
    docker("exec", good, "bash", "-c",
           "for i in $(seq 100); do python3 -c \"import urllib.request as u;"
           " u.urlopen('http://127.0.0.1:8081/Packages')\" 2>/dev/null && exit 0; sleep 0.1;"
           " done; exit 1")
    docker("exec", good, "apt-get", "update", "-qq")
    assert "0.99.0" in docker("exec", good, "apt-cache", "policy", "falco").stdout

    # Unpinned: the newest falco of the configured repository, not the higher one elsewhere.
    rc, envelope = _install(inventory, tmp_path, "--limit", good, "-e", "falco_package_version=")
    assert rc == ExitCode.OK, envelope
    assert _by_host(envelope)[good]["falco_version"] == "0.44.0"
    pin = "/etc/apt/preferences.d/falco-deploy-falco"
    assert docker("exec", good, "stat", "-c", "%a %U:%G", pin).stdout.strip() == "644 root:root"
    policy = docker("exec", good, "apt-cache", "policy", "falco").stdout
    assert "0.99.0 -1" in policy and "0.44.0 990" in policy, policy
    # apt itself keeps to it afterwards (an unattended upgrade, an operator's apt-get upgrade).
    upgrade = docker("exec", good, "apt-get", "install", "-s", "--only-upgrade", "falco").stdout
    assert "Inst falco" not in upgrade, upgrade

    # A pinned version that only the other source offers is refused before apt runs.
    rc, envelope = _install(inventory, tmp_path, "--limit", good,
                            "-e", "falco_package_version=0.99.0")
    assert rc == ExitCode.FAILED, envelope
    assert "falco 0.99.0 is not offered by file:/mnt/falco-repo" in \
        _by_host(envelope)[good]["reason"], envelope
    assert docker("exec", good, "dpkg-query", "-W", "-f", "${Version}", "falco").stdout == "0.44.0"

    # Uninstall takes the pin away with the repository.
    rc, envelope = _install(inventory, tmp_path, "--limit", good, command="uninstall")
    assert rc == ExitCode.OK, envelope
    assert docker("exec", good, "test", "-e", pin, check=False).returncode != 0
