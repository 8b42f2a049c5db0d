"""`falco-deploy rules validate`, called in-process."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from falco_deploy.cli import cli
from known_secrets import LINKED_FILE_SECRET, write_input

SHARED = Path(os.environ.get("FALCO_DEPLOY_SHARED")
              or Path(__file__).resolve().parents[2].parent / "shared")
CORPUS = SHARED / "corpus"
EXAMPLE = CORPUS / "falco-output/validate-json-example.txt"
GOOD = "- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: x\n  priority: INFO\n"
BAD = "- rule: R\n  desc: d\n  condition: evt.type = execve and proc.nope = 1\n  output: x\n" \
      "  priority: INFO\n"


def _run(args, env=None):
    runner = CliRunner()
    return runner.invoke(cli, ["rules", "validate", *args], env=env, catch_exceptions=False)


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    warn = tmp_path / "warn.yaml"
    warn.write_text("- list: unused\n  items: [a]\n")
    return good, bad, warn


def test_ok_exit_0(files):
    good, _, _ = files
    res = _run(["--engine", "builtin", str(good)])
    assert res.exit_code == 0
    assert res.stdout == f"{good}: Ok\n"


def test_invalid_exit_1_text(files):
    _, bad, _ = files
    res = _run(["--engine", "builtin", str(bad)])
    assert res.exit_code == 1
    assert res.stdout.startswith(f"{bad}: Invalid\n1 Errors:\nIn rules content: ({bad}:0:0)\n")
    assert "filter_check called with nonexistent field proc.nope" in res.stdout
    assert res.stderr.startswith(f"Error: {bad}: Invalid")


def test_warnings_exit_0_and_logged(files):
    _, _, warn = files
    res = _run(["--engine", "builtin", str(warn)])
    assert res.exit_code == 0
    assert res.stdout == f"{warn}: Ok, with warnings\n"
    assert "LOAD_UNUSED_LIST (Unused list): List not referred to" in res.stderr


def test_json_output_shape(files):
    good, bad, _ = files
    res = _run(["--engine", "builtin", "--output", "json", str(good), str(bad)])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert list(doc) == ["falco_load_results"]
    first, second = doc["falco_load_results"]
    assert set(first) == {"name", "successful", "errors", "warnings", "schema_valid",
                          "schema_warnings"}
    assert first["successful"] is True and second["successful"] is False
    err = second["errors"][0]
    assert set(err) == {"code", "codedesc", "message", "context"}
    assert set(err["context"]) == {"locations", "snippet"}


def test_base_is_loaded_first(files, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("- macro: m\n  condition: evt.type = open\n")
    custom = tmp_path / "custom.yaml"
    custom.write_text(GOOD.replace("evt.type = execve", "m"))
    assert _run(["--engine", "builtin", str(custom)]).exit_code == 1
    res = _run(["--engine", "builtin", "--output", "json", "--base", str(base), str(custom)])
    assert res.exit_code == 0
    names = [r["name"] for r in json.loads(res.stdout)["falco_load_results"]]
    assert names == [str(base), str(custom)]


def test_falco_version_040(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(GOOD.replace("evt.type = execve", "evt.type = execve and container.id != host"))
    assert _run(["--engine", "builtin", "--falco-version", "0.40", str(f)]).exit_code == 0
    assert _run(["--engine", "builtin", "--falco-version", "0.44", str(f)]).exit_code == 1


@pytest.mark.parametrize("args", [[], ["--falco-version", "0.39", "x.yaml"],
                                  ["--engine", "nope", "x.yaml"], ["--output", "xml", "x.yaml"]])
def test_usage_errors_exit_2(args):
    assert _run(args).exit_code == 2


def test_folder_without_rules_is_an_error_result(tmp_path):
    res = _run(["--engine", "builtin", str(tmp_path)])
    assert res.exit_code == 1
    assert "LOAD_ERR_FILE_READ" in res.stdout


def _fake_falco(tmp_path, json_line: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "falco"
    args_file = tmp_path / "falco-args"
    script.write_text("#!/bin/sh\n"
                      f"echo \"$@\" > {args_file}\n"
                      "echo 'Sun Nov 29 20:00:00 2026: Falco version: 0.40.0' >&2\n"
                      f"cat <<'JSON'\n{json_line}\nJSON\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.mark.parametrize("engine", ["falco", "auto"])
def test_real_falco_engine_renders_through_the_same_path(tmp_path, engine):
    if not EXAMPLE.exists():
        pytest.skip("corpus not available")
    text = EXAMPLE.read_text()
    json_line = text.split("## stdout (json line)\n", 1)[1].split("\n", 1)[0]
    human = text.split("## human output (without json_output), exit code 1\n", 1)[1]
    human = human.split("\nError: ", 1)[0]
    bindir = _fake_falco(tmp_path, json_line)
    rules = tmp_path / "brief_rules.yaml"
    rules.write_text("- list: x\n  items: []\n")
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = _run(["--engine", engine, str(rules)], env=env)
    assert res.exit_code == 1
    assert res.stdout == human + "\n"
    assert (tmp_path / "falco-args").read_text().split() == [
        "-V", str(rules), "-o", "json_output=true"]
    res = _run(["--engine", engine, "--output", "json", str(rules)], env=env)
    assert json.loads(res.stdout) == json.loads(json_line)


def test_engine_falco_without_binary_is_an_environment_error(tmp_path, files):
    good, _, _ = files
    res = _run(["--engine", "falco", str(good)], env={"PATH": str(tmp_path)})
    assert res.exit_code == 5
    assert "falco not found" in res.stderr


def test_cli_module_stays_light():
    import subprocess
    import sys

    code = ("import sys; import falco_deploy.cli; "
            "bad = [m for m in ('rich', 'ansible', 'ansible_runner', 'yaml') if m in sys.modules];"
            "print(','.join(bad))")
    wrapper = str(Path(__file__).resolve().parents[2] / "wrapper")
    env = dict(os.environ, PYTHONPATH=wrapper)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.strip()
    assert out == ""


# -- bad sources: one line, exit 2, nothing outside the given paths read or printed -----------

ROOT = Path(__file__).resolve().parents[2]


def _one_line_usage_error(res, text: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_a_missing_path_is_a_usage_error(tmp_path):
    _one_line_usage_error(_run(["--engine", "builtin", str(tmp_path / "nope.yaml")]),
                          "nope.yaml: no such file or folder")


def test_a_symlink_is_refused_and_its_target_never_printed(tmp_path):
    secret = write_input(tmp_path / "secret.txt", f"password: {LINKED_FILE_SECRET}\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").symlink_to(secret)
    for target in (rules, rules / "a.yaml"):
        res = _run(["--engine", "builtin", str(target)])
        _one_line_usage_error(res, "a.yaml: is a symbolic link")
        assert LINKED_FILE_SECRET not in res.output


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(source):
    _one_line_usage_error(_run(["--engine", "builtin", source]), "not a regular file")


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(4 * 1024 * 1024 + 1)
    _one_line_usage_error(_run(["--engine", "builtin", str(big)]),
                          "larger than the 4194304 bytes a rules file may have")


def test_a_binary_file_is_one_error_not_a_traceback(tmp_path):
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(bytes(range(256)) * 4)
    _one_line_usage_error(_run(["--engine", "builtin", str(blob)]),
                          "blob.yaml: not a text file (a NUL byte at offset 0)")


def test_an_alias_bomb_is_one_error_not_a_traceback(tmp_path):
    lines = ["- list: a0\n  items: &a0 [x, x, x, x, x, x, x, x, x, x]\n"]
    for i in range(1, 9):
        ref = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"- list: a{i}\n  items: &a{i} [{ref}]\n")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("".join(lines))
    res = _run(["--engine", "builtin", str(bomb)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "LOAD_ERR" in res.stdout


def test_base_upstream_validates_after_the_packaged_official_rules():
    rules = str(ROOT / "rules")
    alone = _run(["--engine", "builtin", rules])
    assert alone.exit_code == 1 and "Undefined macro" in alone.stdout
    for version in ("0.44", "0.40"):
        res = _run(["--engine", "builtin", "--falco-version", version, "--base", "upstream",
                    rules])
        assert res.exit_code == 0, res.output
        assert f"falco_rules-{version}.yaml: Ok" in res.stdout
        assert "falco-deploy_rules.yaml: Ok" in res.stdout


def test_the_pre_commit_hook_runs_the_validator_as_documented(tmp_path):
    import shlex

    import yaml

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "falco-rules-validate" and hook["language"] == "python"
    argv = shlex.split(hook["entry"])
    assert argv[:3] == ["falco-deploy", "rules", "validate"]
    # pre-commit appends the staged files to the entry (and a site's args before them).
    good = _run([*argv[3:], "--falco-version", "0.40",
                 str(ROOT / "rules" / "falco-deploy_rules.yaml")])
    assert good.exit_code == 0, good.output
    bad = tmp_path / "site_rules.yaml"
    bad.write_text(BAD)
    assert _run([*argv[3:], str(bad)]).exit_code == 1
