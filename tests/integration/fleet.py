"""Helpers of the rules end-to-end tests: run the CLI, build rule sets, and read what a test host
has live on disk, in its records and loaded in its (stand-in) Falco."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
FALCO_DEPLOY = Path(sys.executable).with_name("falco-deploy")
STATE_DIR = "/var/lib/falco-deploy"
RULES_D = "/etc/falco/rules.d"
LOCAL_RULES = "/etc/falco/falco_rules.local.yaml"


def probe_rule(name: str) -> str:
    """A valid rule (0 warnings after the upstream base) that marks a set as distinct."""
    return (f"- rule: Fd integration probe {name}\n"
            f"  desc: Fires when a process named fd-probe-{name} starts; a test marker.\n"
            f"  condition: spawned_process and proc.name = fd-probe-{name}\n"
            f"  output: fd-probe-{name} started (proc.cmdline=%proc.cmdline)\n"
            f"  priority: WARNING\n  tags: [test]\n")


# A tuning exception on an upstream rule. Alone (in falco_rules.local.yaml, or in a set) each is
# valid; loaded together Falco refuses the second: "Can not append exception fields to existing
# exception, only values" (falcosecurity/libs userspace/engine/rule_loader_collector.cpp).
def exception_tuning(fields: list[str], values: list[str]) -> str:
    return yaml.safe_dump([{
        "rule": "Terminal shell in container",
        "exceptions": [{"name": "fd_site_tuning", "fields": fields, "comps": ["="] * len(fields),
                        "values": [values]}],
        "override": {"exceptions": "append"},
    }], sort_keys=False)


def docker_cmd(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True,
                          timeout=timeout)


def sh(host: str, script: str, check: bool = True) -> str:
    return docker_cmd("exec", host, "sh", "-c", script, check=check).stdout


def cli(workdir: Path, *args: str, timeout: float = 600) -> tuple[int, dict, str]:
    artifacts = workdir / f"run-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run([str(FALCO_DEPLOY), *args, "--output", "json",
                           "--artifacts-dir", str(artifacts)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)
    envelope = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, envelope, proc.stderr


def by_host(envelope: dict) -> dict:
    return {h["host"]: h for h in envelope["hosts"]}


def make_set(workdir: Path, name: str, extra: dict[str, str]) -> Path:
    """The project's rules plus extra files: a set that differs from every other test's."""
    folder = workdir / f"set-{name}-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for f in (REPO_ROOT / "rules").glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    for fname, text in extra.items():
        (folder / fname).write_text(text)
    return folder


def set_manifest(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.iterdir()) if f.suffix in (".yaml", ".yml")}


def live_manifest(host: str) -> dict[str, str]:
    """name -> sha256 of every file Falco would load from rules.d right now."""
    out = sh(host, f"cd {RULES_D}/ && for f in * .[!.]*; do [ -e \"$f\" ] || continue; "
                    "sha256sum \"$f\"; done")
    return {name.strip(): digest for digest, name in
            (line.split(None, 1) for line in out.splitlines() if line.strip())}


def active_release(host: str) -> str:
    return os.path.basename(os.path.dirname(sh(host, f"readlink {RULES_D}").strip()))


def loaded_rules_d(host: str) -> dict[str, str]:
    """What the running (stand-in) Falco loaded from rules.d: name -> sha256."""
    state = json.loads(sh(host, "cat /run/falco/standin-state.json"))
    return {os.path.basename(f["path"]): f["sha256"] for f in state["rules_files"]
            if f["path"].startswith(RULES_D + "/")}


def settle(host: str, quiet: float = 1.0, timeout: float = 20) -> None:
    """Wait until Falco's state file stops changing: a watched file changed by an earlier step
    makes Falco reload by itself ~0.1 s later (watch_config_files)."""
    deadline = time.monotonic() + timeout
    last = sh(host, "cat /run/falco/standin-state.json", check=False)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = sh(host, "cat /run/falco/standin-state.json", check=False)
        if now == last:
            return
        last = now


def deploy(workdir, inventory, folder, *args):
    return cli(workdir, "rules", "deploy", "--inventory", str(inventory),
               "--rules", str(folder), *args)


def python_processes(host: str) -> list[str]:
    """Command lines of the host's python processes (stand-in falco, Ansible modules)."""
    out = sh(host, "ps -eo args", check=False)
    return sorted(line for line in out.splitlines() if "python" in line)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def staging_watcher(host: str, kill_run: bool) -> subprocess.Popen:
    """Watch from inside the host, so that what follows the first new entry of the releases
    folder (a deploy's staging folder) happens within milliseconds instead of a docker exec round
    trip. It prints that entry's name. With kill_run, it first SIGKILLs, by pid, every process of
    the host that was not running when the watch began (the run's module and its `falco -V`), as
    when the host loses power mid-run."""
    known = " ".join(sorted(sh(host, f"mkdir -p {STATE_DIR}/releases; "
                                     f"ls -A {STATE_DIR}/releases").split()))
    kill_new = ('for p in $(ps -eo pid=); do case "$idle" in *" $p "*) ;; *) '
                '[ "$p" != $$ ] && kill -9 "$p" 2>/dev/null;; esac; done; '
                if kill_run else "")
    return subprocess.Popen(
        ["docker", "exec", host, "sh", "-c",
         f'idle=" $(ps -eo pid= | tr "\\n" " ") "; cd {STATE_DIR}/releases; '
         f"while :; do for d in $(ls -A); do "
         f"case ' {known} ' in *\" $d \"*) ;; *) {kill_new}echo \"$d\"; exit 0;; esac; done; "
         "sleep 0.01; done"],
        stdout=subprocess.PIPE, text=True)


def kill_playbook(proc: subprocess.Popen) -> None:
    """SIGKILL the ansible-playbook under a running `falco-deploy` and all its workers, then
    reap the CLI."""
    playbooks = [p for p in descendants(proc.pid) if "ansible-playbook" in cmdline(p)]
    assert playbooks, "ansible-playbook was already gone"
    victims = set()
    for pid in playbooks:
        victims.add(pid)
        victims.update(descendants(pid))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    for pid in victims:  # workers call setsid(), outside the process group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=120)
