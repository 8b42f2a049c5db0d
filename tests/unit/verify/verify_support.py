"""The falco_verify role's judge, and the recorded real run as the role would have recorded it.

A module of its own (not conftest) so test files import it by a name no other folder uses.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("FALCO_DEPLOY_SHARED") or REPO_ROOT.parent / "shared")
MODULE_UTILS = REPO_ROOT / "plugins" / "module_utils"
RECORDED_RUN = SHARED / "corpus" / "falco-real-0.40" / "verify-run"


def role_util(name: str):
    """plugins/module_utils/<name>.py, loaded by path (standard library only)."""
    spec = importlib.util.spec_from_file_location(name, MODULE_UTILS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JUDGE = role_util("falco_verify_judge")

# The recorded run (verify-run/README.md): its id and each scenario container's short id.
RUN_ID = "20261201T224322-ff4723"
CONTAINER_IDS = {
    "release_agent": "91d5a754016e", "nsenter": "c170c9b894db",
    "privileged_mount": "28cbf42ece2d", "docker_sock": "3d6ab8c6fc9f",
    "reverse_shell": "3644c2d2b0d9", "sensitive_file_read": "59ff094e9a1b",
    "container_lifecycle": "0719ef507e98", "package_manager_version": "f03ff1f86850",
    "read_etc_hosts": "a619953b2252", "shell_loop": "9e723ead0a08",
}
# The test host itself: Falco inside a container sees its own host's processes as a container.
TEST_HOST_ID = "a86396f3d3c5"


def recorded_runs(catalogue: list[dict]) -> list[dict]:
    """The run records of the recorded run (the scenarios it ran, in catalogue order). It kept
    no trigger times, so none is given: the judge then reports detections without latency."""
    return [{"scenario": s["name"], "kind": s["kind"], "techniques": s["techniques"],
             "expected_rules": s["expected_rules"],
             "container_name": f"purple-{RUN_ID}-{s['name']}",
             "container_id": CONTAINER_IDS[s["name"]], "trigger_ns": None,
             "trigger_source": None, "not_run_reason": None, "exit_code": 0, "output": "",
             "duration_s": 1.0} for s in catalogue if s["name"] in CONTAINER_IDS]
