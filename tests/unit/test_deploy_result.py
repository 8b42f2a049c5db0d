"""`falco_deploy_result`, the per-host report every playbook ends with, has one contract
(plugins/module_utils/falco_deploy_result.py) and one builder (the falco_deploy_report action).
These tests pin its keys and statuses, check that every role reports through the builder, and
that the wrapper reads nothing the contract does not promise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from falco_deploy import results

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "plugins" / "module_utils" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = _load("falco_deploy_result")
frh = _load("falco_rules_host")

BASE = ["status", "reason", "findings", "falco_version", "driver", "service"]
# Adding a key is fine (update this list and the wrapper when it reads it); renaming or removing
# one breaks `falco-deploy` of other versions and operators' playbooks that read the report.
PINNED = {
    "install": BASE,
    "rules": BASE + ["falco_state", "main_pid", "restarts", "rules_dir_state", "health_checks",
                     "release", "release_sha256", "previous_release", "drift", "drift_files",
                     "releases", "validation", "plan", "seconds"],
    "uninstall": BASE + ["removed", "kept"],
    "verify": BASE + ["verify_run_id", "docker_version", "image", "scenarios", "counts",
                      "alert_file", "alert_file_exists", "alert_file_events", "alerts_ignored",
                      "internal_documents", "containers_removed", "stale_containers_removed",
                      "forwarding"],
    "forwarding": BASE + ["transport", "outputs", "endpoint"],
}
# The report kind each wrapper command reads.
COMMAND_KIND = {"install": "install", "rules deploy": "rules", "rollback": "rules",
                "status": "rules", "verify": "verify", "uninstall": "uninstall",
                "forwarding": "forwarding"}


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_the_keys_of_each_kind_are_pinned(kind):
    extras = {k: None for k in PINNED[kind] if k not in BASE}
    status = contract.KINDS[kind][1][0]
    built = contract.build(kind, {"status": status, **extras})
    assert list(built) == PINNED[kind]
    # Defaults: empty strings and an empty list, never None, for the base keys.
    assert built["reason"] == built["falco_version"] == built["driver"] == built["service"] == ""
    assert built["findings"] == []


def test_a_report_that_breaks_the_contract_is_refused():
    with pytest.raises(ValueError, match="status 'installed' is not one of ok, skipped"):
        contract.build("install", {"status": "installed"})
    with pytest.raises(ValueError, match="unknown release"):
        contract.build("install", {"status": "ok", "release": "x"})
    with pytest.raises(ValueError, match="missing .*drift"):
        contract.build("rules", {"status": "ok"})
    with pytest.raises(ValueError, match="findings must be a list"):
        contract.build("install", {"status": "ok", "findings": "one"})
    with pytest.raises(ValueError, match="unknown report kind"):
        contract.build("reinstall", {"status": "ok"})


def test_the_host_code_reports_exactly_the_rules_keys(tmp_path):
    host = frh.Host({"rules_dir": str(tmp_path / "rules.d"),
                     "state_dir": str(tmp_path / "state"),
                     "falco_config": str(tmp_path / "falco.yaml")})
    report = frh.report(host, check_mode=True)
    report["seconds"] = 0.1  # the module and the probe time the call and add it
    assert list(contract.build("rules", report)) == PINNED["rules"]
    assert set(report) == set(PINNED["rules"])
    assert set(frh.probe({"rules_dir": str(tmp_path / "rules.d"),
                          "state_dir": str(tmp_path / "state")})["result"]) == set(PINNED["rules"])


@pytest.mark.parametrize("command", sorted(COMMAND_KIND))
def test_the_wrapper_reads_only_promised_keys_and_statuses(command):
    profile = results.profile_for(command)
    kind = COMMAND_KIND[command]
    keys = set(contract.keys(kind))
    # status reads engine_kind/unit_state when present, else driver/service (results.py).
    assert set(profile.report_keys) - {"engine_kind", "unit_state"} <= keys
    statuses = set(contract.KINDS[kind][1])
    assert {s for s, _ in profile.statuses} <= statuses
    if kind == "rules":
        assert set(results._HEALTH_STATUS) <= statuses


def _tasks(path: Path):
    for task in yaml.safe_load(path.read_text()) or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from task.get(key) or []


def test_every_report_goes_through_the_builder():
    builders = {}
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        text = path.read_text()
        assert "var: falco_deploy_result" not in text, f"{path}: a hand-made report"
        for task in _tasks(path):
            if "falco_deploy.falco.falco_deploy_report" in task:
                builders[str(path.relative_to(ROOT))] = \
                    task["falco_deploy.falco.falco_deploy_report"]["kind"]
    assert builders == {
        "roles/falco_preflight/tasks/skip.yml": "install",
        "roles/falco_service/tasks/report.yml": "install",
        "roles/falco_rules/tasks/report.yml": "rules",
        "roles/falco_verify/tasks/report.yml": "verify",
        "roles/falco_uninstall/tasks/main.yml": "uninstall",
    }


def test_the_action_returns_the_report_and_fails_a_broken_one(tmp_path):
    book = tmp_path / "play.yml"
    book.write_text("""\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Report
      falco_deploy.falco.falco_deploy_report:
        kind: install
        report: {status: skipped, reason: "no BTF", findings: [a]}
      register: out
    - name: Show
      ansible.builtin.debug:
        msg: "FD-REPORT {{ out.falco_deploy_result | to_json }}"
    - name: A broken report
      falco_deploy.falco.falco_deploy_report:
        kind: install
        report: {status: deployed}
""")
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), str(book)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert ('FD-REPORT {\\"status\\": \\"skipped\\", \\"reason\\": \\"no BTF\\", '
            '\\"findings\\": [\\"a\\"], \\"falco_version\\": \\"\\", \\"driver\\": \\"\\", '
            '\\"service\\": \\"\\"}') in proc.stdout, proc.stdout[-3000:]
    assert "status 'deployed' is not one of ok, skipped" in proc.stdout
