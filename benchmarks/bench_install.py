#!/usr/bin/env python3
"""Benchmark `falco-deploy install` on N local test hosts (not a test).

For each N (default 1, 5, 10, 20) it boots N fresh systemd test hosts, times a first
`falco-deploy install` (stand-in package from the test bed's signed repository, rules included),
then the same command again (no-op: must report 0 changed), and removes the hosts. It prints wall
times, the no-op / first-run ratio and the changed-task counts.

Reference floor measured on the 2-core build machine: plain Ansible over `docker exec` needs
5.4 s for a minimal push to one host and 46 s to 20 hosts.
Containers are removed at the end, also on Ctrl-C. Needs scripts/setup (Docker, the test-host
image, the stand-in repository).

Usage: bench_install.py [--hosts 1,5,10,20]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from testhosts import boot, docker, host_counts, host_states, install, write_inventory


def main(argv: list[str] | None = None) -> int:
    counts = host_counts(__doc__, argv)
    rows = []
    names: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="fd-bench-install-"))
    try:
        for n in counts:
            suffix = uuid.uuid4().hex[:6]
            names = [f"fd-benchi-{suffix}-{i:02d}" for i in range(1, n + 1)]
            print(f"N={n}: booting fresh test hosts ...", file=sys.stderr)
            boot(names)
            run_dir = workdir / f"n{n}"
            run_dir.mkdir()
            inventory = write_inventory(run_dir, names)
            try:
                first, doc1 = install(inventory, run_dir)
                noop, doc2 = install(inventory, run_dir)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{host_states(names)}") from None
            rows.append({
                "n": n, "first": first, "noop": noop,
                "changed": (doc1["summary"]["changed_tasks"], doc2["summary"]["changed_tasks"]),
                "verdicts": (sorted({h["verdict"] for h in doc1["hosts"]}),
                             sorted({h["verdict"] for h in doc2["hosts"]})),
            })
            print(f"  first {first:.2f} s, no-op {noop:.2f} s", file=sys.stderr)
            docker("rm", "-f", *names, check=False)
            names = []
    except KeyboardInterrupt:
        print("\ninterrupted; removing the test hosts", file=sys.stderr)
        return 130
    finally:
        if names:
            docker("rm", "-f", *names, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        if rows:
            print_table(rows)
    bad = [r["n"] for r in rows if r["changed"][1] != 0]
    if bad:
        print(f"no-op run changed something for N = {bad}", file=sys.stderr)
        return 1
    return 0


def print_table(rows: list[dict]) -> None:
    head = (f"{'N':>3}  {'first run':>10}  {'no-op':>8}  {'no-op/first':>11}  "
            f"{'changed (first / no-op)':>24}  verdicts (first / no-op)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['n']:>3}  {r['first']:>9.2f}s  {r['noop']:>7.2f}s  "
              f"{r['noop'] / r['first']:>11.2f}  {'{} / {}'.format(*r['changed']):>24}  "
              f"{','.join(r['verdicts'][0])} / {','.join(r['verdicts'][1])}")


if __name__ == "__main__":
    sys.exit(main())
