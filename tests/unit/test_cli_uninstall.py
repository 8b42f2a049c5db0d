"""`falco-deploy uninstall` in-process: what reaches the runner and how hosts are judged. The
Ansible run is replaced by events shaped like the falco_uninstall role's (never started)."""

from __future__ import annotations

import json

import pytest
from cli_project import fake_project, hosts_inventory
from click.testing import CliRunner
from install_events import ok, stats
from test_cli_install import FakeRunner

from falco_deploy import runner as runner_mod
from falco_deploy.cli import cli
from falco_deploy.exitcodes import ExitCode

PLAN = ["stop falco-modern-bpf.service", "remove /etc/falco/rules.d", "purge package falco"]


@pytest.fixture
def project(tmp_path):
    return fake_project(tmp_path, "uninstall")


@pytest.fixture
def inventory(tmp_path):
    return hosts_inventory(tmp_path, "a", "b")


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def host_events(host: str, plan: list[str], kept: list[str] | None = None) -> list[dict]:
    changed = bool(plan)
    return [ok(host, "Remove Falco and falco-deploy's files", changed=changed, plan=plan,
               kept=kept or []),
            ok(host, "Report the result", falco_deploy_result={
                "status": "ok", "reason": "", "findings": [], "falco_version": "",
                "driver": "", "service": "", "removed": plan, "kept": kept or []},
               _ansible_verbose_always=True)]


def invoke(monkeypatch, fake, *args):
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    return CliRunner().invoke(cli, ["uninstall", *args], catch_exceptions=False)


def test_removed_and_unchanged_hosts(monkeypatch, project, inventory):
    fake = FakeRunner(host_events("a", PLAN) + host_events("b", [])
                      + [stats(processed={"a": 1, "b": 1})])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--output", "json")
    assert result.exit_code == ExitCode.OK, result.output
    doc = json.loads(result.stdout)
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["a"]["verdict"] == "removed" and hosts["a"]["removed"] == PLAN
    assert hosts["b"]["verdict"] == "unchanged"
    run = fake.calls[0]
    assert run.playbook.name == "uninstall.yml"
    assert json.loads(run.extra_vars[0]) == {"falco_uninstall_keep_releases": False,
                                            "falco_uninstall_keep_alert_log": False}


def test_check_lists_what_would_go_per_host(monkeypatch, project, inventory):
    fake = FakeRunner(host_events("a", PLAN) + [stats(processed={"a": 1})])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--check")
    assert result.exit_code == ExitCode.OK, result.output
    assert fake.calls[0].check
    assert "would change" in result.output
    # The module's own plan, not the task's name.
    for step in PLAN:
        assert f"a: {step}" in result.output
    assert "Remove Falco and falco-deploy's files" not in result.output.split("Would change:")[1]


def test_keep_options_become_role_variables(monkeypatch, project, inventory):
    fake = FakeRunner(host_events("a", [], kept=["/var/lib/falco-deploy/releases (keep)"]))
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--keep-releases", "--keep-alert-log")
    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(fake.calls[0].extra_vars[0]) == {"falco_uninstall_keep_releases": True,
                                                       "falco_uninstall_keep_alert_log": True}
    assert "/var/lib/falco-deploy/releases (keep)" in result.output


def test_help_documents_the_options_and_exit_codes():
    result = CliRunner().invoke(cli, ["uninstall", "--help"])
    assert "--keep-releases" in result.output and "--keep-alert-log" in result.output
    assert "--check" in result.output
    for code in ("0 ", "2 ", "3 ", "4 ", "5 ", "130 "):
        assert f"  {code}" in result.output
