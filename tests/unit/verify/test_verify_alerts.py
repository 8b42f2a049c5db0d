"""Parsing Falco JSON alert lines, on the real Falco 0.40 corpus."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from falco_deploy.verify.alerts import (
    AlertLineError,
    format_ns,
    parse_alert_line,
    parse_alert_lines,
    parse_rfc3339,
    read_alert_file,
)


def test_every_corpus_line_parses(corpus, corpus_objects):
    assert len(corpus.alerts) == len(corpus_objects) == 22
    assert corpus.errors == ()
    assert [alert.line_no for alert in corpus.alerts] == list(range(1, 23))
    assert [alert.rule for alert in corpus.alerts] == [obj["rule"] for obj in corpus_objects]


def test_alert_time_is_exact_to_the_nanosecond(corpus):
    # Falco puts the same event timestamp into output_fields as evt.time (integer ns): the
    # RFC 3339 parse must agree with it on every real line, to the last digit.
    for alert in corpus.alerts:
        assert alert.time_ns == int(alert.output_fields["evt.time"])
    first = corpus.alerts[0]
    assert first.time == datetime(2026, 11, 29, 19, 8, 13, 133668, tzinfo=timezone.utc)
    assert first.time.utcoffset() == timedelta(0)
    assert first.time_ns % 1_000_000_000 == 133668249


def test_alert_fields_of_a_real_line(corpus):
    alert = corpus.alerts[18]  # line 19: cat /etc/shadow
    assert alert.rule == "Read sensitive file untrusted"
    assert alert.priority == "Warning"
    assert alert.source == "syscall"
    assert alert.hostname == "vm"
    assert "maturity_stable" in alert.tags
    assert alert.container_name == "purple-20261129T190808-17793-06_sensitive_read"
    assert alert.container_id == "20f67026d07a"
    assert alert.output.startswith("19:08:26.358391578: Warning")


def test_times_that_share_a_microsecond_stay_ordered(corpus):
    # Lines 6-9 are setns calls a few hundred ns apart: only time_ns keeps them apart.
    ns = [alert.time_ns for alert in corpus.alerts[5:9]]
    assert ns == sorted(ns) and len(set(ns)) == 4
    assert ns[1] - ns[0] == 1773  # 19:08:15.705573544 - 19:08:15.705571771


@pytest.mark.parametrize("key", ["output", "tags", "output_fields", "hostname", "priority",
                                 "source"])
def test_optional_keys_may_be_missing(corpus_objects, key):
    obj = dict(corpus_objects[0])
    del obj[key]
    alert = parse_alert_line(json.dumps(obj), line_no=7)
    assert alert.rule == "Detect release_agent File Container Escapes"
    assert alert.line_no == 7
    assert getattr(alert, key) in (None, (), {})


def test_missing_output_fields_means_no_container(corpus_objects):
    obj = dict(corpus_objects[0])
    del obj["output_fields"]
    alert = parse_alert_line(json.dumps(obj))
    assert alert.container_name is None and alert.container_id is None


@pytest.mark.parametrize("value", ["<NA>", "", None])
def test_unresolved_container_name_is_none(corpus_objects, value):
    obj = json.loads(json.dumps(corpus_objects[0]))
    obj["output_fields"]["container.name"] = value
    assert parse_alert_line(json.dumps(obj)).container_name is None


def test_malformed_lines_are_counted_with_line_numbers(corpus_lines):
    no_rule = json.loads(corpus_lines[1])
    del no_rule["rule"]
    no_time = json.loads(corpus_lines[2])
    del no_time["time"]
    bad_time = json.loads(corpus_lines[3])
    bad_time["time"] = "19:08:15.705567364"  # the text-output time prefix, no date
    lines = [
        corpus_lines[0],
        "19:08:13.133668249: Critical Detect an attempt ...",  # json_output: false
        "",
        '["not", "an", "object"]',
        json.dumps(no_rule),
        json.dumps(no_time),
        corpus_lines[4][: len(corpus_lines[4]) // 2],  # cut mid-object
        json.dumps(bad_time),
        corpus_lines[5],
    ]
    parsed = parse_alert_lines(lines)
    assert [alert.line_no for alert in parsed.alerts] == [1, 9]
    errors = {error.line_no: error.reason for error in parsed.errors}
    assert sorted(errors) == [2, 4, 5, 6, 7, 8]
    assert errors[2].startswith("not JSON")
    assert "expected an object" in errors[4]
    assert errors[5] == "missing 'rule'"
    assert errors[6] == "missing 'time'"
    assert errors[7].startswith("not JSON")
    assert "RFC 3339" in errors[8]
    assert all(len(error.excerpt) <= 203 for error in parsed.errors)


@pytest.mark.parametrize("bad", [
    {"rule": "", "time": "2026-11-29T19:08:13Z"},
    {"rule": 5, "time": "2026-11-29T19:08:13Z"},
    {"rule": "r", "time": 1795979293},
    {"rule": "r", "time": "2026-13-29T19:08:13Z"},
    {"rule": "r", "time": "2026-11-29T19:08:60Z"},
    {"rule": "r", "time": "2026-11-29T19:08:13"},  # no offset: not RFC 3339
    {"rule": "r", "time": "2026-11-29T19:08:13Z", "tags": "container"},
    {"rule": "r", "time": "2026-11-29T19:08:13Z", "output_fields": []},
    {"rule": "r", "time": "2026-11-29T19:08:13Z", "priority": 4},
])
def test_invalid_alert_objects(bad):
    with pytest.raises(AlertLineError):
        parse_alert_line(json.dumps(bad))


@pytest.mark.parametrize(("text", "expected_ns"), [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:00.000000001Z", 1),
    ("2026-11-29T19:08:13.133668249Z", 1795979293133668249),
    ("2026-11-29t19:08:13.133668249z", 1795979293133668249),
    ("2026-11-29T20:08:13.133668249+01:00", 1795979293133668249),
    ("2026-11-29T14:38:13.133668249-04:30", 1795979293133668249),
    ("2026-11-29T19:08:13.1Z", 1795979293100000000),
    ("2026-11-29T19:08:13.1336682491234Z", 1795979293133668249),
    ("1969-12-31T23:59:59.5Z", -500000000),
])
def test_rfc3339(text, expected_ns):
    stamp, ns = parse_rfc3339(text)
    assert ns == expected_ns
    assert stamp.tzinfo is not None
    assert stamp == datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(
        microseconds=expected_ns // 1000)


def test_format_ns_round_trips_falco_times(corpus_objects):
    for obj in corpus_objects:
        assert format_ns(parse_rfc3339(obj["time"])[1]) == obj["time"]


def test_read_alert_file_reports_offsets_and_takes_an_unterminated_last_line(tmp_path,
                                                                             corpus_lines):
    path = tmp_path / "events.json"
    path.write_text(corpus_lines[0] + "\n" + "garbage\n" + corpus_lines[1], encoding="utf-8")
    parsed = read_alert_file(path)
    assert [alert.line_no for alert in parsed.alerts] == [1, 3]
    (error,) = parsed.errors
    assert (error.line_no, error.offset, error.path) == (2, len(corpus_lines[0]) + 1, str(path))
