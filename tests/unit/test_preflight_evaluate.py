"""falco_preflight's thresholds (tasks/evaluate.yml) on probe results made up here: run with a
local connection and no probe, so any OS or kernel can be described. The probe module itself is
tests/unit/test_preflight_probe.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = {
    "kernel_version": "6.1.0", "kernel_release": "6.1.0-28-amd64", "btf_present": True,
    "bpf": {name: {"ok": True, "error": ""} for name in ("ringbuf", "tp_btf", "raw_tracepoint")},
    "arch": "x86_64", "init": {"name": "systemd"}, "glibc_version": "2.36",
    "capabilities": {"CAP_SYS_RESOURCE": True, "cap_bnd": "000001ffffffffff"},
    "memlock": {"soft": "8388608"},
    "os": {"id": "debian", "id_like": [], "version_id": "12"},
}
PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: A made-up probe result
      ansible.builtin.set_fact:
        __falco_preflight_probe: {{probe: {probe}}}
    - name: Evaluate it
      ansible.builtin.include_role:
        name: falco_deploy.falco.falco_preflight
        tasks_from: evaluate
    - name: Show
      ansible.builtin.debug:
        msg: "FD-RESULT {{{{ falco_preflight_result | to_json }}}}"
"""


def evaluate(tmp_path: Path, os_release: dict, **variables) -> dict:
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK.format(probe=json.dumps({**PROBE, "os": os_release})))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), str(book)]
    if variables:
        argv += ["-e", json.dumps(variables)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if "FD-RESULT " in ln)
    return json.loads(line.split("FD-RESULT ", 1)[1].rstrip('"').replace('\\"', '"'))


@pytest.mark.parametrize(("os_release", "family"), [
    ({"id": "debian", "id_like": [], "version_id": "12"}, "Debian"),
    ({"id": "ubuntu", "id_like": ["debian"], "version_id": "24.04"}, "Debian"),
    ({"id": "rocky", "id_like": ["rhel", "centos", "fedora"], "version_id": "9.5"}, "RedHat"),
    ({"id": "amzn", "id_like": ["fedora"], "version_id": "2023"}, "RedHat"),
])
def test_the_os_families_falco_package_implements_pass(tmp_path, os_release, family):
    result = evaluate(tmp_path, os_release)
    assert result["ok"] is True, result
    assert result["os_family"] == family
    assert result["failures"] == []


def test_another_os_fails_and_a_narrower_list_refuses_redhat(tmp_path):
    result = evaluate(tmp_path, {"id": "alpine", "id_like": [], "version_id": "3.20"})
    assert result["ok"] is False
    assert result["failures"] == ["OS alpine 3.20 (alpine) is not supported"]
    result = evaluate(tmp_path, {"id": "rocky", "id_like": ["rhel"], "version_id": "9.5"},
                      falco_preflight_supported_os_families=["Debian"])
    assert result["failures"] == ["OS rocky 9.5 (RedHat) is not supported"]
