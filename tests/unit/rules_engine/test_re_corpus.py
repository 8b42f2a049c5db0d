"""Acceptance on the official rules and on real `falco -V` output (the corpus is ground truth)."""

from __future__ import annotations

import json
import shutil

from falco_deploy.rules_engine import validate

MAIN = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")


def test_official_main_rules_are_valid_on_044(corpus):
    files = [str(corpus / "falcosecurity-rules/main" / f) for f in MAIN]
    report = validate(files, falco_version="0.44")
    assert [r.name for r in report.results] == files
    assert report.ok and report.exit_code == 0
    # Falco emits no warning for these files; neither may we.
    assert [r.warnings for r in report.results] == [[], [], []], report.warnings_text()


def test_falco_rules_320_valid_on_040(corpus):
    report = validate([str(corpus / "falcosecurity-rules/falco-rules-3.2.0/falco_rules.yaml")],
                      falco_version="0.40")
    assert report.ok
    assert report.results[0].warnings == []


def test_main_rules_need_the_044_engine(corpus):
    """They declare required_engine_version 0.57.0: Falco 0.40 (engine 0.46.0) rejects them."""
    report = validate([str(corpus / "falcosecurity-rules/main/falco_rules.yaml")],
                      falco_version="0.40")
    (res,) = report.results
    assert res.error_codes == ["LOAD_ERR_VALIDATE"]
    assert res.errors[0].msg.startswith("Rules require engine version 0.57.0")


def test_main_rules_without_plugin_declaration_fail(corpus, tmp_path):
    """Falco >= 0.41 without the container plugin: container.* fields do not exist."""
    text = (corpus / "falcosecurity-rules/main/falco_rules.yaml").read_text()
    stripped = text.replace("- required_plugin_versions:\n    - name: container\n"
                            "      version: 0.4.0\n", "")
    assert stripped != text
    path = tmp_path / "falco_rules.yaml"
    path.write_text(stripped)
    (res,) = validate([str(path)]).results
    assert res.error_codes == ["LOAD_ERR_COMPILE_CONDITION"]
    assert "nonexistent field container." in res.errors[0].msg


def test_custom_rules_need_the_base(corpus, tmp_path):
    """A custom file that uses default macros fails alone and passes on top of falco_rules."""
    custom = tmp_path / "custom.yaml"
    custom.write_text("- rule: My shell\n  desc: d\n  condition: spawned_process and "
                      "proc.name = bash\n  output: x %proc.name\n  priority: WARNING\n")
    alone = validate([str(custom)])
    assert alone.results[0].errors[0].msg == "Undefined macro 'spawned_process' used in filter."
    base = str(corpus / "falcosecurity-rules/main/falco_rules.yaml")
    together = validate([str(custom)], base=[base])
    assert [r.name for r in together.results] == [base, str(custom)]
    assert together.ok, together.to_text()


def _example(corpus):
    text = (corpus / "falco-output/validate-json-example.txt").read_text()
    rules = text.split("## input file\n", 1)[1].split("\n## stdout", 1)[0]
    stdout = text.split("## stdout (json line)\n", 1)[1].split("\n", 1)[0]
    human = text.split("## human output (without json_output), exit code 1\n", 1)[1]
    human = human.split("\nError: ", 1)[0]
    return rules.rstrip("\n") + "\n", stdout, human


def test_matches_real_falco_json_and_text(corpus, tmp_path, monkeypatch):
    rules, stdout, human = _example(corpus)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/brief_rules.yaml").write_text(rules)
    monkeypatch.chdir(tmp_path)
    report = validate(["tests/brief_rules.yaml"], falco_version="0.40")
    assert report.to_json_text() == stdout
    assert report.to_json() == json.loads(stdout)
    # falco prints the summary with a trailing newline, then "Error: <summary>" on stderr
    assert report.to_text() == human
    assert report.exit_code == 1


def test_same_verdict_under_another_file_name(corpus, tmp_path):
    rules, stdout, _ = _example(corpus)
    path = tmp_path / "other.yaml"
    path.write_text(rules)
    got = validate([str(path)], falco_version="0.40").to_json_text()
    assert got == stdout.replace("tests/brief_rules.yaml", str(path))


def test_folder_is_read_in_name_order(corpus, tmp_path):
    d = tmp_path / "rules.d"
    d.mkdir()
    shutil.copy(corpus / "falcosecurity-rules/main/falco_rules.yaml", d / "00-falco_rules.yaml")
    (d / "50-custom.yml").write_text(
        "- rule: C\n  desc: d\n  condition: spawned_process\n  output: x\n  priority: INFO\n")
    (d / "README.md").write_text("not rules")
    report = validate([str(d)])
    assert [r.name for r in report.results] == [str(d / "00-falco_rules.yaml"),
                                                str(d / "50-custom.yml")]
    assert report.ok
