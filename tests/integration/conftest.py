"""Integration tests need a Docker engine that runs privileged systemd containers, the local
test-host image and the stand-in Falco repository: `scripts/setup` provides all three.

They are not skipped when those are missing (a silently skipped integration suite would read as
green); set FALCO_DEPLOY_SKIP_INTEGRATION=1 to leave them out on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
