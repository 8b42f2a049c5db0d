"""The packaged scenario catalogue (roles/falco_verify/files/scenarios.yml): its scripts are
valid, safe by construction, mark their attack, and what they expect exists in our rules."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from verify_support import JUDGE

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = JUDGE.check_catalogue(
    yaml.safe_load((ROOT / "roles" / "falco_verify" / "files" / "scenarios.yml").read_text()))
BY_NAME = {s["name"]: s for s in CATALOGUE}
PRELUDE = re.search(r'PRELUDE = """\\\n(.*?)"""', (
    ROOT / "plugins" / "modules" / "falco_verify_scenarios.py").read_text(),
    re.S).group(1)
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
OUR_RULES = {item["rule"]: item for item in yaml.safe_load(
    (ROOT / "rules" / "falco-deploy_rules.yaml").read_text()) if "rule" in item}


def test_the_catalogue_has_six_attacks_and_a_benign_set():
    assert [s["name"] for s in CATALOGUE if s["kind"] == "attack"] == [
        "release_agent", "nsenter", "privileged_mount", "docker_sock", "reverse_shell",
        "sensitive_file_read"]
    assert len([s for s in CATALOGUE if s["kind"] == "benign"]) == 4


@pytest.mark.parametrize("scenario", [s for s in CATALOGUE if s["kind"] == "attack"],
                         ids=lambda s: s["name"])
def test_expected_rules_are_ours_and_carry_the_scenarios_technique(scenario):
    for rule in scenario["expected_rules"]:
        assert rule in OUR_RULES, f"{rule} is not in rules/falco-deploy_rules.yaml"
        tags = OUR_RULES[rule]["tags"]
        assert any(JUDGE.same_technique(tag, t) for tag in tags
                   for t in scenario["techniques"]), (rule, tags)


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s["name"])
def test_every_script_parses_with_the_prelude(scenario):
    proc = subprocess.run(["/bin/sh", "-n", "-c", PRELUDE + scenario["script"]],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("scenario", [s for s in CATALOGUE if s["kind"] == "attack"],
                         ids=lambda s: s["name"])
def test_every_attack_marks_the_moment_of_its_attack(scenario):
    assert scenario["script"].count("purple_trigger") == 1


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s["name"])
def test_scripts_send_traffic_only_to_loopback(scenario):
    for address in _IPV4.findall(scenario["script"]):
        assert ipaddress.ip_address(address).is_loopback, f"{scenario['name']}: {address}"


def test_privileges_are_given_only_where_the_technique_needs_them():
    args = {s["name"]: s["docker_args"] for s in CATALOGUE}
    assert args["release_agent"] == ["--privileged"]
    assert set(args["nsenter"]) == {"--privileged", "--pid=host"}
    assert args["privileged_mount"] == ["--privileged"]
    assert args["docker_sock"] == ["-v", "/var/run/docker.sock:/var/run/docker.sock"]
    assert args["reverse_shell"] == ["--network=host"]
    assert args["sensitive_file_read"] == []
    for scenario in CATALOGUE:
        if scenario["kind"] == "benign":
            assert scenario["docker_args"] == [], scenario["name"]


def test_nsenter_never_targets_the_host_init():
    script = BY_NAME["nsenter"]["script"]
    assert "nsenter -t 1 " not in script and "/proc/1/" not in script
    assert 'nsenter -t "$target"' in script


def test_release_agent_uses_only_a_private_named_hierarchy_and_resets_it():
    script = BY_NAME["release_agent"]["script"]
    mounts = [ln.strip() for ln in script.splitlines() if "mount -t" in ln]
    assert len(mounts) == 1 and '-o "none,name=$name"' in mounts[0]
    assert "/sys/fs/cgroup" not in script  # never a hierarchy of the host
    writes = [ln.strip() for ln in script.splitlines() if re.search(r">\s*\"\$dir/", ln)]
    assert writes == [
        '(echo 1 > "$dir/purple/notify_on_release") || status=1',
        '(echo /bin/true > "$dir/release_agent") || status=1',
        '(echo 0 > "$dir/purple/notify_on_release") || true',
        '(echo > "$dir/release_agent") || true',
    ]
    # The reset and the umount come after both writes, before the end.
    assert script.index('umount "$dir"') > script.index('(echo > "$dir/release_agent")')
    assert "purple_not_run" in script


def test_a_refused_hierarchy_is_not_run_and_nothing_is_left(tmp_path):
    """Run the release_agent script where mount(2) is refused: a fake `mount` that fails as a
    private cgroup namespace does. It must report not run, not pretend, and clean its folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mount").write_text("#!/bin/sh\necho 'mount: /tmp/x: permission denied.' >&2\n"
                                   "exit 32\n")
    (bin_dir / "mount").chmod(0o755)
    script = BY_NAME["release_agent"]["script"].replace("/tmp/purple-cg", str(tmp_path / "cg"))
    proc = subprocess.run(["/bin/sh", "-c", PRELUDE + script], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=False, timeout=30)
    assert proc.returncode == 0
    assert re.search(r"^purple-trigger \d{19}$", proc.stdout, re.M)
    assert "purple-not-run: the kernel refused a private cgroup v1 hierarchy (permission " \
           "denied.): a private cgroup namespace or a cgroup v2-only host" in proc.stdout
    assert not list(tmp_path.glob("cg*"))


@pytest.mark.parametrize("name", [s["name"] for s in CATALOGUE if s["kind"] == "benign"])
def test_benign_scripts_run_here_unchanged(name):
    """Benign scripts are harmless anywhere: run them on this machine as a container would."""
    proc = subprocess.run(["/bin/sh", "-c", PRELUDE + BY_NAME[name]["script"]],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    if name == "shell_loop":
        assert proc.stdout.strip() == "10"
