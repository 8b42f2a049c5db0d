#!/usr/bin/env python3
"""Benchmark `rules validate` (not a test): best of N, in milliseconds.

- in-process: the three official main rules files loaded into one engine, in order (per file
  and total, catalogue already cached as in a long-running process);
- whole command: wall time of `falco-deploy rules validate --engine builtin falco_rules.yaml`
  (the installed entry point if present, else `python -m falco_deploy` from this checkout).

Targets on the 2-core reference machine: in-process total <= 100 ms, whole command <= 250 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "wrapper"))

from falco_deploy.rules_engine import load_text  # noqa: E402
from falco_deploy.rules_engine.catalog import load as load_catalog  # noqa: E402
from falco_deploy.rules_engine.loader import Engine  # noqa: E402

MAIN = (Path(os.environ.get("FALCO_DEPLOY_SHARED") or ROOT.parent / "shared")
        / "corpus" / "falcosecurity-rules" / "main")
FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")


def bench_in_process(rounds: int) -> tuple[list[float], float]:
    paths = [MAIN / f for f in FILES]
    catalog = load_catalog("0.44")
    best_files = [float("inf")] * len(paths)
    best_total = float("inf")
    for _ in range(rounds):
        engine = Engine(catalog)
        total0 = time.perf_counter()
        for i, p in enumerate(paths):
            t0 = time.perf_counter()
            res = load_text(engine, str(p), p.read_text(encoding="utf-8"))
            best_files[i] = min(best_files[i], time.perf_counter() - t0)
            assert res.successful, res.as_verbose_string()
        best_total = min(best_total, time.perf_counter() - total0)
    return [t * 1000 for t in best_files], best_total * 1000


def bench_command(rounds: int) -> tuple[float, list[str]]:
    exe = shutil.which("falco-deploy")
    if exe:
        cmd = [exe]
        env = dict(os.environ)
    else:
        cmd = [sys.executable, "-m", "falco_deploy"]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "wrapper"))
    cmd += ["rules", "validate", "--engine", "builtin", str(MAIN / "falco_rules.yaml")]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False)
        best = min(best, time.perf_counter() - t0)
        assert proc.returncode == 0
    return best * 1000, cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=20)
    args = ap.parse_args()
    per_file, total = bench_in_process(args.rounds)
    for name, ms in zip(FILES, per_file, strict=False):
        print(f"in-process {name:32s} {ms:7.1f} ms")
    print(f"in-process total (3 files, one engine)   {total:7.1f} ms   (target <= 100)")
    wall, cmd = bench_command(max(5, args.rounds // 2))
    print(f"whole command on falco_rules.yaml        {wall:7.1f} ms   (target <= 250)")
    print("  command: " + " ".join(cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
