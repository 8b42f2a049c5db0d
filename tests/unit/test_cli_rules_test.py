"""`falco-deploy rules test`: the project's own fixtures pass on both Falco generations, a
weakened rule makes them fail, and bad fixture files are refused with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from falco_deploy.cli import cli
from falco_deploy.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[1].parent
RULES = ROOT / "rules" / "falco-deploy_rules.yaml"
FIXTURES = ROOT / "rules" / "tests"


def run(*args: str):
    return CliRunner().invoke(cli, ["rules", "test", *args], catch_exceptions=False)


@pytest.mark.parametrize("version", ["0.40", "0.44"])
def test_the_projects_fixtures_pass(version):
    result = run("--falco-version", version, "--project-dir", str(ROOT))
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    last = result.output.strip().splitlines()[-1]
    total = int(last.split(" of ")[1].split()[0])
    assert last.startswith(f"{total} of {total} fixtures passed")


def _weakened(tmp_path: Path, old: str, new: str) -> Path:
    text = RULES.read_text()
    assert old in text
    path = tmp_path / "falco-deploy_rules.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(("old", "new", "failing"), [
    # without the runtime-helper exclusion dockerd's netns helper alerts on a DinD host
    ("    and not falco_deploy_runtime_helper\n    and not falco_deploy_unidentified_process\n"
     "    and not falco_deploy_host_own_container\n    and not user_known_falco_deploy_setns",
     "    and not falco_deploy_unidentified_process\n"
     "    and not falco_deploy_host_own_container\n    and not user_known_falco_deploy_setns",
     "dind / dockerd's network-namespace helper"),
    # the notify_on_release half of the release_agent escape
    ("(fd.name endswith /release_agent or fd.name endswith /notify_on_release)",
     "(fd.name endswith /release_agent)",
     "release_agent / openat of notify_on_release for writing"),
    # a rule that fires on every dup, whatever the new descriptor
    ("    and evt.rawres in (0, 1, 2)\n    and fd.type in", "    and fd.type in",
     "reverse_shell / every other event of the container"),
])
def test_a_weakened_rule_fails_the_fixture_that_guards_it(tmp_path, old, new, failing):
    rules = _weakened(tmp_path, old, new)
    result = run("--rules", str(rules), "--falco-version", "0.40", str(FIXTURES))
    assert result.exit_code == ExitCode.RULES_INVALID, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert any(failing in line for line in failed), failed


def test_json_output_names_each_fixture_and_the_rule_that_alerts_first():
    result = run("--falco-version", "0.40", "--output", "json", "--project-dir", str(ROOT),
                 str(FIXTURES / "corpus-0.40.yaml"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True and doc["falco_version"] == "0.40"
    by_name = {f["name"]: f for f in doc["fixtures"]}
    shell = by_name["reverse_shell / dup2 of the TCP socket onto 0, 1 and 2"]
    # with rule_matching: first upstream's rule, loaded first, takes the event
    assert shell["first_rule"] == ["Redirect STDOUT/STDIN to Network Connection in Container"]
    assert by_name["benign / bash and sh loops"]["events"] == 198


def _fixture(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("fixtures: 3\n", "expected a mapping with a `fixtures` list"),
    ("fixtures:\n  - name: x\n    event: {evt.type: open}\n", "exactly one of `fires: RULE`"),
    ("fixtures:\n  - name: x\n    quiet: true\n", "exactly one of `event`, `from`, `strace`"),
    ("fixtures:\n  - name: x\n    event: {evt.type: open}\n    quiet: true\n    typo: 1\n",
     "unknown key(s): typo"),
    ("fixtures:\n  - name: x\n    event: {evt.type: open}\n    assume: {a: 1}\n    quiet: true\n",
     "needs `because`"),
    ("fixtures:\n  - name: x\n    from: {file: none.jsonl, where: {a: 1}}\n    quiet: true\n",
     "none.jsonl"),
    ("fixtures: [\n", "not YAML"),
])
def test_a_bad_fixture_file_is_refused_with_exit_2(tmp_path, body, message):
    result = run("--project-dir", str(ROOT), str(_fixture(tmp_path, body)))
    assert result.exit_code == ExitCode.USAGE
    assert message in result.output


def test_an_event_lacking_a_needed_field_fails_instead_of_passing(tmp_path):
    path = _fixture(tmp_path, """
fixtures:
  - name: a setns exit without its container
    event: {evt.type: setns, evt.rawres: 0, proc.exepath: /usr/bin/nsenter}
    quiet: true
""")
    result = run("--project-dir", str(ROOT), "--falco-version", "0.40", str(path))
    assert result.exit_code == ExitCode.RULES_INVALID
    assert "Namespace Change via setns to Host: unknown, the event lacks container.id" \
        in result.output


def test_a_named_rule_that_does_not_exist_fails(tmp_path):
    path = _fixture(tmp_path, """
fixtures:
  - name: typo in the rule name
    event: {evt.type: setns}
    fires: Namespace Change via setns to Hots
""")
    result = run("--project-dir", str(ROOT), str(path))
    assert result.exit_code == ExitCode.RULES_INVALID
    assert "no enabled rule named 'Namespace Change via setns to Hots'" in result.output


def test_rules_that_do_not_load_exit_1_with_the_validators_report(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: X\n  desc: x\n  condition: evt.type = open and nope = 1\n"
                   "  output: x\n  priority: INFO\n")
    result = run("--rules", str(bad), str(FIXTURES / "corpus-0.40.yaml"))
    assert result.exit_code == ExitCode.RULES_INVALID
    assert "the rules do not load" in result.output
