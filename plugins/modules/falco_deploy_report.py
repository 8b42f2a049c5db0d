#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Documentation of falco_deploy_report; the work is done by its action plugin on the control node
(plugins/action/falco_deploy_report.py): no module runs anywhere."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_deploy_report
short_description: Return a host's falco_deploy_result, checked against its contract
description:
  - An action plugin that works on the control node only. Every falco-deploy playbook ends each
    host with one such task; C(falco-deploy) reads the result from the event stream and AWX shows
    it in the job output.
  - The report of a O(kind) has exactly the keys C(status), C(reason), C(findings),
    C(falco_version), C(driver), C(service) plus the kind's own (plugins/module_utils/
    falco_deploy_result.py lists them, with the status values each kind may report). A report
    that does not fit fails the task.
options:
  kind:
    description: Which report this is.
    type: str
    choices: [install, rules, verify, uninstall]
    required: true
  report:
    description: The fields; C(reason), C(findings), C(falco_version), C(driver) and C(service)
      default to empty.
    type: dict
    required: true
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Report the result
  falco_deploy.falco.falco_deploy_report:
    kind: install
    report:
      status: ok
      falco_version: 0.44.0
"""

RETURN = r"""
falco_deploy_result:
  description: The report, in the contract's key order.
  returned: success
  type: dict
"""
