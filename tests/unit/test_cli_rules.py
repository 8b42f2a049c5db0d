"""`rules deploy`, `rollback` and `status` in-process: the offline gate, what reaches the runner,
and how results come out. The Ansible run is replaced by replayed events (never started); for
the gate, the playbook's first task (the falco_rules_bundle action's validation) runs for real
on the variables the command passed (tests/unit/test_rules_gate_playbook.py runs it inside
ansible-playbook)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_project import fake_project, hosts_inventory
from click.testing import CliRunner
from install_events import failed, ok, start, stats
from rules_events import RELEASE_OLD, rules_report
from test_cli_install import FakeRunner

from falco_deploy import runner as runner_mod
from falco_deploy.cli import cli
from falco_deploy.exitcodes import ExitCode
from known_secrets import LINKED_FILE_SECRET, write_input

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))
from ansible_collections.falco_deploy.falco.plugins.action import (  # noqa: E402
    falco_rules_bundle as bundle,
)

GATE_TASK = "Validate the rules set offline and build the release"

GOOD_RULE = """\
- rule: Fd test probe
  desc: Fires when a process named fd-probe starts; a test rule.
  condition: spawned_process and proc.name = fd-probe
  output: fd-probe started (proc.cmdline=%proc.cmdline)
  priority: WARNING
"""
# Valid, but an unused macro is a warning (LOAD_UNUSED_MACRO).
WARNING_RULE = "- macro: fd_unused_macro\n  condition: proc.name = x\n"
# Unknown field: LOAD_ERR_COMPILE_CONDITION, as real falco -V says.
BROKEN_RULE = GOOD_RULE.replace("proc.name = fd-probe", "proc.nosuchfield = x")
# Uses upstream macros (spawned_process): valid only after the base rules.
NEEDS_BASE = GOOD_RULE


@pytest.fixture
def project(tmp_path):
    root = fake_project(tmp_path, "rules_deploy", "rollback", "status")
    (root / "rules").mkdir()
    (root / "rules" / "project_rules.yaml").write_text(GOOD_RULE)
    return root


@pytest.fixture
def inventory(tmp_path):
    return hosts_inventory(tmp_path, "a", "b", "c")


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("FALCO_DEPLOY_PROJECT_DIR", raising=False)


def rules_dir(tmp_path, name="set", **files):
    folder = tmp_path / name
    folder.mkdir()
    for fname, text in files.items():
        (folder / fname.replace("_yaml", ".yaml")).write_text(text)
    return folder


def invoke(monkeypatch, fake, *args):
    monkeypatch.setattr(runner_mod, "run_playbook", fake)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def variables(run) -> dict:
    """The wrapper's own variables: the first -e, one JSON document."""
    return json.loads(run.extra_vars[0])


class GatedRunner(FakeRunner):
    """The playbook's gate for real, over the variables the command passed: a refused set ends
    the run at the first task, as ansible-playbook does; a passed set replays the events."""

    def __call__(self, run, on_event=None):
        given = variables(run)
        checked = bundle.gate(bundle.collect(given["falco_rules_sources"]),
                              given["falco_rules_gate_falco_version"],
                              given["falco_rules_gate_base_files"],
                              allow_warnings=not given["falco_rules_fail_on_warnings"])
        self.gated = checked
        if checked.ok:
            self.events = [ok("a", GATE_TASK, validation=checked.to_dict()), *self.events]
            return super().__call__(run, on_event)
        res = bundle.refusal(checked)
        self.events = [start("a", GATE_TASK), failed("a", GATE_TASK, res.pop("msg"), **res),
                       stats(failures={"a": 1}, processed={"a": 1})]
        self.rc, self.status = 2, "failed"
        return super().__call__(run, on_event)


# --- rules deploy: the offline gate ---------------------------------------------------------

def test_broken_set_exits_1_and_touches_no_host(monkeypatch, project, inventory, tmp_path):
    folder = rules_dir(tmp_path, good_yaml=GOOD_RULE, zz_broken_yaml=BROKEN_RULE)
    fake = GatedRunner([rules_report("a")])
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory), "--rules",
                    str(folder), "--project-dir", str(project))
    assert result.exit_code == ExitCode.RULES_INVALID == 1
    assert not fake.gated.ok
    # The validator's own words, as `falco -V` prints them.
    assert f"{folder / 'zz_broken.yaml'}: Invalid" in result.output
    assert "filter_check called with nonexistent field proc.nosuchfield" in result.output
    assert "no host was touched" in result.output
    assert "Exit status: rules_invalid (1)" in result.output


def test_usage_errors_come_before_the_gate(monkeypatch, project, tmp_path):
    folder = rules_dir(tmp_path, broken_yaml=BROKEN_RULE)
    result = invoke(monkeypatch, FakeRunner([]), "rules", "deploy", "-i", str(tmp_path / "no"),
                    "--rules", str(folder), "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE


def test_broken_set_json_envelope_carries_the_load_results(monkeypatch, project, inventory,
                                                           tmp_path):
    folder = rules_dir(tmp_path, broken_yaml=BROKEN_RULE)
    fake = GatedRunner([])
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory), "--rules",
                    str(folder), "--project-dir", str(project), "--output", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["schema"] == "falco-deploy.result/v1"
    assert doc["exit_status"] == "rules_invalid" and doc["hosts"] == []
    validation = doc["validation"]
    assert validation["ok"] is False
    results = {Path(r["name"]).name: r for r in validation["falco_load_results"]}
    assert results["falco_rules-0.44.yaml"]["successful"] is True
    assert results["broken.yaml"]["errors"][0]["code"] == "LOAD_ERR_COMPILE_CONDITION"
    assert doc["artifacts_dir"] == str(fake.calls[0].artifacts_dir)


def test_warnings_fail_unless_allowed(monkeypatch, project, inventory, tmp_path):
    folder = rules_dir(tmp_path, good_yaml=GOOD_RULE, warn_yaml=WARNING_RULE)
    args = ["rules", "deploy", "-i", str(inventory), "--rules", str(folder), "--project-dir",
            str(project)]
    fake = GatedRunner([rules_report("a")])
    result = invoke(monkeypatch, fake, *args)
    assert result.exit_code == ExitCode.RULES_INVALID
    assert "1 warning(s)" in result.output and "LOAD_UNUSED_MACRO" in result.output
    fake = GatedRunner([rules_report("a")])
    result = invoke(monkeypatch, fake, *args, "--allow-warnings")
    assert result.exit_code == ExitCode.OK, result.output
    assert variables(fake.calls[0])["falco_rules_fail_on_warnings"] is False


def test_set_that_needs_the_base_fails_with_an_empty_base(monkeypatch, project, inventory,
                                                          tmp_path):
    empty = tmp_path / "empty_base.yaml"
    empty.write_text("[]\n")
    folder = rules_dir(tmp_path, needs_yaml=NEEDS_BASE)
    args = ["rules", "deploy", "-i", str(inventory), "--rules", str(folder), "--project-dir",
            str(project)]
    result = invoke(monkeypatch, GatedRunner([rules_report("a")]), *args, "--base", str(empty))
    assert result.exit_code == 1
    assert "Undefined macro" in result.output or "spawned_process" in result.output
    result = invoke(monkeypatch, GatedRunner([rules_report("a")]), *args, "--falco-version",
                    "0.40", "--output", "json")
    assert result.exit_code == 0, result.output
    base = json.loads(result.stdout)["validation"]["base"]
    assert [Path(b).name for b in base] == ["falco_rules-0.40.yaml"]


@pytest.mark.parametrize("option", [["--falco-version", "0.39"], ["--base", "/nonexistent.yaml"]])
def test_bad_gate_settings_are_usage_errors(monkeypatch, project, inventory, option):
    fake = GatedRunner([])
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory),
                    "--project-dir", str(project), *option)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert fake.calls == []


def test_refusal_in_a_later_batch_keeps_the_deployed_hosts(monkeypatch, project, inventory,
                                                           tmp_path):
    # The set changed on disk between batches: batch 1 (host a) got the release, batch 2's
    # gate refused it. Host a's deploy must stay in the result, so this is not "no host was
    # touched" (exit 1) but a failed run.
    checked = bundle.gate(bundle.collect([str(rules_dir(tmp_path, b_yaml=BROKEN_RULE))]),
                          "0.44", [], allow_warnings=False)
    res = bundle.refusal(checked)
    monkeypatch.setattr(runner_mod, "list_hosts", lambda run: ["a", "b"])
    events = [ok("a", GATE_TASK, validation={**checked.to_dict(), "ok": True}),
              ok("a", "Deploy the release", changed=True), rules_report("a"),
              failed("b", GATE_TASK, res.pop("msg"), **res),
              stats(failures={"b": 1}, processed={"a": 1, "b": 1})]
    result = invoke(monkeypatch, FakeRunner(events, rc=2, status="failed"), "rules", "deploy",
                    "-i", str(inventory), "--project-dir", str(project), "--output", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert doc["validation"]["ok"] is False
    assert {h["host"]: h["verdict"] for h in doc["hosts"]}["a"] == "deployed"


# --- rules deploy: what reaches the runner --------------------------------------------------

def test_sources_are_absolute_in_host_load_order(monkeypatch, project, inventory, tmp_path):
    one = rules_dir(tmp_path, "one", b_yaml=GOOD_RULE.replace("Fd test probe", "B"))
    two = rules_dir(tmp_path, "two", a_yaml=GOOD_RULE.replace("Fd test probe", "A"))
    (two / "README.md").write_text("not a rules file")
    monkeypatch.chdir(tmp_path)
    fake = FakeRunner([ok("a", "Switch", changed=True), rules_report("a")])
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory), "--rules",
                    "one", "--rules", "two", "--serial", "25%", "-e", "x=1",
                    "--project-dir", str(project))
    assert result.exit_code == ExitCode.OK, result.output
    run = fake.calls[0]
    assert run.playbook == (project / "playbooks" / "rules_deploy.yml").resolve()
    assert variables(run) == {
        # one rules.d on the host, loaded by name: a.yaml before b.yaml
        "falco_rules_sources": [str(two / "a.yaml"), str(one / "b.yaml")],
        "falco_rules_serial": "25%",
        "falco_rules_fail_on_warnings": True,
        "falco_rules_gate_falco_version": "0.44",
        "falco_rules_gate_base_files": [],  # the packaged upstream rules of that version
    }
    assert run.extra_vars[1:] == ["x=1"]  # the operator's -e comes later and wins
    assert run.artifacts_dir.name.endswith("-rules-deploy")
    assert "deployed" in result.output and RELEASE_OLD in result.output


def test_default_set_is_the_project_rules_folder(monkeypatch, project, inventory):
    fake = FakeRunner([rules_report("a")])
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory),
                    "--project-dir", str(project))
    assert result.exit_code == ExitCode.OK, result.output
    assert variables(fake.calls[0])["falco_rules_sources"] == [
        str((project / "rules" / "project_rules.yaml").resolve())]


@pytest.mark.parametrize("serial", ["0", "-1", "abc", "0%", "101%", "5 hosts"])
def test_bad_serial_is_usage_error(monkeypatch, project, inventory, serial):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory), "--serial",
                    serial, "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE
    assert fake.calls == []


def test_two_files_with_one_name_is_usage_error(monkeypatch, project, inventory, tmp_path):
    one = rules_dir(tmp_path, "one", x_yaml=GOOD_RULE)
    two = rules_dir(tmp_path, "two", x_yaml=GOOD_RULE)
    result = invoke(monkeypatch, FakeRunner([]), "rules", "deploy", "-i", str(inventory),
                    "--rules", str(one), "--rules", str(two), "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE
    assert "two rules files named x.yaml" in result.stderr


def test_missing_or_empty_rules_folder_is_usage_error(monkeypatch, project, inventory,
                                                      tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "nope", tmp_path / "empty"):
        result = invoke(monkeypatch, FakeRunner([]), "rules", "deploy", "-i", str(inventory),
                        "--rules", str(folder), "--project-dir", str(project))
        assert result.exit_code == ExitCode.USAGE, result.output


def test_failed_batch_reports_later_hosts_as_not_run(monkeypatch, project, inventory):
    events = [start("a", "Stage"), rules_report("a", status="refused", reason="falco -V: bad",
                                                release=RELEASE_OLD),
              failed("a", "Stop", "refused"), stats(failures={"a": 1}, processed={"a": 1})]
    fake = FakeRunner(events, rc=2, status="failed")
    listed = []

    def list_hosts(run):
        listed.append(run)
        return ["a", "b", "c"]

    monkeypatch.setattr(runner_mod, "list_hosts", list_hosts)
    result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory), "--serial", "1",
                    "--project-dir", str(project), "--output", "json")
    assert result.exit_code == ExitCode.FAILED
    doc = json.loads(result.stdout)
    assert [(h["host"], h["verdict"]) for h in doc["hosts"]] == [
        ("a", "refused"), ("b", "not run"), ("c", "not run")]
    assert listed[0] is fake.calls[0]


def test_successful_run_does_not_list_hosts(monkeypatch, project, inventory):
    def list_hosts(run):
        raise AssertionError("listing hosts costs an ansible start; only after a failed run")

    monkeypatch.setattr(runner_mod, "list_hosts", list_hosts)
    result = invoke(monkeypatch, FakeRunner([rules_report("a")]), "rules", "deploy", "-i",
                    str(inventory), "--project-dir", str(project))
    assert result.exit_code == ExitCode.OK


def test_deploy_help_documents_exit_codes():
    result = CliRunner().invoke(cli, ["rules", "deploy", "--help"])
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130 "):
        assert f"  {code}" in result.output
    assert "--serial" in result.output and "--allow-warnings" in result.output


# --- rollback --------------------------------------------------------------------------------

def test_rollback_steps_by_default(monkeypatch, project, inventory):
    fake = FakeRunner([ok("a", "Switch", changed=True), rules_report("a", release=RELEASE_OLD)])
    result = invoke(monkeypatch, fake, "rollback", "-i", str(inventory), "--project-dir",
                    str(project))
    assert result.exit_code == ExitCode.OK, result.output
    run = fake.calls[0]
    assert run.playbook.name == "rollback.yml"
    assert variables(run) == {"falco_rules_rollback_to": "", "falco_rules_rollback_steps": 1}
    assert "deployed" in result.output


def test_rollback_to_release_with_package_version(monkeypatch, project, inventory):
    fake = FakeRunner([rules_report("a", release=RELEASE_OLD)])
    result = invoke(monkeypatch, fake, "rollback", "-i", str(inventory), "--to", RELEASE_OLD,
                    "--package-version", "0.43.0", "--project-dir", str(project))
    assert result.exit_code == ExitCode.OK, result.output
    assert variables(fake.calls[0]) == {
        "falco_rules_rollback_to": RELEASE_OLD, "falco_rules_rollback_steps": 1,
        "falco_package_version": "0.43.0", "falco_package_allow_downgrade": True}


@pytest.mark.parametrize("args", [
    ["--to", RELEASE_OLD, "--steps", "2"],
    ["--to", "../../etc"],
    ["--steps", "0"],
    ["--package-version", "latest; rm"],
])
def test_rollback_bad_arguments_are_usage_errors(monkeypatch, project, inventory, args):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "rollback", "-i", str(inventory), "--project-dir",
                    str(project), *args)
    assert result.exit_code == ExitCode.USAGE
    assert fake.calls == []


def test_rollback_refused_is_partial(monkeypatch, project, inventory):
    fake = FakeRunner([rules_report("a"),
                       rules_report("b", status="refused", reason="release not found")])
    result = invoke(monkeypatch, fake, "rollback", "-i", str(inventory), "--project-dir",
                    str(project))
    assert result.exit_code == ExitCode.PARTIAL
    assert "refused: release not found" in result.output


# --- status ----------------------------------------------------------------------------------

def test_status_json_and_drift_exit_code(monkeypatch, project, inventory):
    fake = FakeRunner([rules_report("a"),
                       rules_report("b", drift=True, drift_files=["/etc/falco/rules.d/x.yaml"])])
    result = invoke(monkeypatch, fake, "status", "-i", str(inventory), "--project-dir",
                    str(project), "--output", "json")
    assert result.exit_code == ExitCode.DRIFT == 6
    doc = json.loads(result.stdout)
    assert doc["command"] == "status"
    assert [(h["host"], h["verdict"], h["drift"]) for h in doc["hosts"]] == [
        ("a", "in sync", False), ("b", "drifted", True)]
    assert fake.calls[0].playbook.name == "status.yml"
    assert fake.calls[0].extra_vars == []


def test_status_text_table(monkeypatch, project, inventory):
    fake = FakeRunner([rules_report("a"),
                       rules_report("b", drift=True, drift_files=["/etc/falco/rules.d/x.yaml"])])
    result = invoke(monkeypatch, fake, "status", "-i", str(inventory), "--project-dir",
                    str(project))
    assert "Drifted files:" in result.output and "b: /etc/falco/rules.d/x.yaml" in result.output
    assert "Exit status: drift (6)" in result.output


def test_status_has_no_check_option_and_documents_drift():
    result = CliRunner().invoke(cli, ["status", "--check", "-i", "x"])
    assert result.exit_code == ExitCode.USAGE
    result = CliRunner().invoke(cli, ["status", "--help"])
    assert "  6  drift" in result.output


def test_top_level_help_lists_every_exit_code():
    result = CliRunner().invoke(cli, ["--help"])
    for code in ExitCode:
        assert f"  {int(code)}  " in result.output, code


# --- sources and ids the hosts would refuse: usage errors before any run ---------------------

def test_links_and_names_the_hosts_refuse_are_usage_errors(monkeypatch, project, inventory,
                                                           tmp_path):
    secret = write_input(tmp_path / "secret.txt", f"{LINKED_FILE_SECRET}\n")
    linked = rules_dir(tmp_path, "linked", good_yaml=GOOD_RULE)
    (linked / "zz.yaml").symlink_to(secret)
    spaced = rules_dir(tmp_path, "spaced", good_yaml=GOOD_RULE)
    (spaced / "my rules.yaml").write_text(GOOD_RULE)
    for folder, words in ((linked, "is a symbolic link"),
                          (spaced, "my rules.yaml: the hosts refuse this file name")):
        fake = GatedRunner([])
        result = invoke(monkeypatch, fake, "rules", "deploy", "-i", str(inventory), "--rules",
                        str(folder), "--project-dir", str(project))
        assert result.exit_code == ExitCode.USAGE, result.output
        assert words in result.stderr
        assert LINKED_FILE_SECRET not in result.output
        assert fake.calls == []


def test_the_cli_and_the_hosts_share_one_file_name_rule():
    from falco_deploy.commands.rules_deploy import SAFE_NAME

    assert SAFE_NAME.pattern == bundle.unsafe_name.__globals__["SAFE_NAME"].pattern


@pytest.mark.parametrize("to", ["../../etc", "20261129T203000Z-1a2b3c4d\n",
                                "20261129T203000Z-1a2b3c4d/.."])
def test_rollback_to_a_path_is_a_usage_error(monkeypatch, project, inventory, to):
    fake = FakeRunner([])
    result = invoke(monkeypatch, fake, "rollback", "-i", str(inventory), "--to", to,
                    "--project-dir", str(project))
    assert result.exit_code == ExitCode.USAGE
    assert fake.calls == []
