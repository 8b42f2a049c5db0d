# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""falco_rules_bundle: validate a rules set offline, then build its release (files, manifest,
source commit) on the control node.

The sources are local files, so this runs in the controller's process: no module, no
connection, nothing to ship (documentation: plugins/modules/falco_rules_bundle.py). The
validation is the gate before any host is touched: whoever runs the playbook (falco-deploy,
plain ansible-playbook, AWX), whatever falco_rules_sources says, a set the validator refuses
fails this task, and the play has no earlier host task.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timezone

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.falco_deploy.falco.plugins.module_utils.falco_rules_host import (
    manifest_hash,  # the hash the host checks a release against
    unsafe_name,  # the host's own file-name rule
)

EXTENSIONS = (".yaml", ".yml")


def check_source_file(path: str) -> None:
    """A regular file, not a link, not too big (the validator's own rule,
    rules_engine.source_problem), with a name the hosts accept; else AnsibleActionFail. A link
    in a rules folder would otherwise be read, printed and shipped to every host."""
    try:
        problem = rules_engine().source_problem(path)
    except OSError as e:
        raise AnsibleActionFail(f"rules source {path}: {e.strerror or e}") from e
    if problem:
        raise AnsibleActionFail(f"rules source {path}: {problem}")
    problem = unsafe_name(os.path.basename(path))
    if problem:
        raise AnsibleActionFail(f"rules source {path}: {problem}")


def read_source(path: str) -> bytes:
    """The file's bytes, opened without following a link and checked again once open."""
    # The validator's limit is the release's too: a release travels base64 in the module
    # arguments to every host.
    limit = rules_engine().MAX_FILE_BYTES
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise AnsibleActionFail(f"rules source {path} changed while it was read")
        return handle.read(limit + 1)


def rules_engine():
    """The offline validator: the copy of falco_deploy.rules_engine this collection carries
    (wrapper/, kept in the tarball by galaxy.yml) so that plugin and validator always come from
    one release; else the installed Python package's (a wheel has no wrapper/).
    The copy is loaded under a private name: it must not shadow an installed falco_deploy."""
    own = os.path.realpath(os.path.join(os.path.dirname(os.path.realpath(__file__)),
                                        os.pardir, os.pardir, "wrapper", "falco_deploy",
                                        "rules_engine"))
    init = os.path.join(own, "__init__.py")
    if not os.path.isfile(init):
        return importlib.import_module("falco_deploy.rules_engine")
    name = "_falco_deploy_rules_engine"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, init,
                                                      submodule_search_locations=[own])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def rules_gate():
    """The validator's gate module (rules_engine/gate.py)."""
    return importlib.import_module(rules_engine().__name__ + ".gate")


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


def collect(sources: list[str]) -> list[str]:
    """The files of the set, in the order Falco loads them from one rules.d folder: by name.
    AnsibleActionFail on a missing source or two files of one name."""
    paths: list[str] = []
    for source in sources:
        if os.path.isdir(source) and not os.path.islink(source):
            for name in sorted(os.listdir(source)):
                path = os.path.join(source, name)
                if name.endswith(EXTENSIONS) and not (os.path.isdir(path)
                                                      and not os.path.islink(path)):
                    check_source_file(path)
                    paths.append(path)
        elif os.path.lexists(source):
            check_source_file(source)
            paths.append(source)
        else:
            raise AnsibleActionFail(f"rules source {source} does not exist on the control node")
    seen: dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path)
        if name in seen:
            raise AnsibleActionFail(f"two rules files named {name}: {seen[name]} and {path} "
                                    "(a rules folder is flat: names must be unique)")
        seen[name] = path
    if not paths:
        raise AnsibleActionFail("no *.yaml or *.yml rules file in " + ", ".join(sources))
    return sorted(paths, key=os.path.basename)


def gate(paths: list[str], falco_version: str, base: list[str], allow_warnings: bool):
    """The offline validation of the set (falco_deploy.rules_engine.gate)."""
    try:
        return rules_gate().check(paths, base, falco_version, allow_warnings)
    except ValueError as e:  # an unknown Falco version
        raise AnsibleActionFail(f"falco_version: {e}") from e


def refusal(checked) -> dict:
    """The task result of a set the gate refused: the validator's report as `falco -V` prints
    it in msg (readable in ansible-playbook's output), its JSON in `validation`."""
    return {"failed": True, "changed": False, "validation": checked.to_dict(),
            "msg": f"{checked.verdict}; no host was touched\n{checked.to_text()}"}


def build_release(sources: list[str], project_dir: str = "",
                  paths: list[str] | None = None) -> dict:
    """The release of these rules files and folders; AnsibleActionFail on a bad source."""
    files = []
    for path in paths if paths is not None else collect(sources):
        name = os.path.basename(path)
        data = read_source(path)
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                      "content": base64.b64encode(data).decode("ascii")})
    files.sort(key=lambda f: f["name"])
    digest = manifest_hash(files)
    now = datetime.now(timezone.utc)
    return {
        "id": now.strftime("%Y%m%dT%H%M%SZ") + "-" + digest[:8],
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": digest,
        "files": files,
        "source": {"git_commit": git_commit(sources),
                   "paths": [os.path.abspath(p) for p in sources]},
        "falco_deploy_version": project_version(project_dir),
    }


def same_release_in_every_batch(release: dict) -> None:
    """Give the release the id and time it had in an earlier batch of this ansible-playbook run.

    `run_once` builds once per batch of a `serial` play, seconds apart; without this, hosts of
    later batches would get the same files under another id. The record lives in the run's own
    local temporary folder, which Ansible removes when the run ends.
    """
    record = os.path.join(C.DEFAULT_LOCAL_TMP, f"falco_rules_bundle-{release['sha256']}.json")
    try:
        with open(record, encoding="utf-8") as handle:
            first = json.load(handle)
        release["id"], release["created"] = first["id"], first["created"]
        return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        with open(record, "w", encoding="utf-8") as handle:
            json.dump({"id": release["id"], "created": release["created"]}, handle)
    except OSError:
        pass  # no record: later batches get their own id, nothing worse


class ActionModule(ActionBase):
    _supports_check_mode = True  # reads local files only
    _supports_async = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars or {})
        args = self._task.args
        unknown = set(args) - {"sources", "project_dir", "falco_version", "base",
                               "fail_on_warnings"}
        if unknown:
            raise AnsibleActionFail(f"unsupported options: {', '.join(sorted(unknown))}")
        sources = args.get("sources")
        if isinstance(sources, str):
            sources = [sources]
        if not sources or not isinstance(sources, list):
            raise AnsibleActionFail("sources: a list of rules files and folders is required")
        # Like a module's `path` options: ~ and $VARS expanded; relative to the playbook's folder.
        base = self._loader.get_basedir()
        sources = [os.path.join(base, os.path.expanduser(os.path.expandvars(str(s))))
                   for s in sources]
        project_dir = os.path.expanduser(str(args.get("project_dir") or ""))
        base_files = args.get("base") or []
        if isinstance(base_files, str):
            base_files = [base_files]
        base_files = [os.path.join(base, os.path.expanduser(str(b))) for b in base_files]
        for path in base_files:
            if not os.path.isfile(path):
                raise AnsibleActionFail(f"base rules file {path} does not exist on the control "
                                        "node")
        paths = collect(sources)
        checked = gate(paths, str(args.get("falco_version") or "0.44"), base_files,
                       allow_warnings=not boolean(args.get("fail_on_warnings", True)))
        validation = checked.to_dict()
        if not checked.ok:
            result.update(refusal(checked))
            return result
        release = build_release(sources, project_dir, paths)
        same_release_in_every_batch(release)
        result.update(changed=False, release=release, validation=validation,
                      summary={"id": release["id"], "sha256": release["sha256"],
                               "files": [f["name"] for f in release["files"]]})
        return result
