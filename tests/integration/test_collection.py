"""The collection as an operator gets it: `ansible-galaxy collection build`, installed from the
tarball into a scratch collections path, used from outside the checkout with plain
ansible-playbook and no falco-deploy configuration: the playbooks by FQCN, and operators' own
playbooks that list one role alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, booted_hosts, docker, make_inventory

BIN = Path(sys.executable).parent
SITE_RULE = """\
- rule: Fd collection probe
  desc: A site rule deployed by an operator's own playbook.
  condition: spawned_process and proc.name = fd-coll-probe
  output: fd-coll-probe started (proc.cmdline=%proc.cmdline)
  priority: WARNING
"""


def clean_env(**more: str) -> dict[str, str]:
    """No ANSIBLE_* of the caller's: the run sees what an operator's machine would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return {**env, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", **more}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, Path]:
    """(the tarball, the scratch collections path it was installed into)."""
    work = tmp_path_factory.mktemp("collection")
    env = clean_env()
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO_ROOT),
                    "--output-path", str(work / "dist")],
                   check=True, capture_output=True, text=True, cwd=work, env=env, timeout=300)
    tarball = next((work / "dist").glob("falco_deploy-falco-*.tar.gz"))
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball),
                    "-p", str(work / "collections")],
                   check=True, capture_output=True, text=True, cwd=work, env=env, timeout=300)
    return tarball, work / "collections"


def playbook(collections: Path, workdir: Path, inventory: Path, *args: str):
    """Plain ansible-playbook, run from `workdir` (outside the checkout) on the installed
    collection only."""
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), *args],
                          capture_output=True, text=True, cwd=workdir, timeout=900,
                          env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections)))
    return proc.returncode, proc.stdout + proc.stderr


def reports(output: str) -> list[dict]:
    """Every falco_deploy_result in a json-format run output."""
    found = []
    for match in re.finditer(r'^ok: \[[^\]]+\] => (\{.*?^\})$', output, re.M | re.S):
        doc = json.loads(match.group(1))
        if "falco_deploy_result" in doc:
            found.append(doc["falco_deploy_result"])
    return found


def recap(output: str) -> dict[str, dict[str, int]]:
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M)}


@pytest.fixture(scope="module")
def installed_host(testbed: Path, collection, tmp_path_factory):
    """A host on which `ansible-playbook falco_deploy.falco.install` ran: (name, workdir,
    inventory, rc, output)."""
    _, collections = collection
    workdir = tmp_path_factory.mktemp("operator")
    with booted_hosts(testbed, "fd-coll", ["a"]) as (host,):
        inventory = make_inventory(workdir, {host: {}})
        rc, output = playbook(collections, workdir, inventory, "falco_deploy.falco.install")
        yield host, workdir, inventory, rc, output


def test_install_and_status_by_fqcn_from_outside_the_checkout(installed_host, collection):
    host, workdir, inventory, rc, output = installed_host
    _, collections = collection
    assert rc == 0, output[-5000:]
    install = [r for r in reports(output) if r["status"] == "ok"]
    assert install and install[0]["falco_version"] == "0.44.0", output[-4000:]
    assert docker("exec", host, "systemctl", "is-active", "falco-modern-bpf.service",
                  check=False).stdout.strip() == "active"

    rc, output = playbook(collections, workdir, inventory, "falco_deploy.falco.status")
    assert rc == 0, output[-5000:]
    (status,) = reports(output)
    assert status["status"] == "ok" and status["drift"] is False
    assert status["release"], status  # install deployed the collection's own rules/
    assert recap(output)[host]["changed"] == 0
    # ... from the installed copy: the checkout was never on the collections path.
    manifest = json.loads(docker("exec", host, "cat", "/var/lib/falco-deploy/releases/"
                                 f"{status['release']}/manifest.json").stdout)
    assert manifest["source"]["paths"][0].startswith(str(collections)), manifest["source"]


def test_an_operators_playbook_with_only_falco_rules(installed_host, collection):
    host, workdir, inventory, _, _ = installed_host
    _, collections = collection
    site = workdir / "site-rules"
    site.mkdir()
    (site / "site_rules.yaml").write_text(SITE_RULE)
    book = workdir / "site.yml"
    book.write_text(f"""\
- name: Our own rules
  hosts: all
  gather_facts: false
  roles:
    - role: falco_deploy.falco.falco_rules
      vars:
        falco_rules_sources: [{site}]
""")
    rc, output = playbook(collections, workdir, inventory, str(book))
    assert rc == 0, output[-5000:]
    (report,) = reports(output)
    assert report["status"] == "ok", report
    live = docker("exec", host, "ls", "/etc/falco/rules.d/").stdout.split()
    assert live == ["site_rules.yaml"]
    # A second run of the same set changes nothing.
    rc, output = playbook(collections, workdir, inventory, str(book))
    assert rc == 0 and recap(output)[host]["changed"] == 0, output[-4000:]


def test_an_operators_playbook_with_only_falco_package(testbed: Path, collection, tmp_path):
    _, collections = collection
    book = tmp_path / "site.yml"
    book.write_text("""\
- name: Only the package
  hosts: all
  gather_facts: false
  roles:
    - role: falco_deploy.falco.falco_package
""")
    with booted_hosts(testbed, "fd-coll", ["pkg", "nobtf"]) as (good, nobtf):
        inventory = make_inventory(tmp_path, {
            good: {}, nobtf: {"falco_preflight_btf_path": "/nonexistent/btf/vmlinux"}})
        rc, output = playbook(collections, tmp_path, inventory, str(book))
        # The role ran falco_preflight itself: the host without BTF was reported and left alone.
        (skipped,) = reports(output)
        assert skipped["status"] == "skipped" and "BTF" in skipped["reason"], output[-4000:]
        counts = recap(output)
        assert counts[good]["failed"] == 0 and counts[nobtf]["failed"] == 0, output[-5000:]
        assert rc == 0, output[-5000:]
        installed = docker("exec", good, "dpkg-query", "--show", "--showformat=${Version}",
                           "falco", check=False).stdout
        assert installed == "0.44.0"
        assert docker("exec", nobtf, "test", "-e", "/etc/falco", check=False).returncode != 0
        # Alone, the package role configures no driver and starts no service (upstream's
        # FALCO_DRIVER_CHOICE=none contract): that is falco_driver's and falco_service's job.
        assert docker("exec", good, "systemctl", "is-active", "falco-modern-bpf.service",
                      check=False).stdout.strip() != "active"
