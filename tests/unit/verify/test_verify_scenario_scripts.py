"""The scenario scripts of the packaged catalogue: present, valid shell, safe by construction."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess

import pytest
import yaml

from falco_deploy.errors import FalcoDeployError
from falco_deploy.verify.scenarios import load_catalogue, parse_catalogue

CATALOGUE = load_catalogue()
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


@pytest.mark.parametrize("scenario", CATALOGUE.scenarios, ids=lambda s: s.name)
def test_every_scenario_has_a_script_that_parses(scenario):
    assert scenario.script.strip()
    proc = subprocess.run(["/bin/sh", "-n", "-c", scenario.script], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("scenario", CATALOGUE.scenarios, ids=lambda s: s.name)
def test_scripts_send_traffic_only_to_loopback(scenario):
    for address in _IPV4.findall(scenario.script):
        assert ipaddress.ip_address(address).is_loopback, f"{scenario.name}: {address}"
    assert "--network=host" not in scenario.docker_args or "127.0.0.1" in scenario.script


def test_privileges_are_given_only_where_the_technique_needs_them():
    args = {scenario.name: scenario.docker_args for scenario in CATALOGUE.scenarios}
    assert "--privileged" in args["release_agent"]
    assert {"--privileged", "--pid=host"} <= set(args["nsenter"])
    assert "--privileged" in args["privileged_mount"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in args["docker_sock"]
    assert args["reverse_shell"] == ("--network=host",)
    for scenario in CATALOGUE.benign:
        assert scenario.docker_args == (), scenario.name
    assert args["sensitive_file_read"] == ()


def test_nsenter_never_targets_the_host_init():
    script = CATALOGUE.get("nsenter").script
    assert "nsenter -t 1 " not in script and "/proc/1/" not in script
    assert 'nsenter -t "$target"' in script


def test_release_agent_writes_a_value_only_on_its_own_hierarchy():
    script = CATALOGUE.get("release_agent").script
    writes = [line.strip() for line in script.splitlines()
              if "/release_agent" in line and ">" in line]
    assert writes == ["(echo /bin/true > /tmp/purple-cg/release_agent)",
                      "(: >> /tmp/purple-cg/release_agent)"]
    assert "none,name=purple_verify" in script  # the own hierarchy is tried first


@pytest.mark.parametrize("name", [s.name for s in CATALOGUE.benign])
def test_benign_scripts_run_here_unchanged(name):
    """Benign scripts are harmless anywhere: run them on this machine as a container would."""
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    proc = subprocess.run(["/bin/sh", "-c", CATALOGUE.get(name).script], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    if name == "shell_loop":
        assert proc.stdout.strip() == "10"


@pytest.mark.parametrize(("body", "message"), [
    ({"expected_rules": ["R"], "script": ["not", "a", "string"]}, "script must be a string"),
    ({"expected_rules": ["R"], "docker_args": "--privileged"}, "docker_args must be a list"),
    ({"expected_rules": ["R"], "docker_args": [""]}, "docker_args must be a list"),
])
def test_bad_script_fields_are_usage_errors(body, message):
    with pytest.raises(FalcoDeployError, match=message):
        parse_catalogue(yaml.safe_load(yaml.safe_dump(
            {"version": 1, "scenarios": {"x": body}})), "site.yaml")


def test_run_spec_is_what_the_role_takes():
    spec = CATALOGUE.get("docker_sock").to_run_spec()
    assert spec == {"name": "docker_sock", "script": CATALOGUE.get("docker_sock").script,
                    "docker_args": ["-v", "/var/run/docker.sock:/var/run/docker.sock"],
                    "expected_rules": ["Docker Socket Accessed From Container"]}
