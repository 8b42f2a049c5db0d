"""Integration tests need a Docker engine that runs privileged systemd containers, the local
test-host image and the stand-in Falco repository: `scripts/setup` provides all three.

They are not skipped when those are missing (a silently skipped integration suite would read as
green); set FALCO_DEPLOY_SKIP_INTEGRATION=1 to leave them out on purpose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTBED = Path(os.environ.get("FALCO_DEPLOY_TESTBED", "/var/lib/falco-deploy-testbed"))
TESTHOST_IMAGE = os.environ.get("FALCO_DEPLOY_TESTHOST_IMAGE", "falco-deploy-testhost:bookworm")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FALCO_DEPLOY_SKIP_INTEGRATION") == "1":
        skip = pytest.mark.skip(reason="FALCO_DEPLOY_SKIP_INTEGRATION=1")
        for item in items:
            if "integration" in item.nodeid:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def testbed() -> Path:
    """The stand-in repository and image exist; fail (not skip) with a hint otherwise."""
    assert shutil.which("docker"), "docker CLI missing: run scripts/setup"
    subprocess.run(["docker", "info"], check=True, capture_output=True)
    repo = TESTBED / "standin"
    assert (repo / "fingerprint").is_file(), f"{repo} has no stand-in repository: run scripts/setup"
    subprocess.run(["docker", "image", "inspect", TESTHOST_IMAGE], check=True, capture_output=True)
    return TESTBED


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


@contextlib.contextmanager
def booted_hosts(testbed: Path, prefix: str, roles: list[str]) -> Iterator[list[str]]:
    """Fresh booted systemd test hosts named `<prefix>-<random>-<role>`, with the stand-in
    repository mounted; removed afterwards whatever happened."""
    suffix = uuid.uuid4().hex[:6]
    names = [f"{prefix}-{suffix}-{role}" for role in roles]
    try:
        for name in names:
            docker("run", "-d", "--name", name, "--hostname", name, "--privileged",
                   "--cgroupns=private", "--tmpfs", "/run", "--tmpfs", "/tmp",
                   "-v", f"{testbed}/standin/repo:/mnt/falco-repo:ro", TESTHOST_IMAGE,
                   "/lib/systemd/systemd")
        for name in names:  # wait for systemd to finish booting
            docker("exec", name, "timeout", "60", "systemctl", "is-system-running", "--wait",
                   check=False)
        yield names
    finally:
        docker("rm", "-f", *names, check=False)


def make_inventory(folder: Path, hosts: dict[str, dict]) -> Path:
    """An inventory of docker-connection hosts (per-host variables given) in `folder`, with the
    test bed's group_vars (stand-in repository, pinned throwaway key) beside it."""
    import yaml

    inv = {"all": {"children": {"falco_hosts": {"hosts": {
        name: {"ansible_connection": "community.docker.docker", **variables}
        for name, variables in hosts.items()}}}}}
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    group_vars = folder / "group_vars"
    if not group_vars.exists():
        group_vars.symlink_to(REPO_ROOT / "inventories" / "testbed" / "group_vars")
    return path
