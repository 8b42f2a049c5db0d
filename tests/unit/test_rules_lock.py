"""The host's deploy lock (falco_rules_release.take_lock): a second deploy or rollback waits for the
first, at most lock_timeout seconds, and then fails with a message that names the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.falco_deploy.falco.plugins.modules import (  # noqa: E402
    falco_rules_release as module,
)

# Another run holding the lock: a separate process, as a concurrent ansible worker would be.
HOLDER = """
import sys, time
sys.path.insert(0, {collections!r})
from ansible_collections.falco_deploy.falco.plugins.modules import falco_rules_release as m
lock, busy = m.take_lock({path!r}, 5)
print("held" if lock else busy, flush=True)
time.sleep(float(sys.argv[1]))
"""


def _holder(path: Path, seconds: float) -> subprocess.Popen:
    code = HOLDER.format(collections=str(ROOT / ".collections"), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code, str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_free_lock_is_taken_and_names_its_holder(tmp_path):
    path = tmp_path / ".lock"
    lock, busy = module.take_lock(str(path), 1)
    assert busy == "" and lock is not None
    assert path.read_text().startswith(f"pid {os.getpid()} since ")
    lock.close()


def test_a_held_lock_times_out_with_the_holder_named(tmp_path):
    path = tmp_path / ".lock"
    holder = _holder(path, 30)
    try:
        started = time.monotonic()
        lock, busy = module.take_lock(str(path), 0.6)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert lock is None
    assert 0.6 <= waited < 5
    assert f"holds {path} (pid {holder.pid} since " in busy
    assert "waited 0.6 s (falco_rules_lock_timeout) and changed nothing" in busy


def test_the_waiter_gets_the_lock_when_the_holder_ends(tmp_path):
    path = tmp_path / ".lock"
    holder = _holder(path, 0.5)
    lock, busy = module.take_lock(str(path), 10)
    holder.wait()
    assert busy == "" and lock is not None
    lock.close()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / ".lock"
    holder = _holder(path, 30)
    holder.kill()  # kill -9: flock(2) goes with the process
    holder.wait()
    lock, busy = module.take_lock(str(path), 0)
    assert busy == "" and lock is not None
    lock.close()
