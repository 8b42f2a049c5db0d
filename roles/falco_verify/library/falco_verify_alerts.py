#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Mark the end of Falco's alert file, and later collect the alert lines written after the mark."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_verify_alerts
short_description: Mark and read Falco's JSON alert file (file_output)
description:
  - C(action=mark) records where the alert file ends now (device, inode, offset of the last
    complete line, line count, sha256 of the head); the role's
    module_utils/falco_alert_file.py defines the mark and reads from it.
  - C(action=collect) polls the file from a mark until every expected rule was seen on its
    scenario container, or until C(timeout) seconds passed, and returns the lines written since
    the mark that concern the run. It follows the file across logrotate's rename (it drains the
    renamed file first) and copytruncate (it restarts at the head), and leaves a line Falco is
    still writing for later.
  - Changes nothing on the host.
options:
  action:
    description: mark or collect.
    type: str
    required: true
    choices: [mark, collect]
  path:
    description: The alert file (Falco's file_output.filename).
    type: path
    required: true
  mark:
    description: The mark returned by C(action=mark) (collect only).
    type: dict
  run_id:
    description: Lines that name the run id (container purple-<run_id>-...) are returned.
    type: str
  containers:
    description: Container name to container id of the run's scenario containers; lines that
      name one of these ids are returned too (Falco had not resolved the name yet).
    type: dict
    default: {}
  expect:
    description: Container name to the rule names expected on it; collecting stops early once all
      were seen.
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the expected rules.
    type: float
    default: 30
  poll_interval:
    description: Seconds between two reads.
    type: float
    default: 0.5
  max_lines:
    description: At most this many lines are returned (the rest are counted).
    type: int
    default: 5000
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Mark the alert file
  falco_verify_alerts:
    action: mark
    path: /var/log/falco/events.json
  register: mark
"""

RETURN = r"""
mark:
  description: Where reading stopped (path, dev, inode, offset, line_no, head_len, head_sha256).
  returned: always
  type: dict
lines:
  description: Alert lines since the mark that name the run (collect only).
  returned: when action is collect
  type: list
  elements: str
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.falco_alert_file import beginning, mark_end, read_since

_SHORT_ID = 12


def _field(fields, key):
    value = fields.get(key) if isinstance(fields, dict) else None
    return value if isinstance(value, str) and value not in ("", "<NA>", "N/A", "null") else None


def _same_id(alert_id, recorded):
    shorter, longer = sorted((alert_id.lower(), recorded.lower()), key=len)
    return longer.startswith(shorter) if len(shorter) >= _SHORT_ID else shorter == longer


class Collector:
    """Keeps the lines of this run and notes which expected rules were seen on which container."""

    def __init__(self, run_id, containers, expect, max_lines):
        self.run_id = run_id or ""
        self.id_to_name = {cid[:_SHORT_ID]: name for name, cid in containers.items() if cid}
        self.ids = list(self.id_to_name)
        self.expect = {name: set(rules) for name, rules in expect.items()}
        self.seen = {name: set() for name in expect}
        self.max_lines = max_lines
        self.lines = []
        self.dropped = 0  # lines of this run beyond max_lines
        self.other = 0  # alerts of other containers, left on the host

    def feed(self, line):
        try:
            alert = json.loads(line)
        except ValueError:
            alert = None
        ours = (self.run_id and self.run_id in line) or any(cid in line for cid in self.ids)
        if not ours and isinstance(alert, dict):
            self.other += 1
            return
        # A malformed line is kept (the report counts it) unless it is clearly someone else's.
        if len(self.lines) >= self.max_lines:
            self.dropped += 1
        else:
            self.lines.append(line)
        if not isinstance(alert, dict) or not isinstance(alert.get("rule"), str):
            return
        fields = alert.get("output_fields") or {}
        name = (_field(fields, "container.name") or "").lstrip("/")
        if not name:
            cid = _field(fields, "container.id") or _field(fields, "container.full_id") or ""
            name = next((n for recorded, n in self.id_to_name.items()
                         if cid and _same_id(cid, recorded)), "")
        if name in self.seen:
            self.seen[name].add(alert["rule"])

    @property
    def complete(self):
        # With nothing expected (only benign scenarios) the whole timeout is waited: false
        # positives have as long to show up as detections would.
        wanted = [name for name, rules in self.expect.items() if rules]
        return bool(wanted) and all(self.expect[name] <= self.seen[name] for name in wanted)


def collect(mark, run_id, containers, expect, timeout, poll_interval, max_lines,
            clock=time.monotonic, sleep=time.sleep):
    collector = Collector(run_id, containers, expect, max_lines)
    events = []
    deadline = clock() + max(timeout, 0)
    polls = 0
    while True:
        lines, mark, happened = read_since(mark)
        polls += 1
        events += [event for event in happened if event != "missing"]
        for line in lines:
            collector.feed(line)
        if collector.complete or clock() >= deadline:
            break
        sleep(max(min(poll_interval, deadline - clock()), 0))
    return {
        "mark": mark,
        "lines": collector.lines,
        "lines_dropped": collector.dropped,
        "other_alerts": collector.other,
        "seen": {name: sorted(rules) for name, rules in collector.seen.items()},
        "complete": collector.complete,
        "file_events": events,
        "file_exists": os.path.exists(mark["path"]),
        "polls": polls,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["mark", "collect"]},
            "path": {"type": "path", "required": True},
            "mark": {"type": "dict"},
            "run_id": {"type": "str"},
            "containers": {"type": "dict", "default": {}},
            "expect": {"type": "dict", "default": {}},
            "timeout": {"type": "float", "default": 30},
            "poll_interval": {"type": "float", "default": 0.5},
            "max_lines": {"type": "int", "default": 5000},
        },
        required_if=[("action", "collect", ["mark", "run_id"])],
        supports_check_mode=True,
    )
    params = module.params
    if params["action"] == "mark":
        mark = mark_end(params["path"])
        module.exit_json(changed=False, mark=mark, file_exists=mark["inode"] is not None)
    mark = dict(beginning(params["path"]), **params["mark"])
    mark["path"] = params["path"]
    expect = {name: list(rules or []) for name, rules in (params["expect"] or {}).items()}
    containers = {str(name): str(cid or "") for name, cid in params["containers"].items()}
    result = collect(mark, params["run_id"], containers, expect,
                     params["timeout"], params["poll_interval"], params["max_lines"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
