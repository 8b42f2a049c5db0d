"""The real state of the `default` scenario's hosts after `falco-deploy install` converged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from conftest import ALL_HOSTS, INSTALLED, SKIPPED

TESTBED = Path(os.environ.get("FALCO_DEPLOY_TESTBED", "/var/lib/falco-deploy-testbed"))
KEYRING = "/etc/apt/keyrings/falcosecurity.asc"
REPO_FILE = "/etc/apt/sources.list.d/falcosecurity.list"


def test_scenario_has_installed_and_skipped_hosts():
    assert len(INSTALLED) >= 2 and set(ALL_HOSTS) >= SKIPPED


def test_pinned_package_version_installed(installed):
    pkg = installed.package("falco")
    assert pkg.is_installed
    assert pkg.version == "0.44.0"
    # json_output is on (falco_service's alert-output drop-in), so Falco prints its version as JSON.
    assert json.loads(installed.check_output("falco --version"))["falco_version"] == "0.44.0"


def test_keyring_holds_exactly_the_pinned_key(installed):
    keyring = installed.file(KEYRING)
    assert keyring.is_file and keyring.user == "root" and keyring.group == "root"
    assert keyring.mode == 0o644
    out = installed.check_output(f"gpg --show-keys --with-colons {KEYRING}")
    fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
    pinned = (TESTBED / "standin" / "fingerprint").read_text().strip()
    assert fprs and fprs[0] == pinned


def test_repository_file_uses_the_keyring(installed):
    repo = installed.file(REPO_FILE)
    assert repo.user == "root" and repo.mode == 0o644
    assert f"deb [signed-by={KEYRING}] file:/mnt/falco-repo stable main" in repo.content_string


def test_driver_is_modern_ebpf(installed):
    kind = installed.file("/etc/falco/config.d/engine-kind-falcoctl.yaml")
    assert yaml.safe_load(kind.content_string)["engine"]["kind"] == "modern_ebpf"


def test_units(installed):
    service = installed.service("falco-modern-bpf.service")
    assert service.is_enabled and service.is_running
    for other in ("falco-kmod.service", "falco-custom.service"):
        assert not installed.service(other).is_enabled
    follow = installed.run("systemctl is-enabled falcoctl-artifact-follow.service")
    assert follow.stdout.strip() == "masked"


def test_falco_runs_the_configured_driver_and_rules(installed):
    state = json.loads(installed.file("/run/falco/standin-state.json").content_string)
    main_pid = installed.check_output(
        "systemctl show -p MainPID --value falco-modern-bpf.service")
    assert str(state["pid"]) == main_pid.strip()
    assert state["engine_kind"] == "modern_ebpf"
    assert any(f["path"] == "/etc/falco/falco_rules.yaml" for f in state["rules_files"])


def test_falco_files_root_owned_and_not_world_writable(installed):
    bad = installed.check_output(
        "find /etc/falco /etc/apt/keyrings /etc/apt/sources.list.d /var/lib/falco-deploy "
        "! -type l \\( -perm -0002 -o ! -user root \\) -print")  # a link's mode means nothing
    assert bad == ""


def test_preflight_failure_left_host_untouched(skipped):
    assert not skipped.package("falco").is_installed
    for path in ("/etc/falco", KEYRING, REPO_FILE, "/usr/bin/falco", "/var/cache/falco-deploy"):
        assert not skipped.file(path).exists, path
