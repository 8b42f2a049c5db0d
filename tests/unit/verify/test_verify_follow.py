"""Following a Falco file_output file: only new lines, across rotation and truncation."""

from __future__ import annotations

import json
import os

import pytest

from falco_deploy.verify.alerts import AlertFollower, FileMark, mark_end, read_since


def _write(path, lines, mode="a"):
    with open(path, mode, encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


def _rules(batch):
    return [alert.rule for alert in batch.alerts]


@pytest.fixture
def alert_file(tmp_path, corpus_lines):
    path = tmp_path / "events.json"
    _write(path, corpus_lines[:5], mode="w")  # alerts raised before the verify run started
    return path


def test_reads_only_lines_written_after_the_mark(alert_file, corpus_lines, corpus_objects):
    follower = AlertFollower(alert_file)
    assert follower.mark.offset == alert_file.stat().st_size
    assert follower.mark.line_no == 5
    assert follower.poll().alerts == ()

    _write(alert_file, corpus_lines[5:8])
    batch = follower.poll()
    assert _rules(batch) == [obj["rule"] for obj in corpus_objects[5:8]]
    assert [alert.line_no for alert in batch.alerts] == [6, 7, 8]
    assert batch.events == ()
    assert follower.poll().alerts == ()  # nothing twice

    _write(alert_file, corpus_lines[8:9])
    assert [a.time_ns for a in follower.poll().alerts] == [corpus_objects[8]["output_fields"]
                                                           ["evt.time"]]


def test_partial_last_line_waits_for_its_newline(alert_file, corpus_lines):
    follower = AlertFollower(alert_file)
    line = corpus_lines[11]
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(line[:100])
    batch = follower.poll()
    assert batch.alerts == () and batch.errors == ()
    assert batch.pending_bytes == 100
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(line[100:] + "\n")
    batch = follower.poll()
    assert _rules(batch) == ["Mount Launched in Privileged Container"]
    assert batch.pending_bytes == 0 and batch.errors == ()


def test_mark_taken_mid_line_skips_nothing_new(alert_file, corpus_lines):
    # Falco is writing a line when the run starts: the mark stops before it, so the line is
    # read whole once complete (the matcher then drops it: no container of the run existed).
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(corpus_lines[5][:50])
    mark = mark_end(alert_file)
    assert mark.line_no == 5
    with open(alert_file, "a", encoding="utf-8") as handle:
        handle.write(corpus_lines[5][50:] + "\n")
    batch, _ = read_since(mark)
    assert len(batch.alerts) == 1 and batch.errors == ()


def test_rotation_by_rename_drains_the_old_file_then_reads_the_new(alert_file, corpus_lines):
    follower = AlertFollower(alert_file)
    _write(alert_file, corpus_lines[12:13])  # written just before logrotate renames the file
    os.rename(alert_file, alert_file.with_name("events.json.1"))
    _write(alert_file, corpus_lines[13:15], mode="w")  # Falco reopens and creates a new file
    batch = follower.poll()
    assert batch.events == ("rotated", "rotated-drained")
    assert [(a.line_no, a.time_ns) for a in batch.alerts] == [
        (6, 1795979300852375624), (1, 1795979300873486926), (2, 1795979300878457164)]
    assert follower.mark.inode == alert_file.stat().st_ino
    assert follower.mark.line_no == 2
    _write(alert_file, corpus_lines[15:16])
    batch = follower.poll()
    assert batch.events == () and [a.line_no for a in batch.alerts] == [3]


def test_rotation_with_old_file_gone_reads_new_file_from_start(alert_file, corpus_lines):
    follower = AlertFollower(alert_file)
    alert_file.unlink()
    assert follower.poll().events == ("missing",)  # between rename and create
    _write(alert_file, corpus_lines[18:20], mode="w")
    os.utime(alert_file)
    batch = follower.poll()
    # The inode number may be reused by the new file; then the head fingerprint tells them apart.
    assert batch.events in (("rotated",), ("truncated",))
    assert _rules(batch) == ["Read sensitive file untrusted",
                             "Read Sensitive Host File From Container"]


def test_truncation_with_shorter_content_restarts_from_zero(alert_file, corpus_lines):
    follower = AlertFollower(alert_file)
    _write(alert_file, corpus_lines[16:17], mode="w")  # copytruncate, then one new alert
    batch = follower.poll()
    assert batch.events == ("truncated",)
    assert [(a.line_no, a.rule) for a in batch.alerts] == [
        (1, "Redirect STDOUT/STDIN to Network Connection in Container")]


def test_truncation_then_growth_past_the_mark_is_still_detected(alert_file, corpus_lines):
    follower = AlertFollower(alert_file)
    size = alert_file.stat().st_size
    # After copytruncate Falco writes more than the old offset before the next read: same inode,
    # larger size; only the changed head shows the file was truncated.
    new_lines = corpus_lines[13:22]
    _write(alert_file, new_lines, mode="w")
    assert alert_file.stat().st_size > size
    batch = follower.poll()
    assert batch.events == ("truncated",)
    assert len(batch.alerts) == len(new_lines)


def test_file_missing_at_start_is_read_whole_once_created(tmp_path, corpus_lines):
    path = tmp_path / "not-yet.json"
    follower = AlertFollower(path)
    assert follower.mark.inode is None
    assert follower.poll().events == ("missing",)
    _write(path, corpus_lines[:2], mode="w")
    batch = follower.poll()
    assert batch.events == ("appeared",) and len(batch.alerts) == 2


def test_malformed_lines_in_the_file_are_errors_with_line_and_offset(alert_file, corpus_lines):
    follower = AlertFollower(alert_file)
    start = alert_file.stat().st_size
    _write(alert_file, ["Sat Nov 29 19:08:13 2026: Falco internal: syscall event drop",
                        corpus_lines[0], "{\"rule\": \"x\"}"])
    batch = follower.poll()
    assert len(batch.alerts) == 1 and batch.alerts[0].line_no == 7
    assert [(e.line_no, e.offset) for e in batch.errors] == [
        (6, start), (8, start + len(batch.errors[0].excerpt) + 1 + len(corpus_lines[0]) + 1)]
    assert batch.errors[1].reason == "missing 'time'"
    assert batch.errors[0].path == str(alert_file)


def test_mark_round_trips_through_json(alert_file, corpus_lines):
    mark = mark_end(alert_file)
    restored = FileMark.from_dict(json.loads(json.dumps(mark.to_dict())))
    assert restored == mark
    _write(alert_file, corpus_lines[20:22])
    batch, after = read_since(restored)
    assert len(batch.alerts) == 2 and after.offset == alert_file.stat().st_size


def test_beginning_mark_reads_everything(alert_file):
    batch, mark = read_since(FileMark.beginning(alert_file))
    assert len(batch.alerts) == 5 and mark.line_no == 5
