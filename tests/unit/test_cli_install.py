"""`falco-deploy install` in-process with click's CliRunner; the Ansible run is replaced by a
replay of a recorded ansible-runner event stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_project import fake_project, hosts_inventory
from click.testing import CliRunner
from install_events import ok, recorded, report

from falco_deploy import runner as runner_mod
from falco_deploy.cli import cli
from falco_deploy.exitcodes import ExitCode
from known_secrets import BECOME_PASSWORD, VAULT_ID_PASSWORD, VAULT_PASSWORD


@pytest.fixture
def project(tmp_path):
    return fake_project(tmp_path, "install")


@pytest.fixture
def inventory(tmp_path):
    return hosts_inventory(tmp_path, "h1")


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("FALCO_DEPLOY_PROJECT_DIR", raising=False)
    return tmp_path / "state"


class FakeRunner:
    """Stands in for runner.run_playbook: records the request, replays events."""

    def __init__(self, events, rc=0, status="successful", stdout="", signum=None):
        self.events = events
        self.rc = rc
        self.status = status
        self.stdout = stdout
        self.signum = signum
        self.calls: list[runner_mod.PlaybookRun] = []

    def __call__(self, run, on_event=None):
        self.calls.append(run)
        run.artifacts_dir.mkdir(parents=True, exist_ok=True)
        (run.artifacts_dir / "stdout").write_text(self.stdout)
        for event in self.events:
            on_event(event)
        return runner_mod.RunnerOutcome(self.status, self.rc, run.artifacts_dir, self.signum)


def invoke(monkeypatch, fake, *args):
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    return CliRunner().invoke(cli, ["install", *args], catch_exceptions=False)


def test_partial_run_text_output(monkeypatch, project, inventory, state):
    fake = FakeRunner(recorded(), rc=4, status="failed")
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project))
    assert result.exit_code == ExitCode.PARTIAL
    assert "skipped: BTF: /sys/kernel/btf/vmlinux missing" in result.output
    assert "Exit status: partial (3)" in result.output
    artifacts = fake.calls[0].artifacts_dir
    assert artifacts.parent == state / "falco-deploy" / "runs"
    assert artifacts.name.endswith("-install")
    assert f"Artifacts: {artifacts}" in result.output
    # Progress lines come first, then the table.
    assert result.output.index("h2 | failed | Hard fail | boom") < result.output.index("Artifacts")


def test_options_reach_the_runner(monkeypatch, project, inventory, state, tmp_path):
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("falco_version: 0.40.0\n")
    monkeypatch.chdir(tmp_path)
    fake = FakeRunner([ok("h1", "Add repo", changed=True), report("h1")])
    result = invoke(monkeypatch, fake, "--inventory", str(inventory), "-i", str(inventory),
                    "--limit", "web*", "--check", "--diff", "-e", "a=1", "--extra-vars",
                    "@vars.yml", "-vv", "--project-dir", str(project),
                    "--artifacts-dir", str(tmp_path / "arts"))
    assert result.exit_code == ExitCode.OK, result.output
    run = fake.calls[0]
    assert run.inventories == [inventory.resolve(), inventory.resolve()]
    assert run.limit == "web*"
    assert (run.check, run.diff, run.verbosity) == (True, True, 2)
    # @file made absolute: ansible-playbook runs in the project directory, not here.
    assert run.extra_vars == ["a=1", f"@{vars_file.resolve()}"]
    assert run.playbook == (project / "playbooks" / "install.yml").resolve()
    assert run.project.root == project.resolve()
    assert run.artifacts_dir == tmp_path / "arts"
    assert "would change" in result.output


def test_ansible_playbooks_own_options_reach_the_runner(monkeypatch, project, inventory, state,
                                                       tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("id_fleet", "dev.pass", "other.pass"):
        (tmp_path / name).write_text("x\n")
    fake = FakeRunner([report("h1")])
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    result = CliRunner().invoke(cli, [
        "install", "-i", str(inventory), "--project-dir", str(project), "-u", "deploy",
        "--private-key", "id_fleet", "-K", "-J", "--vault-id", "prod@prompt",
        "--vault-id", "dev@dev.pass", "--vault-password-file", "other.pass", "-f", "5",
        "-t", "falco_package,falco_driver", "--tags", "falco_service", "--skip-tags",
        "falco_rules", "--output", "json"],
        input=f"{BECOME_PASSWORD}\n{VAULT_PASSWORD}\n{VAULT_ID_PASSWORD}\n",
        catch_exceptions=False)
    assert result.exit_code == ExitCode.OK, result.output
    run = fake.calls[0]
    assert run.remote_user == "deploy" and run.forks == 5
    # Files named relative to where the operator stands, made absolute for the project's cwd.
    assert run.private_key == tmp_path / "id_fleet"
    assert run.vault_ids == ["prod@prompt", f"dev@{tmp_path / 'dev.pass'}"]
    assert run.vault_password_files == [tmp_path / "other.pass"]
    assert run.tags == ["falco_package", "falco_driver", "falco_service"]
    assert run.skip_tags == ["falco_rules"]
    assert run.ask_become_pass and run.ask_vault_pass
    # Asked before the run, answered to ansible-playbook's own prompts.
    assert run.passwords == {r"^[A-Z]+ password:\s*$": BECOME_PASSWORD,
                             r"^Vault password:\s*$": VAULT_PASSWORD,
                             r"^Vault password \(prod\):\s*$": VAULT_ID_PASSWORD}
    envelope = json.dumps(json.loads(result.stdout))
    assert not any(p in envelope for p in (BECOME_PASSWORD, VAULT_PASSWORD, VAULT_ID_PASSWORD))


@pytest.mark.parametrize("option", [["--private-key", "nope"], ["--vault-id", "x@nope"],
                                    ["--vault-password-file", "nope"], ["-f", "0"]])
def test_bad_ansible_options_are_usage_errors(monkeypatch, project, inventory, state, option,
                                              tmp_path):
    monkeypatch.chdir(tmp_path)
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    *option)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert fake.calls == []


def test_json_output_is_only_the_envelope(monkeypatch, project, inventory, state):
    fake = FakeRunner(recorded(), rc=4, status="failed")
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--output", "json")
    assert result.exit_code == ExitCode.PARTIAL
    doc = json.loads(result.stdout)  # would fail on any progress line mixed in
    assert doc["schema"] == "falco-deploy.result/v1"
    assert doc["exit_code"] == 3
    assert doc["artifacts_dir"] == str(fake.calls[0].artifacts_dir)
    assert [h["verdict"] for h in doc["hosts"]] == [
        "installed", "failed", "skipped", "unchanged", "unreachable"]
    assert "h2 | failed | Hard fail" in result.stderr


def test_all_good_exits_ok(monkeypatch, project, inventory, state):
    fake = FakeRunner([ok("a", "Install", changed=True), report("a"), report("b")])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project))
    assert result.exit_code == ExitCode.OK


def test_no_host_matched_exits_failed(monkeypatch, project, inventory, state):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "-l", "nothing*")
    assert result.exit_code == ExitCode.FAILED
    assert "no host matched the inventory and --limit nothing*" in result.output


def test_playbook_crash_before_hosts_shows_ansible_error(monkeypatch, project, inventory, state):
    fake = FakeRunner([], rc=4, status="failed",
                      stdout="\x1b[0;31m[ERROR]: conflicting action statements\x1b[0m\r\n")
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--output", "json")
    assert result.exit_code == ExitCode.FAILED
    doc = json.loads(result.stdout)
    assert doc["hosts"] == []
    assert "rc 4" in doc["error"] and "conflicting action statements" in doc["error"]


def test_unparsable_inventory_is_usage_error(monkeypatch, project, inventory, state):
    # ansible-core 2.19's output with ANSIBLE_INVENTORY_UNPARSED_FAILED (recorded).
    stdout = ("[WARNING]: Unable to parse /x/hosts.yml as an inventory source\r\n"
              "\x1b[0;31m[ERROR]: No inventory was parsed, please check your configuration and "
              "options.\x1b[0m\r\n")
    result = invoke(monkeypatch, FakeRunner([], rc=1, status="failed", stdout=stdout),
                    "-i", str(inventory), "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE
    assert "ansible could not parse the inventory" in result.output
    assert "Unable to parse /x/hosts.yml" in result.output


def test_missing_inventory_is_usage_error_with_hint(monkeypatch, project, state, tmp_path):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "-i", str(tmp_path / "nope.yml"),
                    "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE
    assert "inventory" in result.stderr and "does not exist" in result.stderr
    assert "Hint:" in result.stderr
    assert fake.calls == []


def test_usage_error_still_prints_the_json_envelope(monkeypatch, project, state, tmp_path):
    result = invoke(monkeypatch, FakeRunner([]), "-i", str(tmp_path / "nope.yml"),
                    "--project-dir", str(project), "--output", "json")
    assert result.exit_code == ExitCode.USAGE
    doc = json.loads(result.stdout)
    assert doc["schema"] == "falco-deploy.result/v1"
    assert doc["command"] == "install"
    assert doc["exit_code"] == ExitCode.USAGE and doc["exit_status"] == "usage"
    assert doc["hosts"] == [] and "does not exist" in doc["error"]
    assert "Error:" in result.stderr


def test_inventory_is_required(monkeypatch, project, state):
    result = invoke(monkeypatch, FakeRunner([]), "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE
    assert "--inventory" in result.stderr


def test_missing_extra_vars_file_is_usage_error(monkeypatch, project, inventory, state):
    result = invoke(monkeypatch, FakeRunner([]), "-i", str(inventory), "--project-dir",
                    str(project), "-e", "@/no/such/vars.yml")
    assert result.exit_code == ExitCode.USAGE
    assert "/no/such/vars.yml" in result.stderr


def test_bad_output_choice_is_usage_error(monkeypatch, project, inventory, state):
    result = invoke(monkeypatch, FakeRunner([]), "-i", str(inventory), "--output", "yaml")
    assert result.exit_code == ExitCode.USAGE


def test_project_without_install_playbook_is_environment_error(monkeypatch, inventory, state,
                                                               tmp_path):
    empty = tmp_path / "empty"
    (empty / "playbooks").mkdir(parents=True)
    result = invoke(monkeypatch, FakeRunner([]), "-i", str(inventory), "--project-dir",
                    str(empty))
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert "install.yml" in result.stderr


def test_project_dir_from_environment(monkeypatch, project, inventory, state):
    monkeypatch.setenv("FALCO_DEPLOY_PROJECT_DIR", str(project))
    fake = FakeRunner([report("a")])
    result = invoke(monkeypatch, fake, "-i", str(inventory))
    assert result.exit_code == ExitCode.OK
    assert fake.calls[0].project.source == "environment"


def test_ctrl_c_exits_130(monkeypatch, project, inventory, state):
    fake = FakeRunner([report("a")], status="canceled", rc=-1)
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project))
    assert result.exit_code == ExitCode.INTERRUPTED == 130


@pytest.mark.parametrize(("signum", "code"), [(15, ExitCode.TERMINATED), (1, ExitCode.HANGUP),
                                              (2, ExitCode.INTERRUPTED)])
def test_a_signal_mid_run_prints_the_summary_with_the_unfinished_hosts(
        monkeypatch, project, inventory, state, signum, code):
    from install_events import start

    fake = FakeRunner([ok("a", "Add repo", changed=True), report("a"),
                       start("b", "Install the falco package")],
                      status="canceled", rc=-1, signum=signum)
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--output", "json")
    assert result.exit_code == code == 128 + signum
    doc = json.loads(result.stdout)
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["a"]["verdict"] == "installed"
    name = {15: "SIGTERM", 1: "SIGHUP", 2: "SIGINT"}[signum]
    assert hosts["b"]["verdict"] == "interrupted"
    assert hosts["b"]["reason"] == f"{name} during: Install the falco package"
    assert doc["error"] == f"interrupted by {name}: the run was stopped"


def test_help_documents_exit_codes():
    result = CliRunner().invoke(cli, ["install", "--help"])
    assert result.exit_code == 0
    for code in ("0 ", "2 ", "3 ", "4 ", "5 ", "130 "):
        assert f"  {code}" in result.output
    assert "partial" in result.output


def test_cli_module_does_not_import_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, falco_deploy.cli; "
            "print(sorted(m for m in ('rich', 'ansible_runner', 'ansible') if m in sys.modules))")
    src = str(Path(__file__).resolve().parents[2] / "wrapper")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": src}, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("value", "words"), [
    ("@/dev/zero", "extra-vars file /dev/zero is not a regular file"),
    ("@/nonexistent/vars.yml", "extra-vars file /nonexistent/vars.yml does not exist"),
])
def test_extra_vars_files_that_are_not_files_are_usage_errors(monkeypatch, project, inventory,
                                                              state, value, words):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "-e", value)
    assert result.exit_code == ExitCode.USAGE
    assert words in result.stderr
    assert fake.calls == []


def test_an_ini_inventory_under_a_yaml_name_is_left_to_ansible(tmp_path):
    """ansible's ini plugin reads any file name; only a file that is neither YAML nor INI is
    refused before the run."""
    from falco_deploy.commands.playbook import inventory_problem

    ini = tmp_path / "hosts.yml"
    ini.write_text("# fleet\n[falco_hosts]\nweb1 ansible_host=10.0.0.1\nweb2\n")
    assert inventory_problem(ini) is None
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts: [web1\n")
    assert inventory_problem(broken).startswith("is not valid YAML")
