"""The judge's rules, case by case: attribution, techniques, latency from the attack, timeout,
not run, false positives, the catalogue checks. Alert lines are real ones from
../shared/corpus/falco-real-0.40/verify-run with fields changed where a case needs it."""

from __future__ import annotations

import json

import pytest
from verify_support import CONTAINER_IDS, JUDGE, RUN_ID

NS = 1_000_000_000


@pytest.fixture(scope="module")
def real_alert(recorded_lines):
    """The recorded nsenter alert (our rule, T1611) as a dict to vary."""
    return next(json.loads(line) for line in recorded_lines
                if json.loads(line)["rule"] == "Namespace Change via setns to Host"
                and json.loads(line)["output_fields"]["container.id"] == CONTAINER_IDS["nsenter"])


def line(alert: dict, **changes) -> str:
    doc = json.loads(json.dumps(alert))
    fields = changes.pop("fields", {})
    doc["output_fields"].update(fields)
    doc.update(changes)
    return json.dumps(doc)


def nsenter_run(**changes) -> dict:
    run = {"scenario": "nsenter", "kind": "attack", "techniques": ["T1611"],
           "expected_rules": ["Namespace Change via setns to Host"],
           "container_name": f"purple-{RUN_ID}-nsenter", "container_id": CONTAINER_IDS["nsenter"],
           "trigger_ns": None, "trigger_source": None, "not_run_reason": None}
    run.update(changes)
    return run


def judge_one(run, lines, ours=("Namespace Change via setns to Host",), timeout=30.0):
    result = JUDGE.judge_lines([run], ours, timeout, lines)
    return result["scenarios"][0], result


def test_latency_runs_from_the_attack_to_the_alerts_own_time(real_alert):
    alert_ns = JUDGE.parse_time_ns(real_alert["time"])
    run = nsenter_run(trigger_ns=alert_ns - 31_250_000, trigger_source="attack")
    scenario, _ = judge_one(run, [line(real_alert)])
    assert scenario["status"] == "detected"
    assert scenario["latency_s"] == 0.031
    assert scenario["trigger"] == JUDGE.format_ns(alert_ns - 31_250_000)
    assert scenario["reason"] == "detected by Namespace Change via setns to Host after 0.031 s"


def test_an_alert_after_the_timeout_is_no_detection(real_alert):
    alert_ns = JUDGE.parse_time_ns(real_alert["time"])
    run = nsenter_run(trigger_ns=alert_ns - 12 * NS, trigger_source="attack")
    scenario, result = judge_one(run, [line(real_alert)], timeout=10)
    assert scenario["status"] == "missed"
    assert scenario["reason"] == ("no alert with T1611 on its container within 10 s (first "
                                  "after 12.000 s); silent: Namespace Change via setns to Host")
    assert result["status"] == "missed"
    # On the boundary it counts.
    scenario, _ = judge_one(run, [line(real_alert)], timeout=12)
    assert scenario["status"] == "detected"


@pytest.mark.parametrize(("tags", "technique", "detected"), [
    (["T1611"], "T1611", True),
    (["T1059.004"], "T1059", True),  # a sub-technique of the scenario's technique
    (["T1003"], "T1003.008", True),  # the parent technique of the scenario's
    (["T1610"], "T1611", False),
    (["T16111"], "T1611", False),
    ([], "T1611", False),  # json_include_tags_property off: nothing to judge by
])
def test_a_detection_is_an_alert_carrying_the_technique(real_alert, tags, technique, detected):
    run = nsenter_run(techniques=[technique], expected_rules=["Other rule"])
    scenario, _ = judge_one(run, [line(real_alert, tags=tags)], ours=["Other rule"])
    assert (scenario["status"] == "detected") is detected
    expected = scenario["expected"][0]
    assert expected["status"] == ("covered" if detected else "silent")


def test_an_unresolved_name_falls_back_to_the_recorded_id(real_alert):
    full = CONTAINER_IDS["nsenter"] + "0" * 52
    alert = line(real_alert, fields={"container.name": None})
    assert judge_one(nsenter_run(container_id=full), [alert])[0]["status"] == "detected"
    # A resolved name of another container is never this scenario's, whatever its id.
    other = line(real_alert, fields={"container.name": "purple-20261201T000000-aaaaaa-nsenter"})
    scenario, result = judge_one(nsenter_run(), [other])
    assert scenario["status"] == "missed" and result["alerts_ignored"] == 1


def test_the_host_itself_and_runc_are_never_a_scenario(real_alert):
    lines = [line(real_alert, fields={"container.id": "host", "container.name": "host"}),
             line(real_alert, fields={"container.id": "", "container.name": None})]
    scenario, result = judge_one(nsenter_run(), lines)
    assert scenario["status"] == "missed" and result["alerts_ignored"] == 2


def test_a_scenario_that_did_not_run_is_not_run_with_its_reason(real_alert):
    run = nsenter_run(not_run_reason="the kernel refused a private cgroup v1 hierarchy")
    scenario, result = judge_one(run, [line(real_alert)])
    assert scenario["status"] == "not_run"
    assert scenario["reason"] == "the kernel refused a private cgroup v1 hierarchy"
    assert result["status"] == "not_run"


def test_our_rules_on_benign_activity_are_false_positives(real_alert):
    run = {"scenario": "shell_loop", "kind": "benign", "techniques": [], "expected_rules": [],
           "container_name": f"purple-{RUN_ID}-shell_loop", "container_id": "9e723ead0a08"}
    fields = {"container.name": run["container_name"], "container.id": "9e723ead0a08"}
    upstream = line(real_alert, rule="Terminal shell in container", fields=fields)
    scenario, _ = judge_one(run, [upstream])
    assert scenario["status"] == "clean"
    assert [r["rule"] for r in scenario["rules"]] == ["Terminal shell in container"]
    scenario, result = judge_one(run, [upstream, line(real_alert, fields=fields)])
    assert scenario["status"] == "false_positive"
    assert scenario["reason"] == ("our rules fired on benign activity: Namespace Change via "
                                  "setns to Host")
    assert result["status"] == "verified"


def test_lines_that_are_not_alerts_are_counted(real_alert):
    _, result = judge_one(nsenter_run(), ["not json", "", '{"rule": "x"}', "[1]",
                                          line(real_alert)])
    assert result["parse_errors"] == 3
    assert result["parse_error_samples"][1].startswith("time None is not an RFC 3339 timestamp")


@pytest.mark.parametrize(("counts", "status"), [
    ({"detected": 6, "clean": 4}, "verified"),
    ({"detected": 5, "missed": 1}, "missed"),
    ({"detected": 5, "not_run": 1}, "incomplete"),
    ({"not_run": 10}, "not_run"),
    ({"clean": 1}, "verified"),
    ({"missed": 1, "not_run": 5}, "missed"),
])
def test_host_status(counts, status):
    assert JUDGE.host_status(counts) == status


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-12-01T22:43:26.963551216Z", 1_796_165_006_963_551_216),
    ("2026-12-01T22:43:26Z", 1_796_165_006_000_000_000),
    ("2026-12-01T23:43:26.5+01:00", 1_796_165_006_500_000_000),
])
def test_times_are_exact_to_the_nanosecond(text, ns):
    assert JUDGE.parse_time_ns(text) == ns
    assert JUDGE.format_ns(1_796_165_006_963_551_216) == "2026-12-01T22:43:26.963551216Z"


# -- the catalogue ------------------------------------------------------------------------------


def doc(**scenarios) -> dict:
    return {"version": 1, "scenarios": scenarios}


ATTACK = {"techniques": ["T1611"], "expected_rules": ["R"], "script": "true"}


@pytest.mark.parametrize(("data", "message"), [
    ([], "top level must be a mapping"),
    ({"version": 2}, "unsupported version 2"),
    (doc(), "no scenarios defined"),
    (doc(**{"Bad-Name": ATTACK}), "invalid scenario name"),
    (doc(x={**ATTACK, "extra": 1}), "unknown keys"),
    (doc(x={**ATTACK, "script": ""}), "script must be a shell script"),
    (doc(x={**ATTACK, "techniques": []}), "an attack needs techniques and expected_rules"),
    (doc(x={**ATTACK, "expected_rules": []}), "an attack needs techniques and expected_rules"),
    (doc(x={**ATTACK, "techniques": ["privilege escalation"]}), "not ATT&CK technique ids"),
    (doc(x={**ATTACK, "docker_args": "--privileged"}), "docker_args must be a list"),
    ({"version": 1, "benign": {"b": {"script": "true", "techniques": ["T1611"]}}},
     "a benign scenario has no techniques"),
])
def test_bad_catalogues_are_refused_with_a_reason(data, message):
    with pytest.raises(JUDGE.CatalogueError, match=message):
        JUDGE.check_catalogue(data, "site.yml")


def test_select_keeps_the_order_given_and_refuses_unknown_names(catalogue):
    names = [s["name"] for s in JUDGE.select(catalogue, ["shell_loop", "nsenter", "shell_loop"])]
    assert names == ["shell_loop", "nsenter"]
    assert JUDGE.select(catalogue, []) == catalogue
    with pytest.raises(JUDGE.CatalogueError, match="unknown scenario.*nope; known: release_agent"):
        JUDGE.select(catalogue, ["nope"])
