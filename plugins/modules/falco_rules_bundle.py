#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Documentation of falco_rules_bundle; the work is done by its action plugin on the control node
(action_plugins/falco_rules_bundle.py): it reads local files only, so no module runs anywhere."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_rules_bundle
short_description: Read rules files from control-node folders into one release
description:
  - An action plugin that works on the control node only (use C(run_once)). Reads every
    C(*.yaml) and C(*.yml) regular file of each source folder (not recursive, like Falco's rules
    folders) and each source file, in the order given, and returns them as one release with its
    manifest hash, a time-sortable id and the git commit of the sources when they are in a git
    work tree. Relative paths are relative to the playbook's folder.
  - Fails on a missing source, a name given twice, or no file at all.
options:
  sources:
    description: Rules files and folders on the control node.
    type: list
    elements: path
    required: true
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
release:
  description: id, created, sha256, files (name, sha256, size, content base64), source
    (git_commit, paths), falco_deploy_version.
  returned: success
  type: dict
"""
