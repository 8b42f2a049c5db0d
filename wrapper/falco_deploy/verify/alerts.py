"""Falco JSON alerts: parse the alert lines a `verify` run collected from a host.

Falco writes one JSON object per alert when `json_output: true`. The object always has `time`,
`rule`, `priority`, `source`, `hostname`; `output`, `tags` and `output_fields` depend on the
`json_include_*_property` options, so they are optional here. `time` is the event timestamp
formatted as `%FT%T` plus `.%09luZ`: UTC, nine fraction digits
(falcosecurity/falco userspace/engine/formats.cpp, falco_formats::format_event). The parser takes
any RFC 3339 timestamp and keeps it exact as integer nanoseconds since the epoch (`time_ns`),
because latencies between syscall events and a recorded trigger are sub-millisecond on real hosts
and `datetime` stops at microseconds.

The lines come from Falco's `file_output` file, read on the host from a mark taken at the start
of the run (roles/falco_verify/module_utils/falco_alert_file.py: rotation, truncation and
half-written lines are handled there).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NS_PER_S = 1_000_000_000

# RFC 3339 section 5.6 date-time; "T"/"Z" may be lower case, and section 5.6 allows a space.
_RFC3339 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ]"
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})"
)

# Values Falco prints for a container field it cannot resolve (yet): no usable name or id.
_UNRESOLVED = frozenset({"", "<NA>", "N/A", "null"})

# Errors keep a short excerpt of the bad line: enough to recognise it, never a whole log.
_EXCERPT_CHARS = 200


class AlertLineError(ValueError):
    """A line that is not a Falco JSON alert; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_rfc3339(text: str) -> tuple[datetime, int]:
    """Parse an RFC 3339 timestamp into (aware datetime, exact nanoseconds since the epoch).

    The datetime keeps the timestamp's own offset and is truncated to microseconds; the integer
    is exact to the nanosecond (fraction digits beyond nine are dropped, Falco prints nine).
    """
    match = _RFC3339.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise AlertLineError(f"time {text!r} is not an RFC 3339 timestamp")
    tz_text = match["tz"]
    if tz_text in ("Z", "z"):
        offset = timedelta(0)
    else:
        sign = -1 if tz_text[0] == "-" else 1
        hours, minutes = int(tz_text[1:3]), int(tz_text[4:6])
        if hours > 23 or minutes > 59:
            raise AlertLineError(f"time {text!r} has an invalid UTC offset")
        offset = sign * timedelta(hours=hours, minutes=minutes)
    frac_ns = int((match["frac"] or "")[:9].ljust(9, "0"))
    try:
        stamp = datetime(
            int(match["y"]), int(match["mo"]), int(match["d"]),
            int(match["h"]), int(match["mi"]), int(match["s"]),
            frac_ns // 1000, tzinfo=timezone(offset),
        )
    except ValueError as exc:  # month 13, second 60 (gmtime never yields a leap second) ...
        raise AlertLineError(f"time {text!r} is out of range: {exc}") from None
    whole_seconds = (stamp.replace(microsecond=0) - _EPOCH) // timedelta(seconds=1)
    return stamp, whole_seconds * _NS_PER_S + frac_ns


def format_ns(epoch_ns: int) -> str:
    """Epoch nanoseconds as Falco prints alert times: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`."""
    seconds, frac = divmod(epoch_ns, _NS_PER_S)
    stamp = _EPOCH + timedelta(seconds=seconds)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


@dataclass(frozen=True)
class Alert:
    """One Falco alert. `time_ns` is exact; `time` is the same instant as a datetime (µs)."""

    rule: str
    time: datetime
    time_ns: int
    priority: str | None = None
    source: str | None = None
    hostname: str | None = None
    output: str | None = None
    tags: tuple[str, ...] = ()
    output_fields: Mapping[str, Any] = field(default_factory=dict)
    line_no: int | None = None

    @property
    def container_name(self) -> str | None:
        return _field_text(self.output_fields, "container.name")

    @property
    def container_id(self) -> str | None:
        # container.full_id exists on newer Falco (container plugin); container.id is the 12-char
        # short id on every version.
        return (_field_text(self.output_fields, "container.id")
                or _field_text(self.output_fields, "container.full_id"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "time": format_ns(self.time_ns),
            "priority": self.priority,
            "hostname": self.hostname,
            "container_name": self.container_name,
            "container_id": self.container_id,
            "line_no": self.line_no,
        }


def _field_text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if not isinstance(value, str) or value.strip() in _UNRESOLVED:
        return None
    return value


@dataclass(frozen=True)
class ParseError:
    """A line that could not be read as an alert: counted and reported, never fatal."""

    line_no: int | None
    reason: str
    excerpt: str
    path: str | None = None
    offset: int | None = None  # byte offset of the line in `path`, when read from a file

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line_no": self.line_no, "offset": self.offset,
                "reason": self.reason, "excerpt": self.excerpt}


@dataclass(frozen=True)
class ParsedAlerts:
    alerts: tuple[Alert, ...]
    errors: tuple[ParseError, ...]


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AlertLineError(f"'{key}' is {type(value).__name__}, expected a string")
    return value


def parse_alert_object(obj: Any, line_no: int | None = None) -> Alert:
    """Validate one decoded JSON value as a Falco alert."""
    if not isinstance(obj, dict):
        raise AlertLineError(f"JSON value is {type(obj).__name__}, expected an object")
    missing = [key for key in ("rule", "time") if key not in obj]
    if missing:
        raise AlertLineError("missing " + " and ".join(f"'{key}'" for key in missing))
    rule = obj["rule"]
    if not isinstance(rule, str) or not rule:
        raise AlertLineError("'rule' is not a non-empty string")
    if not isinstance(obj["time"], str):
        raise AlertLineError("'time' is not a string")
    stamp, time_ns = parse_rfc3339(obj["time"])
    tags = obj.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise AlertLineError("'tags' is not a list of strings")
    fields = obj.get("output_fields", {})
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise AlertLineError("'output_fields' is not an object")
    return Alert(
        rule=rule, time=stamp, time_ns=time_ns,
        priority=_optional_str(obj, "priority"), source=_optional_str(obj, "source"),
        hostname=_optional_str(obj, "hostname"), output=_optional_str(obj, "output"),
        tags=tuple(tags), output_fields=fields, line_no=line_no,
    )


def parse_alert_line(line: str, line_no: int | None = None) -> Alert:
    """Parse one line of Falco JSON output; raises AlertLineError with the reason."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise AlertLineError(f"not JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise AlertLineError("not JSON: nested too deeply") from None
    return parse_alert_object(obj, line_no)


def _excerpt(line: str) -> str:
    return line if len(line) <= _EXCERPT_CHARS else line[:_EXCERPT_CHARS] + "..."


def parse_alert_lines(lines: Iterable[str], first_line_no: int = 1,
                      path: str | None = None) -> ParsedAlerts:
    """Parse lines; blank lines are skipped, bad lines become ParseErrors with their number."""
    alerts: list[Alert] = []
    errors: list[ParseError] = []
    for line_no, raw in enumerate(lines, start=first_line_no):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            alerts.append(parse_alert_line(line, line_no))
        except AlertLineError as exc:
            errors.append(ParseError(line_no, exc.reason, _excerpt(line), path))
    return ParsedAlerts(tuple(alerts), tuple(errors))


def _parse_bytes(data: bytes, base_offset: int, first_line_no: int,
                 path: str) -> tuple[list[Alert], list[ParseError], int]:
    """Parse the newline-terminated lines of `data`; returns alerts, errors and the line count.

    Only b"\\n" ends a line (as in mark_end's count): JSON text cannot hold a raw CR or other
    line break, so splitting on anything else would only shift line numbers.
    """
    alerts: list[Alert] = []
    errors: list[ParseError] = []
    lines = data.split(b"\n")[:-1]
    offset = base_offset
    for index, raw in enumerate(lines):
        line_no = first_line_no + index
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if line.strip():
            try:
                alerts.append(parse_alert_line(line, line_no))
            except AlertLineError as exc:
                errors.append(ParseError(line_no, exc.reason, _excerpt(line), path, offset))
        offset += len(raw) + 1
    return alerts, errors, len(lines)


def read_alert_file(path: str | os.PathLike[str]) -> ParsedAlerts:
    """Parse a whole alert file (a fetched copy, a test fixture); a last line without newline
    counts, since nothing will complete it."""
    data = Path(path).read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"
    alerts, errors, _ = _parse_bytes(data, 0, 1, os.fspath(path))
    return ParsedAlerts(tuple(alerts), tuple(errors))
