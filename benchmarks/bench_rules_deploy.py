#!/usr/bin/env python3
"""Benchmark `falco-deploy rules deploy` against a minimal plain-Ansible push (not a test).

For each N (default 1, 5, 10, 20) on the first N of a set of local systemd test hosts (booted
here, Falco installed once with `falco-deploy install`), it times in the same run:

- falco-deploy first run: a rules set these hosts have not seen (3 files: the project's rules
  and two marker rules), then the same command again (no-op: must report 0 changed);
- the minimal plain-Ansible push (a playbook written below): copy the 3 files in a loop into a
  new release folder, run `falco -V` over the package's rules and the staged files, switch a
  symlink, `systemctl reload` - and again with nothing new (its copies report ok, so the rest
  is skipped).

and prints wall times, the ratio falco-deploy / plain push, no-op / first run, and the changed
counts. Each N is measured --repeat times (default 3, each with a new rules set); the table
shows the medians, the ratios are those of the medians. The plain push switches its own symlink
(/etc/falco/rules.bench.d), which Falco does not load, so the two never fight over
/etc/falco/rules.d; its reload costs what ours costs.

Targets (issue "Rules lifecycle"): ratio <= 1.0 at N = 20, no-op <= 0.6 x first run, 0 changed.
Containers are removed at the end, also on Ctrl-C. Needs what the integration tests need
(scripts/setup: Docker, the test-host image, the stand-in repository).

Usage: bench_rules_deploy.py [--hosts 1,5,10,20] [--repeat 3]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from testhosts import (
    ENV,
    FALCO_DEPLOY,
    ROOT,
    boot,
    docker,
    host_counts,
    host_states,
    install,
    write_inventory,
)

PLAIN_PUSH = """\
---
# The minimal plain-Ansible equivalent of a rules deploy (what an operator writes by hand).
- name: Push Falco rules
  hosts: all
  gather_facts: false
  become: true
  vars:
    release_dir: /var/lib/fd-bench/releases/{{ bench_release }}
  tasks:
    - name: Create the release folder
      ansible.builtin.file:
        path: "{{ release_dir }}"
        state: directory
        mode: "0755"

    - name: Copy the rules files
      ansible.builtin.copy:
        src: "{{ item }}"
        dest: "{{ release_dir }}/"
        mode: "0644"
      loop: "{{ bench_files }}"
      register: copied

    - name: Validate the whole set with falco -V
      ansible.builtin.command: >-
        falco -V /etc/falco/falco_rules.yaml -V /etc/falco/falco_rules.local.yaml
        {% for f in bench_files %} -V {{ release_dir }}/{{ f | basename }}{% endfor %}
      when: copied is changed
      changed_when: false

    - name: Switch the symlink
      ansible.builtin.file:
        src: "{{ release_dir }}"
        dest: /etc/falco/rules.bench.d
        state: link
        force: true
      when: copied is changed

    - name: Reload Falco
      ansible.builtin.systemd_service:
        name: falco-modern-bpf
        state: reloaded
      when: copied is changed
"""

MARKER = """\
- rule: Fd bench marker {tag}
  desc: Fires when a process named fd-bench-{tag} starts; marks a benchmark rules set.
  condition: spawned_process and proc.name = fd-bench-{tag}
  output: fd-bench-{tag} started (proc.cmdline=%proc.cmdline)
  priority: WARNING
  tags: [test]
"""


def make_set(workdir: Path, tag: str) -> Path:
    folder = workdir / f"set-{tag}"
    folder.mkdir()
    rules = sorted((ROOT / "rules").glob("*.yaml"))
    for f in rules:
        shutil.copy(f, folder / f.name)
    for i in range(3 - len(rules)):
        (folder / f"zz_marker_{i}.yaml").write_text(MARKER.format(tag=f"{tag}-{i}"))
    return folder


def falco_deploy(inventory: Path, limit: str, rules: Path, workdir: Path) -> tuple[float, dict]:
    cmd = [*FALCO_DEPLOY, "rules", "deploy", "--inventory", str(inventory), "--limit", limit,
           "--rules", str(rules), "--output", "json",
           "--artifacts-dir", str(workdir / f"run-{uuid.uuid4().hex[:8]}")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    elapsed = time.monotonic() - t0
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0:
        bad = [f"{h['host']}: {h['verdict']}: {h['reason']}" for h in doc.get("hosts", [])
               if h["verdict"] not in ("deployed", "unchanged")]
        raise RuntimeError(f"falco-deploy rules deploy exited {proc.returncode}: "
                           f"{doc.get('error') or ''}\n" + "\n".join(bad)
                           + f"\n{proc.stderr[-1500:] if not bad else ''}")
    return elapsed, doc


def plain_push(inventory: Path, limit: str, rules: Path, release: str,
               playbook: Path) -> tuple[float, int]:
    files = [str(f) for f in sorted(rules.iterdir())]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
           "--limit", limit, str(playbook),
           "-e", json.dumps({"bench_files": files, "bench_release": release})]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"plain push exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    changed = sum(int(m) for m in re.findall(r"\bchanged=(\d+)", proc.stdout))
    return elapsed, changed


def main(argv: list[str] | None = None) -> int:
    counts, repeat = host_counts(__doc__, argv, repeat=True)
    suffix = uuid.uuid4().hex[:6]
    names = [f"fd-bench-{suffix}-{i:02d}" for i in range(1, counts[-1] + 1)]
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-"))
    rows = []
    try:
        print(f"booting {len(names)} test hosts ...", file=sys.stderr)
        boot(names)
        inventory = write_inventory(workdir, names)
        print("installing Falco once with falco-deploy install ...", file=sys.stderr)
        try:
            elapsed, _ = install(inventory, workdir)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{host_states(names)}") from None
        print(f"  install: {elapsed:.1f} s", file=sys.stderr)
        playbook = workdir / "plain_push.yml"
        playbook.write_text(PLAIN_PUSH)

        for n in counts:
            limit = ",".join(names[:n])
            samples = []
            for round_no in range(1, repeat + 1):
                rules = make_set(workdir, f"n{n}-{uuid.uuid4().hex[:6]}")
                print(f"N={n} ({round_no}/{repeat}): falco-deploy rules deploy ...",
                      file=sys.stderr)
                fd_first, doc1 = falco_deploy(inventory, limit, rules, workdir)
                fd_noop, doc2 = falco_deploy(inventory, limit, rules, workdir)
                print(f"N={n} ({round_no}/{repeat}): plain push ...", file=sys.stderr)
                release = f"bench-{uuid.uuid4().hex[:8]}"
                plain_first, plain_changed1 = plain_push(inventory, limit, rules, release,
                                                         playbook)
                plain_noop, plain_changed2 = plain_push(inventory, limit, rules, release,
                                                        playbook)
                verdicts1 = sorted({h["verdict"] for h in doc1["hosts"]})
                verdicts2 = sorted({h["verdict"] for h in doc2["hosts"]})
                samples.append({
                    "fd_first": fd_first, "fd_noop": fd_noop,
                    "plain_first": plain_first, "plain_noop": plain_noop,
                    "fd_changed": (doc1["summary"]["changed_tasks"],
                                   doc2["summary"]["changed_tasks"]),
                    "plain_changed": (plain_changed1, plain_changed2),
                })
                print(f"  fd {fd_first:.2f}/{fd_noop:.2f} s {verdicts1}/{verdicts2}, plain "
                      f"{plain_first:.2f}/{plain_noop:.2f} s", file=sys.stderr)
            row = {key: statistics.median(s[key] for s in samples)
                   for key in ("fd_first", "fd_noop", "plain_first", "plain_noop")}
            # Changed counts: the largest seen, so one no-op that changed something shows.
            for key in ("fd_changed", "plain_changed"):
                row[key] = (max(s[key][0] for s in samples), max(s[key][1] for s in samples))
            rows.append({"n": n, **row})
    except KeyboardInterrupt:
        print("\ninterrupted; removing the test hosts", file=sys.stderr)
        return 130
    finally:
        docker("rm", "-f", *names, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        if rows:
            print_table(rows)
    bad = [r["n"] for r in rows if r["fd_changed"][1] != 0]
    if bad:
        print(f"no-op run changed something for N = {bad}", file=sys.stderr)
        return 1
    return 0


def print_table(rows: list[dict]) -> None:
    head = (f"{'N':>3}  {'fd first':>9}  {'fd no-op':>9}  {'plain first':>11}  "
            f"{'plain no-op':>11}  {'fd/plain':>8}  {'no-op/first':>11}  "
            f"{'fd changed':>10}  {'plain changed':>13}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['n']:>3}  {r['fd_first']:>8.2f}s  {r['fd_noop']:>8.2f}s  "
              f"{r['plain_first']:>10.2f}s  {r['plain_noop']:>10.2f}s  "
              f"{r['fd_first'] / r['plain_first']:>8.2f}  "
              f"{r['fd_noop'] / r['fd_first']:>11.2f}  "
              f"{'{} / {}'.format(*r['fd_changed']):>10}  "
              f"{'{} / {}'.format(*r['plain_changed']):>13}")
    print("(medians of the repeats; changed: first run / no-op run, tasks summed over hosts, the "
          "largest of the repeats; fd/plain: first runs)")


if __name__ == "__main__":
    sys.exit(main())
