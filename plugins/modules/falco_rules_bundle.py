#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Documentation of falco_rules_bundle; the work is done by its action plugin on the control node
(plugins/action/falco_rules_bundle.py): it reads local files only, so no module runs anywhere."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_rules_bundle
short_description: Validate rules files offline and read them into one release
description:
  - An action plugin that works on the control node only (use C(run_once)).
  - First the offline gate; the set (files in name order, the order Falco reads one rules
    folder) is loaded after O(base) by falco-deploy's offline validator, which gives the
    verdicts of C(falco -V) of O(falco_version). Any error, or a warning in the set's own
    files when O(fail_on_warnings), fails the task with the validator's report (as C(falco -V)
    prints it) in C(msg), and no release is built.
  - Then reads every
    C(*.yaml) and C(*.yml) regular file of each source folder (not recursive, like Falco's rules
    folders) and each source file, in the order given, and returns them as one release with its
    manifest hash, a time-sortable id and the git commit of the sources when they are in a git
    work tree. Relative paths are relative to the playbook's folder.
  - Fails on a missing source, a name given twice, or no file at all.
  - The validator is the copy of C(falco_deploy.rules_engine) this collection carries, else
    the installed falco-deploy Python package's; it needs PyYAML on the control node.
options:
  sources:
    description: Rules files and folders on the control node.
    type: list
    elements: path
    required: true
  falco_version:
    description: Falco version whose rule language and fields the set is checked against.
    type: str
    choices: ["0.44", "0.40"]
    default: "0.44"
  base:
    description:
      - Rules files loaded before the set, in order. Empty loads the upstream
        C(falco_rules.yaml) of O(falco_version), shipped with the validator.
    type: list
    elements: path
    default: []
  fail_on_warnings:
    description: Refuse the set when its own files have warnings (the base's do not count).
    type: bool
    default: true
  project_dir:
    description: The falco-deploy project folder (its version goes into the manifest).
    type: path
    default: ""
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Build the release
  falco_rules_bundle:
    sources: [rules/]
  run_once: true
  register: bundle
"""

RETURN = r"""
validation:
  description: The gate's verdict - ok, falco_version, base, files, allow_warnings and
    falco_load_results (the JSON of C(falco -V -o json_output=true)).
  returned: always, unless a source is missing
  type: dict
release:
  description: id, created, sha256, files (name, sha256, size, content base64), source
    (git_commit, paths), falco_deploy_version.
  returned: success
  type: dict
"""
