#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Mark the end of Falco's alert file, and later judge the scenario runs by the alerts written
after the mark."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_verify_alerts
short_description: Mark Falco's JSON alert file and judge scenario runs by what Falco detected
description:
  - C(action=mark) records where the alert file ends now (device, inode, offset of the last
    complete line, line count, sha256 of the head); the role's
    module_utils/falco_alert_file.py defines the mark and reads from it.
  - C(action=collect) polls the file from a mark and judges the C(runs) of the scenarios module
    with module_utils/falco_verify_judge.py - an attack is detected when an alert on its
    container carries one of its MITRE techniques, from any rule. It stops when every attack
    that ran is detected (after one more read, for the alerts of the same instant), or after
    C(timeout) seconds. It follows the file across logrotate's rename (it drains the renamed
    file first) and copytruncate (it restarts at the head), and leaves a line Falco is still
    writing for later.
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
  runs:
    description: The run records of falco_verify_scenarios (action=run).
    type: list
    elements: dict
    default: []
  our_rules:
    description: Our rule names; their alerts on benign scenarios are false positives.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds after an attack within which its detection must come, and the longest
      wait.
    type: float
    default: 30
  poll_interval:
    description: Seconds between two reads.
    type: float
    default: 0.5
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
scenarios:
  description: Per scenario (collect only) its status (detected, missed, not_run, clean,
    false_positive), reason, the rules that fired on its container (with latency, whether ours,
    and the matching technique tags), detected_by, ours_fired, and per expected rule of ours
    fired, covered (by another rule) or silent.
  returned: when action is collect
  type: list
  elements: dict
counts:
  description: Scenarios per status (collect only).
  returned: when action is collect
  type: dict
status:
  description: verified, missed, incomplete or not_run (collect only).
  returned: when action is collect
  type: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.falco_deploy.falco.plugins.module_utils.falco_alert_file import (
    beginning,
    mark_end,
    read_since,
)
from ansible_collections.falco_deploy.falco.plugins.module_utils.falco_verify_judge import Judge


def collect(mark, runs, ours, timeout, poll_interval, clock=time.monotonic, sleep=time.sleep):
    judge = Judge(runs, ours, timeout)
    events = []
    deadline = clock() + max(timeout, 0)
    polls = 0
    settled = False
    while True:
        lines, mark, happened = read_since(mark)
        polls += 1
        events += [event for event in happened if event != "missing"]
        for line in lines:
            judge.feed(line)
        if clock() >= deadline:
            break
        if judge.complete and not settled:
            # Every attack is detected; one more read takes the alerts of the same instants
            # (our rule may alert a few milliseconds after upstream's on another event).
            settled = True
            deadline = min(deadline, clock() + poll_interval)
        # With nothing to detect (only benign scenarios) the whole timeout is waited: false
        # positives have as long to show up as detections would.
        sleep(max(min(poll_interval, deadline - clock()), 0))
    return {**judge.results(), "mark": mark, "file_events": events,
            "file_exists": os.path.exists(mark["path"]), "polls": polls}


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["mark", "collect"]},
            "path": {"type": "path", "required": True},
            "mark": {"type": "dict"},
            "runs": {"type": "list", "elements": "dict", "default": []},
            "our_rules": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "float", "default": 30},
            "poll_interval": {"type": "float", "default": 0.5},
        },
        required_if=[("action", "collect", ["mark"])],
        supports_check_mode=True,
    )
    params = module.params
    if params["action"] == "mark":
        mark = mark_end(params["path"])
        module.exit_json(changed=False, mark=mark, file_exists=mark["inode"] is not None)
    mark = dict(beginning(params["path"]), **params["mark"])
    mark["path"] = params["path"]
    result = collect(mark, params["runs"], params["our_rules"], params["timeout"],
                     params["poll_interval"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
