"""Following a Falco file_output file: only new lines, across rotation and truncation.

The reader is plugins/module_utils/falco_alert_file.py, which the falco_verify_alerts
module runs on the host; the lines it returns are parsed by the role's judge, as in a real
`verify` run.
"""

from __future__ import annotations

import json
import os

import pytest
from verify_support import JUDGE, role_util

reader = role_util("falco_alert_file")


def _write(path, lines, mode="a"):
    with open(path, mode, encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


class Follower:
    """Poll the file from a mark, as the module's collect loop does."""

    def __init__(self, path, mark=None):
        self.mark = mark if mark is not None else reader.mark_end(str(path))

    def poll(self):
        lines, self.mark, events = reader.read_since(self.mark)
        return lines, events


def parse_alert_lines(lines):
    """(alerts, reasons of the lines that are not alerts), as the judge reads them."""
    alerts, errors = [], []
    for line in lines:
        try:
            alerts.append(JUDGE.parse_alert(line))
        except ValueError as exc:
            errors.append(str(exc))
    return alerts, errors


def _rules(lines):
    return [json.loads(line)["rule"] for line in lines]


@pytest.fixture
def alert_file(tmp_path, corpus_lines):
    path = tmp_path / "events.json"
    _write(path, corpus_lines[:5], mode="w")  # alerts raised before the verify run started
    return path


def test_reads_only_lines_written_after_the_mark(alert_file, corpus_lines, corpus_objects):
    follower = Follower(alert_file)
    assert follower.mark["offset"] == alert_file.stat().st_size
    assert follower.mark["line_no"] == 5
    assert follower.poll() == ([], [])

    _write(alert_file, corpus_lines[5:8])
    lines, events = follower.poll()
    assert _rules(lines) == [obj["rule"] for obj in corpus_objects[5:8]]
    assert events == []
    assert follower.mark["line_no"] == 8
    assert follower.poll() == ([], [])  # nothing twice

    _write(alert_file, corpus_lines[8:9])
    alerts, _ = parse_alert_lines(follower.poll()[0])
    assert [a["time_ns"] for a in alerts] == [corpus_objects[8]["output_fields"]["evt.time"]]


def test_partial_last_line_waits_for_its_newline(alert_file, corpus_lines):
    follower = Follower(alert_file)
    line = corpus_lines[11]
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(line[:100])
    assert follower.poll() == ([], [])
    assert follower.mark["offset"] == alert_file.stat().st_size - 100
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(line[100:] + "\n")
    lines, _ = follower.poll()
    assert _rules(lines) == ["Mount Launched in Privileged Container"]
    assert follower.mark["offset"] == alert_file.stat().st_size


def test_mark_taken_mid_line_skips_nothing_new(alert_file, corpus_lines):
    # Falco is writing a line when the run starts: the mark stops before it, so the line is
    # read whole once complete (the matcher then drops it: no container of the run existed).
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(corpus_lines[5][:50])
    mark = reader.mark_end(str(alert_file))
    assert mark["line_no"] == 5
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(corpus_lines[5][50:] + "\n")
    lines, _, _ = reader.read_since(mark)
    alerts, errors = parse_alert_lines(lines)
    assert len(alerts) == 1 and errors == []


def test_rotation_by_rename_drains_the_old_file_then_reads_the_new(alert_file, corpus_lines):
    follower = Follower(alert_file)
    _write(alert_file, corpus_lines[12:13])  # written just before logrotate renames the file
    os.rename(alert_file, alert_file.with_name("events.json.1"))
    _write(alert_file, corpus_lines[13:15], mode="w")  # Falco reopens and creates a new file
    lines, events = follower.poll()
    assert events == ["rotated", "rotated-drained"]
    assert [a["time_ns"] for a in parse_alert_lines(lines)[0]] == [
        1795979300852375624, 1795979300873486926, 1795979300878457164]
    assert follower.mark["inode"] == alert_file.stat().st_ino
    assert follower.mark["line_no"] == 2
    _write(alert_file, corpus_lines[15:16])
    lines, events = follower.poll()
    assert events == [] and len(lines) == 1


def test_rotation_with_old_file_gone_reads_new_file_from_start(alert_file, corpus_lines):
    follower = Follower(alert_file)
    alert_file.unlink()
    assert follower.poll() == ([], ["missing"])  # between rename and create
    _write(alert_file, corpus_lines[18:20], mode="w")
    os.utime(alert_file)
    lines, events = follower.poll()
    # The inode number may be reused by the new file; then the head fingerprint tells them apart.
    assert events in (["rotated"], ["truncated"])
    assert _rules(lines) == ["Read sensitive file untrusted",
                             "Read Sensitive Host File From Container"]


def test_truncation_with_shorter_content_restarts_from_zero(alert_file, corpus_lines):
    follower = Follower(alert_file)
    _write(alert_file, corpus_lines[16:17], mode="w")  # copytruncate, then one new alert
    lines, events = follower.poll()
    assert events == ["truncated"]
    assert _rules(lines) == ["Redirect STDOUT/STDIN to Network Connection in Container"]
    assert follower.mark["line_no"] == 1


def test_truncation_then_growth_past_the_mark_is_still_detected(alert_file, corpus_lines):
    follower = Follower(alert_file)
    size = alert_file.stat().st_size
    # After copytruncate Falco writes more than the old offset before the next read: same inode,
    # larger size; only the changed head shows the file was truncated.
    new_lines = corpus_lines[13:22]
    _write(alert_file, new_lines, mode="w")
    assert alert_file.stat().st_size > size
    lines, events = follower.poll()
    assert events == ["truncated"]
    assert lines == new_lines


def test_file_missing_at_start_is_read_whole_once_created(tmp_path, corpus_lines):
    path = tmp_path / "not-yet.json"
    follower = Follower(path)
    assert follower.mark["inode"] is None
    assert follower.poll() == ([], ["missing"])
    _write(path, corpus_lines[:2], mode="w")
    lines, events = follower.poll()
    assert events == ["appeared"] and len(lines) == 2


def test_malformed_and_blank_lines(alert_file, corpus_lines):
    # Blank lines are left out; anything else is returned for the judge to count.
    follower = Follower(alert_file)
    _write(alert_file, ["Sat Nov 29 19:08:13 2026: Falco internal: syscall event drop", "",
                        corpus_lines[0], "{\"rule\": \"x\"}"])
    lines, _ = follower.poll()
    assert len(lines) == 3
    alerts, errors = parse_alert_lines(lines)
    assert len(alerts) == 1
    assert errors[0].startswith("not JSON")
    assert errors[1] == "time None is not an RFC 3339 timestamp"
    assert follower.mark["line_no"] == 9  # blank lines still count as lines of the file


def test_mark_round_trips_through_json(alert_file, corpus_lines):
    mark = reader.mark_end(str(alert_file))
    restored = json.loads(json.dumps(mark))
    assert restored == mark
    _write(alert_file, corpus_lines[20:22])
    lines, after, _ = reader.read_since(restored)
    assert len(lines) == 2 and after["offset"] == alert_file.stat().st_size


def test_beginning_mark_reads_everything(alert_file):
    lines, mark, events = reader.read_since(reader.beginning(str(alert_file)))
    assert len(lines) == 5 and mark["line_no"] == 5 and events == ["appeared"]
