#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Probe the Docker engine, run purple-team scenarios in throwaway containers, clean up."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_verify_scenarios
short_description: Run falco-deploy verify scenarios in throwaway Docker containers
description:
  - C(action=probe) says whether the docker CLI exists, the daemon answers and the scenario image
    is present (it is never pulled), and removes exited scenario containers of earlier runs.
  - C(action=run) checks the C(catalogue) (the role's files/scenarios.yml, parsed), picks the
    scenarios C(names) (all when empty) and runs each with C(docker run --rm) in a container
    named C(purple-<run_id>-<scenario>) and labelled with the run id. The script gets two shell
    functions. C(purple_trigger) prints this host's clock (nanoseconds since the epoch) right
    before the attack, which is the trigger time (C(trigger_source=attack)); without it the time
    right before C(docker run) is (C(trigger_source=docker run)). C(purple_not_run REASON) ends
    the script and reports the scenario not run (the kernel refused a precondition). The daemon
    removes each container when its script ends, even if this module is killed; the module also
    removes it by name when the script ran past C(scenario_timeout).
  - C(action=cleanup) force-removes every container labelled with the run id and reports what is
    left (nothing, normally).
options:
  action:
    description: probe, run or cleanup.
    type: str
    required: true
    choices: [probe, run, cleanup]
  image:
    description: The scenario image (probe and run).
    type: str
  run_id:
    description: Run id; container names and labels carry it (run and cleanup).
    type: str
  catalogue:
    description: The scenario catalogue (version, scenarios, benign), as parsed from its YAML.
    type: dict
  names:
    description: Scenarios to run, in this order; empty runs the whole catalogue.
    type: list
    elements: str
    default: []
  scenario_timeout:
    description: Seconds a scenario container may run before it is removed by force.
    type: int
    default: 60
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Run the scenarios
  falco_verify_scenarios:
    action: run
    image: debian:bookworm
    run_id: 20261129T190808-3fa9c1
    catalogue: "{{ lookup('ansible.builtin.file', 'scenarios.yml') | from_yaml }}"
    names: [sensitive_file_read]
  register: runs
"""

RETURN = r"""
not_run_reason:
  description: Why nothing can run on this host (probe), or null.
  returned: when action is probe
  type: str
runs:
  description: One record per scenario (scenario, kind, techniques, expected_rules,
    container_name, container_id, trigger_ns, trigger_source, exit_code, output, duration_s,
    not_run_reason).
  returned: when action is run
  type: list
  elements: dict
our_rules:
  description: Every rule the catalogue expects (ours), for the false positive check.
  returned: when action is run
  type: list
  elements: str
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.falco_deploy.falco.plugins.module_utils.falco_verify_judge import (
    CatalogueError,
    check_catalogue,
    our_rules,
    select,
)

PREFIX = "purple"
RUN_LABEL = "falco-deploy.verify.run"
SCENARIO_LABEL = "falco-deploy.verify.scenario"
# docker run's own exit codes: the daemon refused (125), the command could not be invoked (126)
# or was not found (127). The scenario did not run; any other code is the script's own.
_DOCKER_FAILED = {125: "docker run failed", 126: "command not executable in the image",
                  127: "command not found in the image"}
_OUTPUT_CHARS = 2000
_RUN_ID_RE = re.compile(r"\d{8}T\d{6}-[0-9a-z]{1,16}")
# Defined for every scenario script (files/scenarios.yml says how scripts use them).
PRELUDE = """\
purple_trigger() { echo "purple-trigger $(date +%s%N)"; }
purple_not_run() { echo "purple-not-run: $*"; exit 0; }
"""
_TRIGGER = re.compile(r"^purple-trigger (\d{10,})$", re.M)
_NOT_RUN = re.compile(r"^purple-not-run: (.*)$", re.M)


def _docker(args, timeout=30):
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"docker {args[0]} timed out after {timeout}s"
    return proc.returncode, proc.stdout, proc.stderr


def _first_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def probe(image):
    """Why scenarios cannot run here (or None), plus what was found."""
    result = {"docker_cli": shutil.which("docker"), "docker_version": None, "image_id": None,
              "not_run_reason": None, "stale_removed": []}
    if result["docker_cli"] is None:
        result["not_run_reason"] = "no docker: the docker CLI is not installed"
        return result
    rc, out, err = _docker(["version", "--format", "{{.Server.Version}}"])
    if rc != 0 or not out.strip():
        result["not_run_reason"] = "no docker: the daemon does not answer (" + (
            _first_line(err) or f"rc {rc}") + ")"
        return result
    result["docker_version"] = out.strip()
    rc, out, err = _docker(["image", "inspect", "--format", "{{.Id}}", image])
    if rc != 0:
        result["not_run_reason"] = f"image missing: {image} is not on the host (it is never pulled)"
        return result
    result["image_id"] = out.strip()
    # Containers of an interrupted earlier run that ended but were not removed. A running one
    # may belong to a concurrent run and is left alone.
    rc, out, _ = _docker(["ps", "-a", "--filter", f"label={RUN_LABEL}", "--filter",
                          "status=exited", "--filter", "status=created",
                          "--format", "{{.Names}}"])
    stale = out.split() if rc == 0 else []
    if stale:
        _docker(["rm", "-f", *stale])
    result["stale_removed"] = stale
    return result


def scenario_command(run_id, image, scenario, cidfile):
    name = f"{PREFIX}-{run_id}-{scenario['name']}"
    return name, [
        "docker", "run", "--rm", "--cidfile", cidfile, "--name", name,
        "--label", f"{RUN_LABEL}={run_id}", "--label", f"{SCENARIO_LABEL}={scenario['name']}",
        "--entrypoint", "/bin/sh", *scenario.get("docker_args", []),
        image, "-c", PRELUDE + scenario["script"],
    ]


def run_one(run_id, image, scenario, timeout, workdir, clock_ns=time.time_ns):
    cidfile = os.path.join(workdir, scenario["name"] + ".cid")
    name, command = scenario_command(run_id, image, scenario, cidfile)
    record = {"scenario": scenario["name"], "kind": scenario.get("kind", "attack"),
              "techniques": scenario.get("techniques", []),
              "expected_rules": scenario.get("expected_rules", []),
              "container_name": name, "container_id": None, "trigger_ns": None,
              "trigger_source": None, "exit_code": None, "output": "", "duration_s": None,
              "not_run_reason": None}
    trigger = clock_ns()
    started = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
        rc, output = proc.returncode, (proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as exc:
        rc = None
        output = _text(exc.stdout) + _text(exc.stderr) + f"\n(timed out after {timeout}s)"
    finally:
        # --rm has the daemon remove the container once it exits; a container still running
        # (timeout) or one the daemon could not remove goes now.
        _docker(["rm", "-f", name])
    record["duration_s"] = round(time.monotonic() - started, 3)
    record["exit_code"] = rc
    record["output"] = output[-_OUTPUT_CHARS:]
    try:
        with open(cidfile, encoding="ascii") as handle:
            record["container_id"] = handle.read().strip() or None
    except OSError:
        pass
    marked = _TRIGGER.search(output)
    refused = _NOT_RUN.search(output)
    if rc in _DOCKER_FAILED or (rc is not None and record["container_id"] is None):
        record["not_run_reason"] = (
            f"{_DOCKER_FAILED.get(rc, 'container not created')}: "
            + (_first_line(output) or f"rc {rc}"))
    elif refused:
        record["not_run_reason"] = refused.group(1).strip() or "the host refused the attack"
    elif marked:
        record["trigger_ns"], record["trigger_source"] = int(marked.group(1)), "attack"
    else:
        record["trigger_ns"], record["trigger_source"] = trigger, "docker run"
    return record


def _text(value):
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def run_all(run_id, image, scenarios, timeout):
    with tempfile.TemporaryDirectory(prefix="falco-verify-") as workdir:
        return [run_one(run_id, image, scenario, timeout, workdir) for scenario in scenarios]


def cleanup(run_id):
    rc, out, err = _docker(["ps", "-aq", "--filter", f"label={RUN_LABEL}={run_id}"])
    ids = out.split() if rc == 0 else []
    if ids:
        _docker(["rm", "-f", *ids])
    rc, out, _ = _docker(["ps", "-a", "--filter", f"label={RUN_LABEL}={run_id}",
                          "--format", "{{.Names}}"])
    return {"removed": ids, "remaining": out.split() if rc == 0 else [],
            "changed": bool(ids)}


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["probe", "run", "cleanup"]},
            "image": {"type": "str"},
            "run_id": {"type": "str"},
            "catalogue": {"type": "dict"},
            "names": {"type": "list", "elements": "str", "default": []},
            "scenario_timeout": {"type": "int", "default": 60},
        },
        required_if=[("action", "probe", ["image"]),
                     ("action", "run", ["image", "run_id", "catalogue"]),
                     ("action", "cleanup", ["run_id"])],
        supports_check_mode=False,
    )
    params = module.params
    if params["action"] == "probe":
        module.exit_json(changed=False, **probe(params["image"]))
    run_id = params["run_id"]
    if not _RUN_ID_RE.fullmatch(run_id):
        module.fail_json(msg=f"invalid run id {run_id!r} (expected YYYYMMDDTHHMMSS-suffix)")
    if params["action"] == "cleanup":
        result = cleanup(run_id)
        if result["remaining"]:
            module.fail_json(msg="scenario containers left behind: "
                             + ", ".join(result["remaining"]), **result)
        module.exit_json(**result)
    try:
        catalogue = check_catalogue(params["catalogue"], "falco_verify_catalogue")
        scenarios = select(catalogue, params["names"])
    except CatalogueError as exc:
        module.fail_json(msg=str(exc))
    runs = run_all(run_id, params["image"], scenarios, params["scenario_timeout"])
    # The containers are gone again; nothing on the host changed for good.
    module.exit_json(changed=False, runs=runs, our_rules=our_rules(catalogue))


if __name__ == "__main__":
    main()
