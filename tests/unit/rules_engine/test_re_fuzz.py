"""Property tests: any YAML or condition gets a verdict with a code, never an exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from falco_deploy.rules_engine import loader
from falco_deploy.rules_engine.catalog import load
from falco_deploy.rules_engine.results import ERROR_STRINGS, WARNING_STRINGS

_TOKENS = st.sampled_from([
    "evt.type", "=", "open", "and", "or", "not", "(", ")", "proc.name", "in", "(a, b)",
    "contains", "val(", "tolower(", "proc.aname[2]", "exists", "'q'", '"', ",", "<", "0x1f",
    "my_macro", "fd.num", ">=", "-1", "glob", "regex", "pmatch", " ", "\n", "[", "]", "\\",
    "container.id", "evt.arg.fd", "len(", "intersects", "startswith", "!=", "=="])


def _check(report_results):
    for res in report_results:
        for m in res.errors:
            assert m.code in ERROR_STRINGS
        for m in res.warnings:
            assert m.code in WARNING_STRINGS
        res.as_json()
        res.as_verbose_string()


def _load(text: str, version: str = "0.44"):
    engine = loader.Engine(load(version))
    from falco_deploy.rules_engine import load_text

    res = load_text(engine, "fuzz.yaml", text)
    _check([res])
    return res


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), st.lists(_TOKENS, max_size=30).map(" ".join)))
def test_any_condition_gets_a_verdict(cond):
    doc = [
        {"macro": "my_macro", "condition": "evt.type = open"},
        {"rule": "R", "desc": "d", "condition": cond, "output": "x %proc.name",
         "priority": "WARNING"},
    ]
    res = _load(yaml.safe_dump(doc))
    if not res.successful:
        assert res.errors[0].code in ERROR_STRINGS


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
                     st.sampled_from(["evt.type = open", "append", "replace", "WARNING",
                                      "proc.name", "0.57.0", "container"]))
_keys = st.sampled_from(["rule", "macro", "list", "items", "condition", "output", "desc",
                         "priority", "enabled", "append", "override", "exceptions", "fields",
                         "comps", "values", "name", "tags", "source", "required_engine_version",
                         "required_plugin_versions", "version", "alternatives", "junk"])
_yaml_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_keys, _yaml_values, max_size=6), max_size=5))
def test_any_rules_structure_gets_a_verdict(items):
    _load(yaml.safe_dump(items))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gets_a_verdict(text):
    _load(text, "0.40")
