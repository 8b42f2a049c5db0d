"""The `forwarding` scenario's hosts and the helpers its tests share: the receiver double's
record, recorded real Falco alerts fed in where Falco hands them over, polling, and runs of the
playbooks the wrapper runs.

Nothing here makes up an alert: every alert is a line real Falco 0.40 wrote
(../shared/corpus/falco-real-0.40/verify-run/events.jsonl); a test only moves it to the place
Falco would have put it (the JSON alert file, or an HTTP POST as Falco's http_output sends it).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

INVENTORY_FILE = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
SHARED = Path(os.environ.get("FALCO_DEPLOY_SHARED") or PROJECT.parent / "shared")
EVENTS = SHARED / "corpus" / "falco-real-0.40" / "verify-run" / "events.jsonl"
RECORD = "/var/lib/siem-receiver/received.jsonl"
ALERT_FILE = "/var/log/falco/events.json"
# The test secrets of host_vars/ (tests/known_secrets.py holds the same values).
SIEM_PASSWORD = "fd-siem-password-4711"
COLLECTOR_TOKEN = "fd-collector-token-4711"


def host(name: str):
    # docker exec directly: the ansible backend would start ansible for every command.
    return testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="module")
def sidekick():
    return host("fd-fwd-sidekick")


@pytest.fixture(scope="module")
def rsyslog():
    return host("fd-fwd-rsyslog")


@pytest.fixture(scope="module")
def collector():
    return host("fd-fwd-http")


def real_alerts() -> list[str]:
    """The recorded alert lines, as real Falco wrote them (one JSON document per line)."""
    return [line for line in EVENTS.read_text().splitlines() if line.strip()]


def records(h, kind: str | None = None) -> list[dict]:
    """What the receiver double on host h got so far (every request, in order)."""
    out = h.run(f"cat {RECORD} 2>/dev/null || true").stdout
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in got if kind is None or r["kind"] == kind]


def poll(check, timeout: float = 60.0, interval: float = 0.2):
    """check() until it returns something truthy or the time is up; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def append_alerts(h, lines: list[str]) -> None:
    """Append alert lines to the alert file the way Falco's file_output does with keep_alive
    false: open for appending, write one alert, close, for each alert."""
    script = ("import sys\n"
              "for line in sys.stdin.read().splitlines():\n"
              f"    with open({ALERT_FILE!r}, 'a') as f:\n"
              "        f.write(line + '\\n')\n")
    h.run("mkdir -p /var/log/falco && chmod 0750 /var/log/falco")
    cmd = h.run(f"python3 -c {shlex.quote(script)} <<'EOF'\n" + "\n".join(lines) + "\nEOF")
    assert cmd.rc == 0, cmd.stderr[-2000:]


def run_playbook(name: str, limit: str, extra: dict | None = None, check: bool = False,
                 diff: bool = False) -> subprocess.CompletedProcess:
    """playbooks/<name> (or a path) as the wrapper runs it, on one host, with ansible's JSON
    callback."""
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
               ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
               ANSIBLE_PIPELINING="True",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_FORCE_COLOR="0")
    argv = [str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(Path(INVENTORY_FILE).parent), "--limit", limit,
            str(name if "/" in name else PROJECT / "playbooks" / name)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    if check:
        argv += ["--check", "--diff"]
    elif diff:
        argv += ["--diff"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def host_stats(proc: subprocess.CompletedProcess, name: str) -> dict:
    return json.loads(proc.stdout)["stats"][name]


def failure_messages(proc: subprocess.CompletedProcess, name: str) -> list[str]:
    doc = json.loads(proc.stdout)
    return [str(task["hosts"][name].get("msg", "")) for play in doc["plays"]
            for task in play["tasks"] if task["hosts"].get(name, {}).get("failed")
            and not task["hosts"][name].get("ignore_errors")]


def forwarding_check(name: str, since: float, alerts: int) -> dict:
    """falco_forwarding's check (what `falco-deploy verify` reports as `forwarding`)."""
    proc = run_playbook(str(PROJECT / "molecule" / "forwarding" / "check-forwarding.yml"), name,
                        {"falco_forwarding_check_since": since,
                         "falco_forwarding_check_alerts": alerts})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for play in json.loads(proc.stdout)["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(name, {})
            if "falco_forwarding_check" in result:
                return result["falco_forwarding_check"]
    raise AssertionError("no falco_forwarding_check in the output")


def host_clock(h) -> float:
    return float(h.check_output("date +%s.%N"))
