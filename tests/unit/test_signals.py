"""SIGTERM or SIGHUP to falco-deploy mid-run: ansible-playbook and what it started are stopped,
the summary is printed with the host that had not finished, the artifacts are complete (and
hold no secret of the environment or of -e) and the exit code is 128 + the signal. A real run
(local connection) of a playbook with a long task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from known_secrets import ENV_SECRET, EXTRA_VAR_SECRET

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: A long task
      ansible.builtin.command: sleep {marker}
"""


def wait_for(condition, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


@pytest.mark.run_artifacts
@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                      (signal.SIGHUP, 129, "hangup")])
def test_a_signal_stops_the_run_cleanly(tmp_path, signum, code, word):
    marker = f"4{signum}.{os.getpid() % 1000}"  # a sleep argument no other process has
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "roles").mkdir()
    (project / "playbooks" / "install.yml").write_text(PLAYBOOK.format(marker=marker))
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    fd-signal:\n      ansible_connection: local\n")
    artifacts = tmp_path / "artifacts"
    cli = subprocess.Popen(
        [str(Path(sys.executable).with_name("falco-deploy")), "install", "-i",
         str(tmp_path / "hosts.yml"), "--project-dir", str(project), "--artifacts-dir",
         str(artifacts), "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"fd_test_password={EXTRA_VAR_SECRET}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
             "FD_TEST_TOKEN": ENV_SECRET})
    try:
        def task_running() -> bool:
            return subprocess.run(["pgrep", "-f", f"sleep {marker}"],
                                  capture_output=True).returncode == 0

        wait_for(task_running)
        cli.send_signal(signum)
        output, _ = cli.communicate(timeout=60)
    finally:
        cli.kill()
    assert cli.returncode == code, output
    assert f"interrupted: {signal.Signals(signum).name} during: A long task" in output
    assert f"Exit status: {word} ({code})" in output
    assert "Traceback" not in output
    # Nothing is left running, and the run's artifacts are whole.
    wait_for(lambda: not task_running(), seconds=15)
    playbook = project / "playbooks" / "install.yml"
    assert subprocess.run(["pgrep", "-f", str(playbook)], capture_output=True).returncode != 0
    assert (artifacts / "status").read_text() and (artifacts / "rc").read_text()
    # The operator's environment and secret-named -e values stay out of the artifacts.
    for path in artifacts.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert EXTRA_VAR_SECRET.encode() not in data and ENV_SECRET.encode() not in data, \
                path
