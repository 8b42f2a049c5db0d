#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Build a rules release (files, manifest, source commit) on the control node."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_rules_bundle
short_description: Read rules files from control-node folders into one release
description:
  - Runs on the control node (C(delegate_to=localhost), C(run_once)). Reads every C(*.yaml) and
    C(*.yml) regular file of each source folder (not recursive, like Falco's rules folders) and
    each source file, in the order given, and returns them as one release with its manifest
    hash, a time-sortable id and the git commit of the sources when they are in a git work tree.
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
  delegate_to: localhost
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

import base64
import hashlib
import os
import re
import subprocess
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

EXTENSIONS = (".yaml", ".yml")


def manifest_hash(files) -> str:
    """sha256 over `<sha256>  <name>\\n` lines sorted by name (sha256sum's format)."""
    lines = "".join(f"{f['sha256']}  {f['name']}\n" for f in sorted(files, key=lambda f: f["name"]))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def git_commit(paths: list[str]) -> str:
    """HEAD of the work tree holding the first source, with `-dirty` when it has changes."""
    for path in paths:
        folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
        try:
            head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                                  text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        if head.returncode != 0:
            continue
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", "."],
                                capture_output=True, text=True, timeout=20)
        dirty = "-dirty" if status.returncode == 0 and status.stdout.strip() else ""
        return head.stdout.strip() + dirty
    return ""


def project_version(project_dir: str) -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("falco-deploy")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    # A source checkout: a static version, or the file hatch reads it from ([tool.hatch.version]).
    try:
        with open(os.path.join(project_dir, "pyproject.toml"), encoding="utf-8") as handle:
            pyproject = handle.read()
    except OSError:
        return ""
    match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M)
    if match:
        return match.group(1)
    match = re.search(r'^\[tool\.hatch\.version\][^\[]*?^path\s*=\s*"([^"]+)"', pyproject,
                      re.M | re.S)
    if not match:
        return ""
    try:
        with open(os.path.join(project_dir, match.group(1)), encoding="utf-8") as handle:
            found = re.search(r'^__version__\s*=\s*["\']([^"\']+)', handle.read(), re.M)
    except OSError:
        return ""
    return found.group(1) if found else ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sources": {"type": "list", "elements": "path", "required": True},
            "project_dir": {"type": "path", "default": ""},
        },
        supports_check_mode=True,
    )
    paths: list[str] = []
    for source in module.params["sources"]:
        if os.path.isdir(source):
            paths += sorted(os.path.join(source, n) for n in os.listdir(source)
                            if n.endswith(EXTENSIONS) and os.path.isfile(os.path.join(source, n)))
        elif os.path.isfile(source):
            paths.append(source)
        else:
            module.fail_json(msg=f"rules source {source} does not exist on the control node")
    files, seen = [], {}
    for path in paths:
        name = os.path.basename(path)
        if name in seen:
            module.fail_json(msg=f"two rules files named {name}: {seen[name]} and {path} "
                                 "(a rules folder is flat: names must be unique)")
        seen[name] = path
        with open(path, "rb") as handle:
            data = handle.read()
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                      "content": base64.b64encode(data).decode("ascii")})
    if not files:
        module.fail_json(msg="no *.yaml or *.yml rules file in "
                             + ", ".join(module.params["sources"]))
    files.sort(key=lambda f: f["name"])
    digest = manifest_hash(files)
    now = datetime.now(timezone.utc)
    release = {
        "id": now.strftime("%Y%m%dT%H%M%SZ") + "-" + digest[:8],
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": digest,
        "files": files,
        "source": {"git_commit": git_commit(module.params["sources"]),
                   "paths": [os.path.abspath(p) for p in module.params["sources"]]},
        "falco_deploy_version": project_version(module.params["project_dir"]),
    }
    module.exit_json(changed=False, release=release,
                     summary={"id": release["id"], "sha256": digest,
                              "files": [f["name"] for f in files]})


if __name__ == "__main__":
    main()
