"""Rotation of the alert file by logrotate loses no alert: the installed policy, Debian's logrotate.

How Falco writes the alert file with `file_output.keep_alive: false` (what falco_service sets) is
upstream's documentation: "for each single alert: the file is opened for appending, the single
alert is written, the file is closed" (falcosecurity/falco-website,
content/en/docs/concepts/outputs/channels.md, "File Output"), which
falcosecurity/falco userspace/falco/outputs_file.cpp does: `output()` opens the file with
`std::fstream::app` (O_APPEND), writes the message and its newline, and closes it through
`cleanup()` unless keep_alive is "true". The stand-in Falco of the test bed raises no alerts, so
the writer here is the test's own process imitating that pattern, one line per open/write/close,
as fast as it can, while `logrotate -f` with the policy falco_service installed rotates the file.
"""

from __future__ import annotations

import json
import os
import shlex

POLICY = "/etc/logrotate.d/falco-deploy-alerts"
ALERTS = "/var/log/falco/events.json"

# Runs on the host with its python3. Argument: a JSON document (path, policy, rotations, run).
# The alert files already there are moved aside first and put back at the end; the result is one
# JSON document on stdout.
HARNESS = r'''
import glob, gzip, json, os, shutil, signal, subprocess, sys, tempfile, time

WRITER = """
import json, os, signal, sys
path, run = sys.argv[1], sys.argv[2]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
seq = 0
while not stop:
    line = (json.dumps({"rule": "rotation test", "run": run, "seq": seq, "pad": "x" * 100})
            + "\\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):
        sys.exit("short write")
    seq += 1
print(seq)
"""

args = json.loads(sys.argv[1])
path, policy, rotations, run = args["path"], args["policy"], args["rotations"], args["run"]
pattern = glob.escape(path) + "*"
aside = tempfile.mkdtemp(prefix="rotation-aside-", dir="/var/tmp")
os.makedirs(os.path.dirname(path), exist_ok=True)
for name in glob.glob(pattern):
    shutil.move(name, aside)
try:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path, run],
                              stdout=subprocess.PIPE, text=True)
    runs = []
    for _ in range(rotations):
        time.sleep(0.2)
        proc = subprocess.run(["/usr/sbin/logrotate", "-f", "-s", aside + "/state", policy],
                              capture_output=True, text=True)
        runs.append({"rc": proc.returncode, "stderr": proc.stderr.strip()})
    time.sleep(0.2)
    writer.send_signal(signal.SIGTERM)
    out, _ = writer.communicate(timeout=60)
    seqs, per_file, torn = [], {}, []
    files = sorted(glob.glob(pattern))
    for name in files:
        with (gzip.open if name.endswith(".gz") else open)(name, "rb") as handle:
            data = handle.read()
        lines = data.split(b"\n")
        if lines[-1]:
            torn.append(name + ": no newline at the end")
        for raw in lines[:-1]:
            try:
                doc = json.loads(raw)
            except ValueError:
                torn.append(name + ": " + raw[:80].decode(errors="replace"))
                continue
            if doc.get("run") == run:
                seqs.append(doc["seq"])
                per_file[name] = per_file.get(name, 0) + 1
    written = int(out or -1)
    counts = {}
    for seq in seqs:
        counts[seq] = counts.get(seq, 0) + 1
    print(json.dumps({
        "writer_rc": writer.returncode, "written": written, "found": len(seqs),
        "missing": [s for s in range(written) if s not in counts][:20],
        "twice": sorted(s for s, n in counts.items() if n > 1)[:20],
        "unknown": sorted(s for s in counts if not 0 <= s < written)[:20],
        "per_file": per_file, "torn": torn[:20],
        "files": [os.path.basename(f) for f in files], "logrotate": runs}))
finally:
    for name in glob.glob(pattern):
        os.remove(name)
    for name in os.listdir(aside):
        if name != "state":
            shutil.move(os.path.join(aside, name), os.path.dirname(path))
    shutil.rmtree(aside)
'''


def rotate_while_writing(host, path: str, policy: str, rotations: int) -> dict:
    arg = json.dumps({"path": path, "policy": policy, "rotations": rotations,
                      "run": f"rotation-{os.getpid()}"})
    out = host.check_output(f"python3 - {shlex.quote(arg)} <<'HARNESS'\n{HARNESS}\nHARNESS")
    return json.loads(out)


def kept_files(host) -> int:
    counts = [line.split()[1] for line in host.file(POLICY).content_string.splitlines()
              if line.strip().startswith("rotate ")]
    assert len(counts) == 1, counts
    return int(counts[0])


def test_policy_is_root_owned_and_accepted_by_logrotate(installed):
    policy = installed.file(POLICY)
    assert policy.is_file and policy.user == "root" and policy.group == "root"
    assert policy.mode == 0o644
    text = policy.content_string
    for directive in ("nocreate", "nocopytruncate", "compress", "delaycompress", "missingok"):
        assert f"\n    {directive}\n" in text, directive
    alone = installed.run(f"/usr/sbin/logrotate -d {POLICY}")
    assert alone.rc == 0, alone.stderr
    # Debian's global settings (weekly, rotate 4, create) and the other packages' policies
    # around ours: the whole configuration the daily timer runs must still load.
    whole = installed.run("/usr/sbin/logrotate -d /etc/logrotate.conf")
    assert whole.rc == 0, whole.stderr
    assert f'rotating pattern: "{ALERTS}"' in whole.stderr
    assert installed.service("logrotate.timer").is_enabled


def test_no_alert_is_lost_across_forced_rotations(installed):
    rotations = kept_files(installed)  # one more would delete the oldest file by design
    result = rotate_while_writing(installed, ALERTS, POLICY, rotations)
    assert result["writer_rc"] == 0
    assert result["logrotate"] == [{"rc": 0, "stderr": ""}] * rotations
    # Every line the writer wrote found exactly once: none lost, none twice, none torn.
    assert result["written"] > rotations
    assert (result["missing"], result["twice"], result["unknown"]) == ([], [], [])
    assert result["found"] == result["written"]
    assert result["torn"] == []
    # The writer's lines went into the live file and one file per rotation: each rotation
    # happened while it wrote.
    assert len(result["per_file"]) == rotations + 1, result["per_file"]
    names = set(result["files"])
    assert not [n for n in names if n.endswith(".backup")]
    assert names == {"events.json", "events.json.1"} | {
        f"events.json.{i}.gz" for i in range(2, rotations + 1)}


def test_the_same_run_with_copytruncate_loses_lines(installed):
    """The harness can fail: with copytruncate, lines written between copy and truncate go."""
    path = "/var/tmp/falco-rotation-control/events.json"
    policy = "/var/tmp/falco-rotation-control.logrotate"
    text = installed.file(POLICY).content_string.replace(f'"{ALERTS}"', f'"{path}"').replace(
        "nocopytruncate", "copytruncate")
    installed.check_output(f"umask 022; printf '%s' {shlex.quote(text)} > {policy}")
    try:
        result = rotate_while_writing(installed, path, policy, kept_files(installed))
    finally:
        installed.run(f"rm -rf {policy} {os.path.dirname(path)}")
    assert result["writer_rc"] == 0
    assert result["missing"], result
