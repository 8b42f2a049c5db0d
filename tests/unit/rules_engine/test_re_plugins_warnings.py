"""Plugin requirements (Falco stops before printing results) and the filter compiler's
condition warnings: details the case files cannot express."""

from __future__ import annotations

from falco_deploy.rules_engine import validate

REQUIRE_CONTAINER = """\
- required_plugin_versions:
    - name: container
      version: 0.1.0
"""
REQUIRE_K8SAUDIT = """\
- required_plugin_versions:
    - name: k8saudit
      version: 0.7.0
      alternatives:
        - name: k8saudit-eks
          version: 0.4.0
"""
RULE = """\
- rule: R
  desc: d
  condition: evt.type = execve and proc.name = proc.pname
  output: "%proc.name"
  priority: WARNING
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_an_unloaded_plugin_stops_falco_0_40(tmp_path):
    # falco validate_rules_files.cpp: check_rules_plugin_requirements() after each file;
    # run_result::fatal -> "Error: ..." and exit 1, no load results printed.
    first = _write(tmp_path, "a.yaml", REQUIRE_CONTAINER)
    second = _write(tmp_path, "b.yaml", RULE)
    report = validate([first, second], falco_version="0.40")
    assert report.fatal == ("Plugin requirement not satisfied, must load one of: "
                            "container (>= 0.1.0)")
    assert not report.ok and report.exit_code == 1
    assert report.to_text() == report.fatal
    # Falco stops at the file whose requirement fails: the next one is never loaded.
    assert [r.name for r in report.results] == [first]
    assert report.results[0].successful


def test_the_message_lists_every_alternative(tmp_path):
    report = validate([_write(tmp_path, "k.yaml", REQUIRE_K8SAUDIT)], falco_version="0.44")
    assert report.fatal == ("Plugin requirement not satisfied, must load one of: "
                            "k8saudit (>= 0.7.0), k8saudit-eks (>= 0.4.0)")


def test_the_0_44_package_loads_the_container_plugin(tmp_path):
    report = validate([_write(tmp_path, "c.yaml", REQUIRE_CONTAINER)], falco_version="0.44")
    assert report.fatal is None and report.ok


def test_a_condition_warning_points_at_the_value(tmp_path):
    report = validate([_write(tmp_path, "r.yaml", RULE)], falco_version="0.40")
    (res,) = report.to_json()["falco_load_results"]
    (warning,) = res["warnings"]
    assert warning["code"] == "LOAD_COMPILE_CONDITION"
    assert warning["message"] == "'proc.pname' may be a valid field misused as a const string value"
    # rule_loader::context(pos, condition, parent): the value's 1-based parser column added to
    # the condition's 0-based column (13, after "  condition: "), as in
    # falco-output/validate-json-example.txt
    condition = "evt.type = execve and proc.name = proc.pname"
    last = warning["context"]["locations"][-1]
    assert last["item_type"] == "condition expression"
    assert last["position"]["column"] == 13 + condition.index("proc.pname") + 1
