"""Run every Molecule scenario of the project as one test each (`molecule test -s NAME`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SCENARIOS = sorted(p.parent.name for p in (REPO_ROOT / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, testbed: Path, tmp_path: Path) -> None:
    log = tmp_path / f"molecule-{scenario}.log"
    env = dict(os.environ, FALCO_DEPLOY_TESTBED=str(testbed), PY_COLORS="0",
               ANSIBLE_FORCE_COLOR="0")
    molecule = Path(sys.executable).with_name("molecule")
    with log.open("w") as out:
        proc = subprocess.run([str(molecule), "test", "-s", scenario], cwd=REPO_ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=1200)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{text[-8000:]}"
