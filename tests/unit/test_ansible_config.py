"""Runs use the operator's Ansible configuration; the project's settings are defaults only
(falco_deploy/ansible_config.py). The last test runs a real `falco-deploy status` whose inventory
has a vaulted group_vars file and whose vault password file is named only in the operator's own
ansible.cfg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from falco_deploy.ansible_config import operator_config, settings_env
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import find_project
from known_secrets import VAULT_PASSWORD, write_input

ROOT = Path(__file__).resolve().parents[2]
PROJECT = find_project(str(ROOT))


@pytest.fixture
def places(tmp_path):
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return cwd, home


def test_ansible_config_then_cwd_then_home(places, tmp_path):
    cwd, home = places
    environ = {"HOME": str(home)}
    (home / ".ansible.cfg").write_text("[defaults]\n")
    assert operator_config(cwd, environ) == (home / ".ansible.cfg").resolve()
    (cwd / "ansible.cfg").write_text("[defaults]\n")
    assert operator_config(cwd, environ) == (cwd / "ansible.cfg").resolve()
    chosen = tmp_path / "chosen.cfg"
    chosen.write_text("[defaults]\n")
    assert operator_config(cwd, {**environ, "ANSIBLE_CONFIG": str(chosen)}) == chosen.resolve()


def test_without_an_operator_configuration_the_projects_is_used(places, tmp_path):
    cwd, home = places
    if Path("/etc/ansible/ansible.cfg").is_file():
        pytest.skip("this machine has /etc/ansible/ansible.cfg, an operator configuration")
    env = settings_env(PROJECT, cwd, {"HOME": str(home)}, tmp_path / "state")
    assert env["ANSIBLE_CONFIG"] == str(PROJECT.ansible_cfg)
    assert "ANSIBLE_FORKS" not in env  # the file itself says it
    # The checkout is the collection, first on the path; the usual places follow.
    first, *rest = env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)
    link = Path(first) / "ansible_collections" / "falco_deploy" / "falco"
    assert link.resolve() == ROOT.resolve()
    assert rest == ["~/.ansible/collections", "/usr/share/ansible/collections"]


def test_the_operators_settings_win_and_ours_fill_the_gaps(places, tmp_path):
    cwd, home = places
    (cwd / "ansible.cfg").write_text(
        "[defaults]\nforks = 5\nremote_user = deploy\nvault_password_file = ~/.vault\n"
        "collections_path = ./mine\n"
        "[ssh_connection]\nssh_args = -o ProxyJump=bastion\n")
    environ = {"HOME": str(home), "ANSIBLE_TIMEOUT": "99"}
    env = settings_env(PROJECT, cwd, environ, tmp_path / "state")
    assert env["ANSIBLE_CONFIG"] == str((cwd / "ansible.cfg").resolve())
    # Theirs: forks, ssh_args (the bastion), the timeout from their environment.
    for var in ("ANSIBLE_FORKS", "ANSIBLE_SSH_ARGS", "ANSIBLE_TIMEOUT"):
        assert var not in env, var
    # Ours where they are silent: speed settings, the result format our parsers expect.
    assert env["ANSIBLE_PIPELINING"] == "true"
    assert env["ANSIBLE_GATHERING"] == "explicit"
    # Nothing about connections, privilege, vault or host keys is ever set by us.
    assert not any("HOST_KEY" in v or "VAULT" in v or "REMOTE_USER" in v or "BECOME" in v
                   for v in env)
    first, theirs = env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)
    assert theirs == str((cwd / "mine").resolve())  # relative to their file, as ansible does


def test_the_project_configuration_checks_host_keys():
    text = PROJECT.ansible_cfg.read_text()
    assert "host_key_checking" not in text  # ansible's default: on


VAULTED_VARS = "fd_vault_probe: vaulted value\n"


@pytest.mark.run_artifacts
def test_a_vaulted_inventory_works_with_the_password_file_of_the_operators_config(tmp_path):
    """Exit 8 (no Falco on this machine) proves the play ran on the host; without the
    operator's configuration, the same inventory cannot be decrypted."""
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  hosts:\n    fd-vault-local:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
        "      ansible_become: false\n"
        f"      falco_rules_state_dir: {tmp_path / 'state'}\n"
        f"      falco_rules_dir: {tmp_path / 'rules.d'}\n")
    password = write_input(tmp_path / "vault-pass", f"{VAULT_PASSWORD}\n")
    plain = inv / "group_vars" / "all.yml"
    plain.write_text(VAULTED_VARS)
    subprocess.run([str(Path(sys.executable).with_name("ansible-vault")), "encrypt",
                    "--vault-password-file", str(password), str(plain)],
                   check=True, capture_output=True, env=_clean_env(tmp_path))
    assert plain.read_text().startswith("$ANSIBLE_VAULT;")
    work = tmp_path / "work"
    work.mkdir()
    (work / "ansible.cfg").write_text(f"[defaults]\nvault_password_file = {password}\n")

    def status(cwd: Path, *more: str, answer: str = "") -> tuple[int, dict]:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("falco-deploy")), "status", "-i",
             str(inv / "hosts.yml"), "--project-dir", str(ROOT), "--output", "json",
             "--artifacts-dir", str(tmp_path / f"run-{cwd.name}{len(more)}"),
             "-e", "fd_vault_probe_used={{ fd_vault_probe }}", *more],
            capture_output=True, text=True, cwd=cwd, env=_clean_env(tmp_path), timeout=300,
            input=answer)
        return proc.returncode, json.loads(proc.stdout)

    rc, doc = status(work)
    assert rc == ExitCode.UNPROTECTED, doc
    (host,) = doc["hosts"]
    assert host["verdict"] == "no falco", host
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rc, doc = status(elsewhere)
    assert rc == ExitCode.FAILED, doc
    assert "vault" in json.dumps(doc).lower(), doc
    # --ask-vault-pass: asked before the run, typed into ansible-playbook's own prompt, and
    # written nowhere.
    rc, doc = status(elsewhere, "--ask-vault-pass", answer=f"{VAULT_PASSWORD}\n")
    assert rc == ExitCode.UNPROTECTED, doc
    artifacts = tmp_path / "run-elsewhere1"
    assert (artifacts / "job_events").is_dir()
    for path in [*artifacts.rglob("*"), *(tmp_path / "xdg").rglob("*")]:
        if path.is_file():
            assert VAULT_PASSWORD.encode() not in path.read_bytes(), path


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return {**env, "HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
