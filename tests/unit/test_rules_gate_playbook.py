"""The offline gate inside playbooks/rules_deploy.yml, under plain ansible-playbook (no
falco-deploy involved): a refused set ends the run at the control node's first task, before any
task reaches a host, whatever `-e falco_rules_sources` says.

The hosts are ssh addresses on loopback where nothing listens, so any task that reached one
would show as `unreachable` and as an `SSH: EXEC` line in -vvv output: that is how a test tells
"refused before any host task" from "refused by a host".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from known_secrets import LINKED_FILE_SECRET, write_input

ROOT = Path(__file__).resolve().parents[2]
GOOD = """\
- rule: Fd gate probe
  desc: A test rule that uses an upstream macro.
  condition: spawned_process and proc.name = fd-gate-probe
  output: fd-gate-probe started (proc.cmdline=%proc.cmdline)
  priority: WARNING
"""
BROKEN = GOOD.replace("proc.name = fd-gate-probe", "proc.nosuchfield = x")
UNUSED_MACRO = "- macro: fd_gate_unused\n  condition: proc.name = x\n"
INVENTORY = """\
all:
  hosts:
    fd-gate-1: {ansible_connection: ssh, ansible_host: 127.0.0.1, ansible_port: 1}
    fd-gate-2: {ansible_connection: ssh, ansible_host: 127.0.0.1, ansible_port: 1}
"""


def play(tmp_path: Path, files: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    rules = tmp_path / "site-rules"
    rules.mkdir(exist_ok=True)
    for name, text in files.items():
        (rules / name).write_text(text)
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run(
        [str(playbook), "-vvv", "-i", str(tmp_path / "hosts.yml"),
         "falco_deploy.falco.rules_deploy",
         "-e", json.dumps({"falco_rules_sources": [str(rules)]}), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def recap(stdout: str) -> dict[str, dict[str, int]]:
    out = {}
    for host, counts in re.findall(r"^(fd-gate-\d)\s+:\s+(.*)$", stdout, re.M):
        out[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return out


def test_an_invalid_set_is_refused_before_any_host_task(tmp_path):
    proc = play(tmp_path, {"a_good.yaml": GOOD, "b_broken.yaml": BROKEN})
    out = proc.stdout
    assert proc.returncode == 2, out[-3000:] + proc.stderr[-2000:]
    assert "the rules set is invalid; no host was touched" in out
    # The validator's own words, as `falco -V` prints them.
    assert f"{tmp_path / 'site-rules' / 'b_broken.yaml'}: Invalid" in out
    assert "filter_check called with nonexistent field proc.nosuchfield" in out
    assert "SSH: EXEC" not in out
    counts = recap(out)
    assert set(counts) == {"fd-gate-1", "fd-gate-2"}, out[-2000:]
    assert all(c["unreachable"] == 0 for c in counts.values()), counts
    assert sum(c["failed"] for c in counts.values()) >= 1


def test_a_file_without_content_is_refused_though_falco_would_load_it(tmp_path):
    proc = play(tmp_path, {"a_good.yaml": GOOD, "b_empty.yaml": "# nothing yet\n---\n"})
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert ("the rules set has an empty rules file (no rules, macros or lists): "
            f"{tmp_path / 'site-rules' / 'b_empty.yaml'}") in proc.stdout
    assert "SSH: EXEC" not in proc.stdout


def test_warnings_refuse_the_set_unless_the_policy_allows_them(tmp_path):
    files = {"a_good.yaml": GOOD, "b_unused.yaml": UNUSED_MACRO}
    proc = play(tmp_path, files)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "1 warning(s) and warnings fail" in proc.stdout
    assert "LOAD_UNUSED_MACRO" in proc.stdout
    assert "SSH: EXEC" not in proc.stdout
    # Allowed: the gate passes and the play goes on to the hosts, which cannot be reached.
    proc = play(tmp_path, files, "-e", "falco_rules_fail_on_warnings=false")
    counts = recap(proc.stdout)
    assert counts and all(c["unreachable"] == 1 for c in counts.values()), proc.stdout[-3000:]
    assert "no host was touched" not in proc.stdout


def test_the_gate_checks_against_the_chosen_falco_version(tmp_path):
    # k8s.deployment.name: a field of Falco 0.44 (its container plugin), not of Falco 0.40.
    uses_field = GOOD.replace("proc.name = fd-gate-probe", "k8s.deployment.name = x")
    proc = play(tmp_path, {"a.yaml": uses_field})
    assert "unreachable=1" in proc.stdout, proc.stdout[-3000:]
    for version, words in (("0.40", "nonexistent field k8s.deployment.name"),
                           ("0.39", "must be one of: 0.44, 0.40, got: 0.39")):
        proc = play(tmp_path, {"a.yaml": uses_field}, "-e",
                    f"falco_rules_gate_falco_version={version}")
        assert proc.returncode == 2, proc.stdout[-3000:]
        assert words in proc.stdout, proc.stdout[-3000:]
        assert "SSH: EXEC" not in proc.stdout


def test_a_link_in_the_rules_folder_is_refused_and_its_target_never_read(tmp_path):
    secret = write_input(tmp_path / "secret.txt", f"{LINKED_FILE_SECRET}\n")
    rules = tmp_path / "site-rules"
    rules.mkdir()
    (rules / "zz_link.yaml").symlink_to(secret)
    proc = play(tmp_path, {"a_good.yaml": GOOD})
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert f"rules source {rules / 'zz_link.yaml'}: is a symbolic link" in proc.stdout
    assert LINKED_FILE_SECRET not in proc.stdout + proc.stderr
    assert "SSH: EXEC" not in proc.stdout


@pytest.mark.parametrize(("name", "words"), [
    ("my rules.yaml", "unsafe rules file name 'my rules.yaml'"),
    ("_private.yaml", "unsafe rules file name '_private.yaml'"),
])
def test_a_name_the_hosts_refuse_is_refused_at_the_gate(tmp_path, name, words):
    proc = play(tmp_path, {"a_good.yaml": GOOD, name: GOOD.replace("Fd gate probe", "Other")})
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert words in proc.stdout
    assert "SSH: EXEC" not in proc.stdout


def test_fifos_and_oversized_files_are_refused_without_reading_them(tmp_path):
    rules = tmp_path / "site-rules"
    rules.mkdir()
    os.mkfifo(rules / "zz_fifo.yaml")  # reading it would block the run for ever
    proc = play(tmp_path, {"a_good.yaml": GOOD})
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert f"rules source {rules / 'zz_fifo.yaml'}: not a regular file" in proc.stdout
    (rules / "zz_fifo.yaml").unlink()
    (rules / "zz_big.yaml").write_text("# padding\n" * 500_000)  # 5 MB
    proc = play(tmp_path, {"a_good.yaml": GOOD})
    assert proc.returncode == 2
    assert "larger than the 4194304 bytes a rules file may have" in proc.stdout
