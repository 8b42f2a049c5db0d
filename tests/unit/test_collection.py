"""The repository is the Ansible collection falco_deploy.falco: its metadata agrees with the
Python package, and `ansible-galaxy collection build` ships the content and the offline validator
(the rules gate runs it on the control node) but not the rest of the tool, its tests or the test
bed. tests/integration/test_collection.py installs the tarball and runs it against test hosts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from falco_deploy import __version__

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())


def test_metadata_agrees_with_the_python_package():
    assert (GALAXY["namespace"], GALAXY["name"]) == ("falco_deploy", "falco")
    assert GALAXY["version"] == __version__
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    # The collection asks for the same ansible-core as the CLI's pyproject.toml.
    pyproject = (ROOT / "pyproject.toml").read_text()
    lower = re.search(r'"ansible-core>=([0-9.]+)', pyproject).group(1)
    assert runtime["requires_ansible"].startswith(f">={lower}")


@pytest.fixture(scope="module")
def tarball_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    subprocess.run([str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "build",
                    str(ROOT), "--output-path", str(out)],
                   check=True, capture_output=True, text=True, env=env, cwd=out, timeout=300)
    (tarball,) = out.glob("falco_deploy-falco-*.tar.gz")
    assert tarball.name == f"falco_deploy-falco-{__version__}.tar.gz"
    with tarfile.open(tarball) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def test_the_tarball_holds_the_content_and_the_validator(tarball_names):
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True,
                             text=True, check=True).stdout.split()
    for part in ("roles/", "playbooks/", "plugins/", "rules/", "meta/",
                 "wrapper/falco_deploy/rules_engine/"):
        wanted = {p for p in tracked if p.startswith(part) and "__pycache__" not in p}
        assert wanted, part
        assert wanted <= tarball_names, f"{part}: missing {sorted(wanted - tarball_names)[:5]}"


def test_the_tarball_leaves_out_the_tool_its_tests_and_the_test_bed(tarball_names):
    for name in tarball_names:
        top = name.split("/", 1)[0]
        assert top not in {"tests", "molecule", "scripts", "benchmarks", ".ci", ".collections",
                           ".venv", "pyproject.toml", ".pre-commit-hooks.yaml"}, name
        if name.startswith("wrapper/"):
            assert name.startswith("wrapper/falco_deploy/rules_engine/"), (
                f"{name}: only the validator of the Python package belongs in the collection; "
                "add the new module to build_ignore in galaxy.yml")
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
