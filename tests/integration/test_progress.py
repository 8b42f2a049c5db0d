"""What an operator sees while a run goes on: `falco-deploy install --check` on five systemd test
hosts, once on a real terminal (tmux, the pane captured during and after the run) and once
with stdout to a file, as in CI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import booted_hosts, make_inventory

pytestmark = pytest.mark.run_artifacts

REPO_ROOT = Path(__file__).resolve().parents[2]
FALCO_DEPLOY = Path(sys.executable).with_name("falco-deploy")
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def five_hosts(testbed: Path):
    with booted_hosts(testbed, "fd-prog", ["h1", "h2", "h3", "h4", "h5"]) as names:
        yield names


def _tmux(*args: str, check: bool = True) -> str:
    return subprocess.run(["tmux", *args], check=check, capture_output=True, text=True,
                          timeout=30).stdout


def test_a_terminal_shows_one_live_row_per_host_then_the_summary(five_hosts, tmp_path):
    assert shutil.which("tmux"), "tmux missing: scripts/setup installs it"
    inventory = make_inventory(tmp_path, {name: {} for name in five_hosts})
    session = f"fd-progress-{uuid.uuid4().hex[:6]}"
    command = (f"cd {REPO_ROOT} && {FALCO_DEPLOY} install --check --inventory {inventory} "
               f"--artifacts-dir {tmp_path / 'run'}; echo FD-EXIT=$?; sleep 600")
    _tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "60", command)
    frames: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while True:
            frame = _tmux("capture-pane", "-p", "-t", session)
            if "FD-EXIT=" in frame:
                final = frame
                history = _tmux("capture-pane", "-p", "-S", "-", "-t", session)
                break
            frames.append(frame)
            assert time.monotonic() < deadline, "the run did not end in 600 s"
            time.sleep(0.3)
    finally:
        _tmux("kill-session", "-t", session, check=False)

    # While it ran: frames with a row for every host, each host on exactly one line, and at
    # least one host still running (a spinner frame, not a finished mark).
    def rows(frame: str) -> dict[str, list[str]]:
        return {name: [line for line in frame.splitlines() if f" {name} " in f" {line} "]
                for name in five_hosts}

    running = [f for f in frames if all(len(lines) == 1 for lines in rows(f).values())
               and re.search(r"falco_\w+: ", f)]
    assert running, "no frame showed one row per host during the run:\n" + "\n---\n".join(
        frames[-3:])
    sample = running[len(running) // 2]
    for name, lines in rows(sample).items():
        assert len(lines) == 1, (name, sample)
    # No scrolling task log, neither on screen nor in the pane's history.
    assert not re.search(r"\| (ok|changed|skipped) \|", history), history
    assert "Validating arguments" not in history
    # At the end: the last frame stays, then the summary table with each host's verdict.
    assert "FD-EXIT=0" in final, final
    assert "falco-deploy install --check: nothing was changed" in history
    summary = history.split("falco-deploy install --check: nothing was changed", 1)[1]
    for name in five_hosts:
        assert re.search(rf"{re.escape(name)}\s*│\s*would change", summary), summary


def test_stdout_to_a_file_has_no_escapes_and_a_few_lines_per_host_with_every_reason(
        five_hosts, tmp_path):
    h1, h2, h3, h4, h5 = five_hosts
    gone = "fd-prog-gone"
    inventory = make_inventory(tmp_path, {
        h1: {}, h2: {}, h3: {}, h4: {},
        h5: {"falco_preflight_btf_path": "/nonexistent/btf/vmlinux"},
        # Nothing listens on port 1 of loopback: a genuinely unreachable host.
        gone: {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1,
               "ansible_ssh_timeout": 3},
    })
    log = tmp_path / "install.log"
    with log.open("w") as out:
        proc = subprocess.run([str(FALCO_DEPLOY), "install", "--check", "--inventory",
                               str(inventory), "--artifacts-dir", str(tmp_path / "run")],
                              stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, timeout=600)
    text = log.read_text()
    assert proc.returncode == 3, text  # partial: one skipped, one unreachable
    assert not ANSI.search(text), "escape sequences in a file"
    progress = text.split("falco-deploy install --check", 1)[0].splitlines()
    per_host: dict[str, list[str]] = {}
    for line in progress:
        per_host.setdefault(line.split(" | ", 1)[0], []).append(line)
    assert set(per_host) == {h1, h2, h3, h4, h5, gone}, progress
    assert all(len(lines) <= 8 for lines in per_host.values()), per_host
    assert any(line.startswith(f"{h5} | done | skipped | ") and "btf" in line.lower()
               for line in per_host[h5]), per_host[h5]
    unreachable = [line for line in per_host[gone] if " | unreachable | " in line]
    assert unreachable and unreachable[0].rsplit(" | ", 1)[1].strip(), per_host[gone]
