"""`falco-deploy forwarding` in-process: what reaches the runner and how hosts are judged. The
Ansible run is replaced by events shaped like playbooks/forwarding.yml's (never started)."""

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
from falco_deploy.render import _forwarding
from falco_deploy.results import HostResult, Verdict


@pytest.fixture
def project(tmp_path):
    return fake_project(tmp_path, "forwarding")


@pytest.fixture
def inventory(tmp_path):
    return hosts_inventory(tmp_path, "a", "b")


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def host_events(host: str, changed: bool, transport: str = "falcosidekick") -> list[dict]:
    return [ok(host, "Write the Falcosidekick configuration", changed=changed),
            ok(host, "Report the result", falco_deploy_result={
                "status": "ok", "reason": "", "findings": [], "falco_version": "",
                "driver": "", "service": "", "transport": transport,
                "outputs": ["elasticsearch"], "endpoint": "http://127.0.0.1:2801"},
               _ansible_verbose_always=True)]


def invoke(monkeypatch, fake, *args):
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    return CliRunner().invoke(cli, ["forwarding", *args], catch_exceptions=False)


def test_configured_and_unchanged_hosts(monkeypatch, project, inventory):
    fake = FakeRunner(host_events("a", True) + host_events("b", False)
                      + [stats(processed={"a": 1, "b": 1}, changed={"a": 1})])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--output", "json")
    assert result.exit_code == ExitCode.OK, result.output
    doc = json.loads(result.stdout)
    assert doc["command"] == "forwarding"
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["a"]["verdict"] == "configured" and hosts["b"]["verdict"] == "unchanged"
    assert hosts["a"]["transport"] == "falcosidekick"
    assert hosts["a"]["outputs"] == ["elasticsearch"]
    assert fake.calls[0].playbook.name == "forwarding.yml"
    assert fake.calls[0].extra_vars == []  # the inventory's transport holds


def test_transport_option_overrides_the_inventory(monkeypatch, project, inventory):
    fake = FakeRunner(host_events("a", True, "none") + [stats(processed={"a": 1})])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--project-dir", str(project),
                    "--transport", "none")
    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(fake.calls[0].extra_vars[0]) == {"falco_forwarding_transport": "none"}
    assert "configured" in result.output and "none" in result.output


def test_an_unknown_transport_is_a_usage_error(monkeypatch, project, inventory):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "-i", str(inventory), "--transport", "kafka")
    assert result.exit_code == ExitCode.USAGE
    assert fake.calls == []


def test_verify_table_shows_the_forwarding_verdict():
    def host(check):
        return HostResult(host="a", verdict=Verdict.VERIFIED, details={"forwarding": check})
    assert _forwarding(host({"status": "delivered", "transport": "rsyslog"})) == \
        "delivered (rsyslog)"
    assert _forwarding(host({"status": "not_configured", "transport": "none"})) == \
        "not configured"
    assert _forwarding(host(None)) == "-"


def test_help_documents_the_transports_and_exit_codes():
    result = CliRunner().invoke(cli, ["forwarding", "--help"])
    for word in ("falcosidekick", "rsyslog", "http", "none", "--transport", "--check"):
        assert word in result.output
    for code in ("0 ", "2 ", "3 ", "4 ", "5 ", "130 "):
        assert f"  {code}" in result.output
