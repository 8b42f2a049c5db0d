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


ATTACKS = {
    # technique (our rule) -> its variants, each by a different kernel route
    "Container Escape via cgroup release_agent Write": [
        "release_agent", "release_agent_notify_only", "release_agent_relative_openat",
        "release_agent_openat2"],
    "Namespace Change via setns to Host": ["nsenter", "setns_nsfd_python", "setns_pidfd"],
    "Mount in Privileged Container": [
        "privileged_mount", "mount_syscall_python", "mount_new_api", "mount_open_tree_bind"],
    "Docker Socket Accessed From Container": [
        "docker_sock", "docker_sock_renamed_mount", "docker_sock_proc_root",
        "docker_sock_relative_connect"],
    "Reverse Shell Redirect in Container": [
        "reverse_shell", "reverse_shell_python_dup2", "reverse_shell_dup3",
        "reverse_shell_fcntl_dupfd"],
    "Read Sensitive Host File From Container": [
        "sensitive_file_read", "shadow_read_proc_root", "shadow_read_relative"],
    "Read Credential File From Container": [
        "ssh_private_key_read", "cloud_credentials_read", "kube_config_read_relative"],
}
BENIGN = ["container_lifecycle", "package_manager_version", "read_etc_hosts", "shell_loop",
          "package_tools", "loopback_http", "privileged_idle", "systemd_boot_privileged"]
# Syscalls without a tool are made by their x86_64 numbers (python3 ctypes).
_SYSCALL_NUMBERS = re.compile(r"\b(SYS_[A-Z0-9_]+)\s*(?:,\s*SYS_[A-Z0-9_]+\s*)*=")


def test_the_catalogue_has_every_technique_in_at_least_three_variants():
    attacks = [s["name"] for s in CATALOGUE if s["kind"] == "attack"]
    assert attacks == [name for names in ATTACKS.values() for name in names]
    # The six original attacks and four benign ones keep their names.
    assert {"release_agent", "nsenter", "privileged_mount", "docker_sock", "reverse_shell",
            "sensitive_file_read"} <= set(attacks)
    assert [s["name"] for s in CATALOGUE if s["kind"] == "benign"] == BENIGN
    for rule, names in ATTACKS.items():
        assert len(names) >= 3, rule
        for name in names:
            assert BY_NAME[name]["expected_rules"] == [rule], name
            # Variants of one technique share its parent technique id.
            assert set(BY_NAME[name]["techniques"]) & set(BY_NAME[names[0]]["techniques"]), name


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
    for name in ATTACKS["Container Escape via cgroup release_agent Write"]:
        assert args[name] == ["--privileged"], name
    for name in ATTACKS["Namespace Change via setns to Host"]:
        assert set(args[name]) == {"--privileged", "--pid=host"}, name
    for name in ATTACKS["Mount in Privileged Container"]:
        assert args[name] == ["--privileged"], name
    assert args["docker_sock"] == ["-v", "/var/run/docker.sock:/var/run/docker.sock"]
    assert args["docker_sock_renamed_mount"] == ["-v", "/var/run/docker.sock:/tmp/engine.sock"]
    # The host's socket through its PID 1's root: no bind mount, but the host PID namespace.
    assert set(args["docker_sock_proc_root"]) == {"--privileged", "--pid=host"}
    assert args["docker_sock_relative_connect"] == [
        "-v", "/var/run/docker.sock:/var/run/docker.sock"]
    for name in ATTACKS["Reverse Shell Redirect in Container"]:
        assert args[name] == ["--network=host"], name
    for rule in ("Read Sensitive Host File From Container", "Read Credential File From Container"):
        for name in ATTACKS[rule]:
            assert args[name] == [], name
    # Benign activity runs unprivileged, except the two that show a privileged container at
    # rest and a system container booting.
    assert args["privileged_idle"] == ["--privileged"]
    assert args["systemd_boot_privileged"] == [
        "--privileged", "--env=container=docker", "--tmpfs=/run", "--tmpfs=/tmp"]
    for name in BENIGN:
        if name not in ("privileged_idle", "systemd_boot_privileged"):
            assert args[name] == [], name


def test_docker_args_keep_repeated_words_in_order():
    # a command line, not a set: `--tmpfs /run --tmpfs /tmp` must reach docker run as written
    doc = {"version": 1, "scenarios": {}, "benign": {"b": {
        "description": "d", "script": "true",
        "docker_args": ["--tmpfs", "/run", "--tmpfs", "/tmp", "-v", "/a:/a", "-v", "/b:/b"]}}}
    (scenario,) = JUDGE.check_catalogue(doc)
    assert scenario["docker_args"] == ["--tmpfs", "/run", "--tmpfs", "/tmp", "-v", "/a:/a",
                                       "-v", "/b:/b"]


def test_no_script_enters_the_host_init_or_its_namespaces():
    for scenario in CATALOGUE:
        script = scenario["script"]
        assert "nsenter -t 1" not in script and "/proc/1/ns" not in script, scenario["name"]
    for name in ATTACKS["Namespace Change via setns to Host"]:
        script = BY_NAME[name]["script"]
        assert "/proc/1/" not in script, name
        # The target is a process the script started itself, in new namespaces.
        assert "unshare --uts --ipc" in script and "target=$!" in script, name
        assert script.index("target=$!") < script.index("purple_trigger"), name
        assert 'kill "$target"' in script, name
    assert 'nsenter -t "$target"' in BY_NAME["nsenter"]["script"]
    # The one use of the host's PID 1: the Docker socket under its root, read-only /_ping.
    uses = [s["name"] for s in CATALOGUE if "/proc/1/" in s["script"]]
    assert uses == ["docker_sock_proc_root"]
    assert BY_NAME["docker_sock_proc_root"]["script"].count("/proc/1/root/run/docker.sock") == 3


@pytest.mark.parametrize("name", ATTACKS["Docker Socket Accessed From Container"])
def test_the_docker_socket_is_only_pinged(name):
    script = BY_NAME[name]["script"]
    requests = re.findall(r'b"([A-Z]+ [^ ]+) HTTP/1\.0', script)
    assert requests == ["GET /_ping"], requests
    assert '!= ["200"]' in script  # the ping must have been answered


@pytest.mark.parametrize("name", ATTACKS["Container Escape via cgroup release_agent Write"])
def test_release_agent_variants_use_only_a_private_named_hierarchy_and_reset_it(name):
    script = BY_NAME[name]["script"]
    mounts = [ln.strip() for ln in script.splitlines() if "mount -t" in ln]
    assert len(mounts) == 1 and '-o "none,name=$name"' in mounts[0]
    assert 'name="purple_$(hostname)_$$"' in script
    assert "/sys/fs/cgroup" not in script  # never a hierarchy of the host
    assert script.index('umount "$dir"') > script.index("purple_trigger")
    assert "purple_not_run" in script
    if name == "release_agent_notify_only":
        # Only notify_on_release is written; release_agent is read, never opened for writing.
        assert not re.search(r'>\s*"\$dir/release_agent"', script)
        assert '(echo 1 > "$dir/purple/notify_on_release")' in script
        assert '(echo 0 > "$dir/purple/notify_on_release")' in script
    elif name != "release_agent":
        # python3 writes /bin/true, then clears it in a finally, whatever happened between.
        assert 'write_agent(b"/bin/true\\n")' in script
        assert 'finally:\n    write_agent(b"\\n")' in script


def test_release_agent_uses_only_a_private_named_hierarchy_and_resets_it():
    script = BY_NAME["release_agent"]["script"]
    writes = [ln.strip() for ln in script.splitlines() if re.search(r">\s*\"\$dir/", ln)]
    assert writes == [
        '(echo 1 > "$dir/purple/notify_on_release") || status=1',
        '(echo /bin/true > "$dir/release_agent") || status=1',
        '(echo 0 > "$dir/purple/notify_on_release") || true',
        '(echo > "$dir/release_agent") || true',
    ]
    # The reset and the umount come after both writes, before the end.
    assert script.index('umount "$dir"') > script.index('(echo > "$dir/release_agent")')


@pytest.mark.parametrize("scenario", [s for s in CATALOGUE if _SYSCALL_NUMBERS.search(s["script"])],
                         ids=lambda s: s["name"])
def test_syscall_numbers_are_used_only_on_x86_64(scenario):
    assert '[ "$(uname -m)" = x86_64 ] || purple_not_run' in scenario["script"]
    assert scenario["script"].index("uname -m") < scenario["script"].index("purple_trigger")


def test_the_mount_variants_mount_only_a_tmpfs_or_the_containers_own_etc_and_unmount():
    for name in ATTACKS["Mount in Privileged Container"]:
        script = BY_NAME[name]["script"]
        assert "/mnt/purple" in script and ("umount /mnt/purple" in script
                                            or "umount2(target" in script), name
    assert 'b"/etc", OPEN_TREE_CLONE)' in BY_NAME["mount_open_tree_bind"]["script"]


@pytest.mark.parametrize("name", ATTACKS["Read Credential File From Container"])
def test_credential_files_are_dummies_the_container_wrote_itself(name):
    script = BY_NAME[name]["script"]
    before, after = script.replace("\\\n", "").split("purple_trigger")
    written = set(re.findall(r"> (/root/\S+)", before))
    assert written and all("PURPLE-TEAM-DUMMY" in ln or "PURPLE-TEAM DUMMY" in ln
                           for ln in before.splitlines() if "> /root/" in ln)
    assert "PRIVATE KEY" not in script and "> /root" not in after  # only read after the mark


# Benign scripts that are harmless on any machine. package_tools adds an account,
# privileged_idle expects a privileged container and systemd_boot_privileged becomes PID 1:
# those run only in their container (molecule/verify).
RUNS_HERE = ["container_lifecycle", "package_manager_version", "read_etc_hosts", "shell_loop",
             "loopback_http"]


@pytest.mark.parametrize("name", RUNS_HERE)
def test_benign_scripts_run_here_unchanged(name):
    """Benign scripts are harmless anywhere: run them on this machine as a container would."""
    proc = subprocess.run(["/bin/sh", "-c", PRELUDE + BY_NAME[name]["script"]],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    if name == "shell_loop":
        assert proc.stdout.strip() == "10"
    if name == "loopback_http":
        assert re.search(r"^GET http://127\.0\.0\.1:\d+/ -> 200 ", proc.stdout, re.M)


def test_systemd_is_only_started_as_the_containers_init():
    """Run here (not PID 1) the script refuses before it writes anything."""
    script = BY_NAME["systemd_boot_privileged"]["script"]
    assert script.index('[ "$$" = 1 ]') < script.index("ln -sf /dev/null")
    assert script.rstrip().splitlines()[-1].startswith("exec /lib/systemd/systemd ")
    for unit in ("systemd-sysctl.service", "systemd-modules-load.service",
                 "systemd-udev-trigger.service", "systemd-binfmt.service"):
        assert unit in script
    assert "exec systemctl exit 0" in script and "poweroff" not in script.split("SH\n")[1]
