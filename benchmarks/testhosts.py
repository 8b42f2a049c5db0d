"""Local systemd test hosts for the benchmarks: boot, inventory, removal.

Needs what the integration tests need (scripts/setup: Docker, the test-host image, the stand-in
repository). Hosts are reached over `docker exec`; nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("FALCO_DEPLOY_TESTHOST_IMAGE", "falco-deploy-testhost:bookworm")
TESTBED = Path(os.environ.get("FALCO_DEPLOY_TESTBED", "/var/lib/falco-deploy-testbed"))
# This checkout's wrapper, run by this interpreter (whose environment must hold ansible).
FALCO_DEPLOY = [sys.executable, "-m", "falco_deploy"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT / "wrapper"), os.environ.get("PYTHONPATH", "")) if p)}


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def boot(names: list[str]) -> None:
    for name in names:
        docker("run", "-d", "--name", name, "--hostname", name, "--privileged",
               "--cgroupns=private", "--tmpfs", "/run", "--tmpfs", "/tmp",
               "-v", f"{TESTBED}/standin/repo:/mnt/falco-repo:ro", IMAGE, "/lib/systemd/systemd")
    for name in names:
        docker("exec", name, "timeout", "60", "systemctl", "is-system-running", "--wait",
               check=False)


def host_states(names: list[str]) -> str:
    """docker's view of hosts that are not running (why a run lost them)."""
    out = docker("inspect", "-f", "{{.Name}} {{.State.Status}} exit={{.State.ExitCode}} "
                 "oom={{.State.OOMKilled}} {{.State.Error}}", *names, check=False)
    return "\n".join(line for line in (out.stdout + out.stderr).splitlines()
                     if " running " not in line + " ")


def write_inventory(workdir: Path, names: list[str]) -> Path:
    """These hosts, with the test bed's settings (stand-in repository, pinned key)."""
    lines = ["all:", "  hosts:"]
    lines += [f"    {n}:\n      ansible_connection: community.docker.docker" for n in names]
    path = workdir / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    (workdir / "group_vars").symlink_to(ROOT / "inventories" / "testbed" / "group_vars")
    return path


def host_counts(doc: str, argv: list[str] | None, repeat: bool = False):
    """--hosts 1,5,10,20 parsed (and --repeat K when `repeat`: then (counts, K) is returned);
    Ctrl-C and SIGTERM both raise KeyboardInterrupt, so a benchmark's `finally` removes its
    containers."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--hosts", default="1,5,10,20",
                    help="comma-separated host counts (default 1,5,10,20)")
    if repeat:
        ap.add_argument("--repeat", type=int, default=3,
                        help="measurements per N; the table shows their medians (default 3)")
    args = ap.parse_args(argv)
    counts = sorted({int(n) for n in args.hosts.split(",") if n.strip()})
    if not counts or counts[0] < 1:
        ap.error("--hosts takes positive integers, e.g. 1,5")
    if repeat and args.repeat < 1:
        ap.error("--repeat takes a positive integer")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return (counts, args.repeat) if repeat else counts


def install(inventory: Path, workdir: Path) -> tuple[float, dict]:
    """`falco-deploy install` on the inventory: wall time and its JSON envelope."""
    artifacts = workdir / f"run-install-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    proc = subprocess.run([*FALCO_DEPLOY, "install", "--inventory", str(inventory),
                           "--output", "json", "--artifacts-dir", str(artifacts)],
                          capture_output=True, text=True, cwd=ROOT, env=ENV)
    elapsed = time.monotonic() - t0
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0:
        bad = [f"{h['host']}: {h['verdict']}: {h['reason']}" for h in doc.get("hosts", [])
               if h["verdict"] not in ("installed", "unchanged")]
        raise RuntimeError(f"install exited {proc.returncode}:\n" + "\n".join(bad)
                           + f"\n{proc.stderr[-1500:]}")
    return elapsed, doc
