"""The condition evaluator (falco_deploy.rules_engine.evaluate): Falco's operator semantics on
events given field by field, three-valued logic for fields an event lacks, and the fields it
derives exactly from others."""

from __future__ import annotations

import pytest

from falco_deploy.rules_engine.evaluate import RuleSet, RulesLoadError
from falco_deploy.rules_engine.gate import upstream_rules_file


def ruleset(tmp_path, condition: str, extra: str = "", version: str = "0.40") -> RuleSet:
    path = tmp_path / "t.yaml"
    path.write_text(extra + f"""
- rule: T
  desc: t
  condition: {condition}
  output: t %evt.type
  priority: WARNING
""")
    return RuleSet([path], [upstream_rules_file(version)], version)


def verdict(tmp_path, condition: str, event: dict, extra: str = ""):
    rs = ruleset(tmp_path, condition, extra)
    return rs.evaluate(rs.by_name["T"], event)


OPEN = {"evt.type": "openat", "evt.dir": "<"}


@pytest.mark.parametrize(("condition", "value", "expected"), [
    ("fd.name = /etc/shadow", "/etc/shadow", True),
    ("fd.name = /etc/shadow", "/etc/shadowx", False),
    ("fd.name != /etc/shadow", "/etc/passwd", True),
    ("fd.name contains /.ssh/", "/root/.ssh/id_rsa", True),
    ("fd.name icontains /ETC/", "/etc/x", True),
    ("fd.name startswith /etc", "/etcetera", True),
    ("fd.name endswith /release_agent", "/tmp/cg/release_agent", True),
    ("fd.name endswith /release_agent", "/tmp/cg/release_agent.bak", False),
    ("fd.name glob '/home/*/.ssh/*'", "/home/a/.ssh/id_rsa", True),
    ("fd.name glob '/home/*/.ssh/*'", "/root/.ssh/id_rsa", False),
    # glob_match's `*` crosses `/` (sinsp_utils::glob_match, like fnmatch without FNM_PATHNAME)
    ("fd.name glob '/home/*'", "/home/a/b/c", True),
    ("fd.name iglob '/ETC/*'", "/etc/x", True),
    ("fd.name in (/etc/shadow, /etc/gshadow)", "/etc/gshadow", True),
    ("fd.name in (/etc/shadow, /etc/gshadow)", "/etc/passwd", False),
    # pmatch: the path or anything below it, component-wise
    ("fd.name pmatch (/etc, /root)", "/etc/ssh/sshd_config", True),
    ("fd.name pmatch (/etc, /root)", "/etc", True),
    ("fd.name pmatch (/etc, /root)", "/etcx/y", False),
])
def test_string_operators(tmp_path, condition, value, expected):
    assert verdict(tmp_path, f"evt.type = openat and {condition}",
                   {**OPEN, "fd.name": value}).matched is expected


@pytest.mark.parametrize(("condition", "value", "expected"), [
    ("evt.rawres = 0", 0, True),
    ("evt.rawres in (0, 1, 2)", 2, True),
    ("evt.rawres in (0, 1, 2)", 3, False),
    ("evt.rawres >= 0", -6, False),
    ("evt.rawres < 0", -6, True),
    ("evt.rawres != 0", "0", False),  # a number printed as text compares as a number
])
def test_numeric_operators(tmp_path, condition, value, expected):
    assert verdict(tmp_path, f"evt.type = openat and {condition}",
                   {**OPEN, "evt.rawres": value}).matched is expected


def test_booleans_compare_as_values(tmp_path):
    cond = "evt.type = openat and container.privileged = true"
    assert verdict(tmp_path, cond, {**OPEN, "container.privileged": True}).matched is True
    assert verdict(tmp_path, cond, {**OPEN, "container.privileged": False}).matched is False


def test_ip_addresses_and_networks(tmp_path):
    cond = "evt.type = connect and fd.sip = 127.0.0.1"
    ev = {"evt.type": "connect", "fd.sip": "127.0.0.1"}
    assert verdict(tmp_path, cond, ev).matched is True
    assert verdict(tmp_path, cond, {**ev, "fd.sip": "10.0.0.1"}).matched is False
    cond = "evt.type = connect and fd.net = 127.0.0.0/8"
    ev = {"evt.type": "connect", "fd.net": "127.0.0.1"}
    assert verdict(tmp_path, cond, ev).matched is True
    assert verdict(tmp_path, cond, {**ev, "fd.net": "10.0.0.1"}).matched is False


def test_a_field_without_a_value_fails_every_check_exists_and_negations_included(tmp_path):
    # sinsp_filter_check::compare(): no extracted value, no match, whatever the operator
    ev = {**OPEN, "fd.name": None}
    assert verdict(tmp_path, "evt.type = openat and fd.name exists", ev).matched is False
    assert verdict(tmp_path, "evt.type = openat and fd.name != /x", ev).matched is False
    assert verdict(tmp_path, "evt.type = openat and not fd.name = /x", ev).matched is True


def test_a_missing_field_is_unknown_not_false(tmp_path):
    out = verdict(tmp_path, "evt.type = openat and fd.name = /etc/shadow", OPEN)
    assert out.matched is None and out.missing == {"fd.name"}
    # ... and negation keeps it unknown
    out = verdict(tmp_path, "evt.type = openat and not fd.name = /etc/shadow", OPEN)
    assert out.matched is None


def test_kleene_logic_decides_when_the_known_part_is_enough(tmp_path):
    assert verdict(tmp_path, "evt.type = openat and (fd.num = 3 or fd.name = x)",
                   {**OPEN, "fd.num": 3}).matched is True
    assert verdict(tmp_path, "evt.type = openat and fd.num = 3 and fd.name = x",
                   {**OPEN, "fd.num": 4}).matched is False
    assert verdict(tmp_path, "evt.type = openat and fd.num = 3 and fd.name = x",
                   {**OPEN, "fd.num": 3}).matched is None


def test_macros_lists_and_exceptions_resolve_as_the_validator_loads_them(tmp_path):
    extra = """
- list: secrets
  items: [/etc/shadow, /etc/gshadow]
- macro: secret_open
  condition: (evt.type = openat and fd.name in (secrets))
"""
    rs = ruleset(tmp_path, "secret_open", extra)
    rule = rs.by_name["T"]
    assert rs.evaluate(rule, {**OPEN, "fd.name": "/etc/gshadow"}).matched is True
    path = tmp_path / "exc.yaml"
    path.write_text("""
- rule: T
  exceptions:
    - name: cat
      fields: [proc.exepath]
      values: [[/usr/bin/cat]]
  override:
    exceptions: append
""")
    tuned = RuleSet([tmp_path / "t.yaml", path], [upstream_rules_file("0.40")], "0.40")
    ev = {**OPEN, "fd.name": "/etc/gshadow", "proc.exepath": "/usr/bin/cat"}
    assert tuned.evaluate(tuned.by_name["T"], ev).matched is False
    assert tuned.evaluate(tuned.by_name["T"], {**ev, "proc.exepath": "/x"}).matched is True


def test_upstream_never_true_holds_without_evt_num(tmp_path):
    # never_true is (evt.num=0); libsinsp numbers events from 1
    assert verdict(tmp_path, "evt.type = openat and not never_true", OPEN).matched is True


def test_fields_derived_exactly_from_others(tmp_path):
    ev = {"evt.type": "execve", "proc.name": "mount", "proc.cmdline": "mount -t tmpfs none /mnt"}
    assert verdict(tmp_path, "evt.type = execve and proc.args = '-t tmpfs none /mnt'",
                   ev).matched is True
    ev = {"evt.type": "setns", "evt.res": "SUCCESS"}
    assert verdict(tmp_path, "evt.type = setns and evt.rawres = 0", ev).matched is True
    ev = {"evt.type": "setns", "evt.res": "EPERM"}  # not derivable: stays unknown
    assert verdict(tmp_path, "evt.type = setns and evt.rawres = 0", ev).matched is None
    ev = {"evt.type": "connect", "fd.type": "unix"}
    assert verdict(tmp_path, "evt.type = connect and fd.typechar = u", ev).matched is True


def test_list_fields_in_means_all_values_and_intersects_one(tmp_path):
    cond = "evt.type = openat and fd.types[0] in (ipv4, ipv6)"
    assert verdict(tmp_path, cond, {**OPEN, "fd.types[0]": ["ipv4"]}).matched is True
    assert verdict(tmp_path, cond, {**OPEN, "fd.types[0]": ["ipv4", "file"]}).matched is False
    cond = "evt.type = openat and fd.types[0] intersects (ipv4, ipv6)"
    assert verdict(tmp_path, cond, {**OPEN, "fd.types[0]": ["ipv4", "file"]}).matched is True


def test_regex_is_reported_as_not_modelled(tmp_path):
    out = verdict(tmp_path, "evt.type = openat and fd.name regex '^/etc'",
                  {**OPEN, "fd.name": "/etc/x"})
    assert out.matched is None and out.unmodelled == {"regex"}


def test_a_rules_set_that_does_not_load_is_refused(tmp_path):
    with pytest.raises(RulesLoadError, match="nonexistent field"):
        ruleset(tmp_path, "evt.type = openat and no.such.field = 1")


def test_disabled_rules_are_not_evaluated(tmp_path):
    path = tmp_path / "off.yaml"
    path.write_text("""
- rule: Read sensitive file untrusted
  enabled: false
  override:
    enabled: replace
""")
    base = upstream_rules_file("0.40")
    assert "Read sensitive file untrusted" in RuleSet([], [base], "0.40").by_name
    assert "Read sensitive file untrusted" not in RuleSet([path], [base], "0.40").by_name
