"""A real `falco-deploy install` (local connection) of a playbook that prints, without no_log, the
secrets it was given: the artifacts, the progress lines and the JSON envelope mask them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from falco_deploy.exitcodes import ExitCode
from falco_deploy.redact import MASK
from known_secrets import EXTRA_VAR_SECRET, MIRROR_TOKEN, mirror_url

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Print what no_log should have hidden
      ansible.builtin.debug:
        msg: "{{ fd_test_password }} {{ mirror }} {{ mirror | urlsplit('password') }}"
    - name: Fail with it
      ansible.builtin.fail:
        msg: "cannot reach {{ mirror }} as {{ mirror | urlsplit('username') }} with
          {{ mirror | urlsplit('password') }} ({{ fd_test_password }})"
"""


@pytest.mark.run_artifacts
def test_secrets_a_module_prints_are_masked_in_artifacts_progress_and_envelope(tmp_path):
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "roles").mkdir()
    (project / "playbooks" / "install.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    fd-redact:\n      ansible_connection: local\n")
    artifacts = tmp_path / "artifacts"
    url = mirror_url("127.0.0.1:9/falco/deb")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("falco-deploy")), "install", "-i",
         str(tmp_path / "hosts.yml"), "--project-dir", str(project), "--artifacts-dir",
         str(artifacts), "--output", "json", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"fd_test_password={EXTRA_VAR_SECRET}", "-e", json.dumps({"mirror": url})],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")})
    assert proc.returncode == ExitCode.FAILED, proc.stdout + proc.stderr
    envelope = json.loads(proc.stdout)
    (host,) = envelope["hosts"]
    assert host["reason"] == (f"Fail with it: cannot reach https://{MASK}@127.0.0.1:9/falco/deb "
                              f"as fd-user with {MASK} ({MASK})"), host
    assert "fd-redact | failed | Fail with it | cannot reach https://" in proc.stderr
    for text in (proc.stdout, proc.stderr):
        assert MIRROR_TOKEN not in text and EXTRA_VAR_SECRET not in text

    files = [p for p in artifacts.rglob("*") if p.is_file()]
    events = [p for p in files if p.parent.name == "job_events"]
    assert events and (artifacts / "stdout") in files
    for path in files:
        data = path.read_bytes()
        assert MIRROR_TOKEN.encode() not in data and EXTRA_VAR_SECRET.encode() not in data, path
        assert path.stat().st_mode & 0o077 == 0 or path.name == "stderr", oct(path.stat().st_mode)
    printed = [json.loads(p.read_text()) for p in events]  # every event still loads
    debug = next(e for e in printed if e.get("event") == "runner_on_ok")
    assert debug["event_data"]["res"]["msg"] == \
        f"{MASK} https://{MASK}@127.0.0.1:9/falco/deb {MASK}"
    assert f"{MASK} https://{MASK}@127.0.0.1:9/falco/deb {MASK}" in \
        (artifacts / "stdout").read_text()
