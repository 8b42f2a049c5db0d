#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Deploy, roll back and inspect Falco rules releases on a host in one module call."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_rules_release
short_description: Stage, validate with the host's falco, switch atomically, reload and check
description:
  - C(action=deploy) receives a whole release (file names and base64 contents) in its arguments,
    so the host gets it with the module itself, without a separate upload. When the active release
    already has the same manifest hash and its live files match the manifest, nothing happens.
  - Otherwise it stages C(<state_dir>/releases/<id>/rules/), runs the host's own
    C(falco -c <config> -o json_output=true -V ...) over the package's rules files followed by the
    staged files (Falco's load order), and refuses the release on any error (and on warnings in
    the release's files when O(fail_on_warnings)). A valid release is switched live by renaming a
    new symlink over O(rules_dir) (one rename(2)); a real O(rules_dir) folder is first adopted
    into a release of its own and swapped with renameat2(RENAME_EXCHANGE).
  - Then it reloads the Falco unit and checks health from what Falco itself offers - its
    journal (the reload's dry run ended without a C(hot restart failure), in text or JSON form,
    and the restart after C(SIGHUP received, restarting...) listed exactly the release's files
    under O(rules_dir)), its unit (active, same MainPID) and its web server when the restart
    started it (C(/healthz) and C(/versions) answer). A failed check switches back to the
    previous release and reloads again; the result says C(rolled_back) with the reason, and
    C(health_checks) says which checks decided.
  - A host whose Falco is not installed, not running (or restarting in a loop), or whose
    O(rules_dir) is missing or a dangling symlink, reports the status C(no_falco),
    C(falco_down) or C(rules_missing) (after a deploy that still went live on disk, too).
  - C(action=rollback) switches to an earlier release (by id or steps back) the same way.
  - C(action=status) only reads (Falco version, engine kind, unit state, active release, drift).
  - Never fails because of a refused or rolled back release (the result says so and the role
    decides). Supports check mode (and diff) for deploy and rollback.
  - Has an action plugin of the same name. C(action=status), and a deploy whose release is
    already live unchanged, are answered by a read-only probe (the host code of
    module_utils/falco_rules_host.py run as a script over the pipelined connection) without this
    module; everything else, and any probe that cannot run, comes here.
options:
  action:
    description: What to do.
    type: str
    choices: [deploy, rollback, status]
    required: true
  release:
    description:
      - The release to deploy (action=deploy), as built by C(falco_rules_bundle) - keys C(id),
        C(created), C(sha256), C(files) (C(name), C(sha256), C(size), C(content) base64),
        C(source), C(falco_deploy_version).
    type: dict
  rollback_to:
    description: Release id to roll back to; empty means use O(rollback_steps).
    type: str
    default: ""
  rollback_steps:
    description: How many releases back from the active one (action=rollback).
    type: int
    default: 1
  keep_releases:
    description: Releases kept on the host; the active and the previous one are never removed.
    type: int
    default: 5
  fail_on_warnings:
    description: Refuse a release when falco -V reports warnings in its files.
    type: bool
    default: true
  base_rules_files:
    description: Rules files Falco loads before O(rules_dir), in order; missing ones are skipped.
    type: list
    elements: path
    default: [/etc/falco/falco_rules.yaml, /etc/falco/falco_rules.local.yaml]
  falco_config:
    description: The host's Falco configuration file, passed to falco -c.
    type: path
    default: /etc/falco/falco.yaml
  rules_dir:
    description:
      - The rules folder Falco loads last; becomes a symlink to the active release.
      - C(deploy) and C(rollback) refuse any other folder than C(/etc/falco/rules.d) unless it is
        in O(allowed_rules_dirs), because a deploy adopts what the folder holds.
    type: path
    default: /etc/falco/rules.d
  allowed_rules_dirs:
    description: Other folders O(rules_dir) may be (the operator's explicit consent).
    type: list
    elements: path
    default: []
  state_dir:
    description: Where releases and the active/previous records live (never watched by Falco).
    type: path
    default: /var/lib/falco-deploy
  service_unit:
    description: Falco unit to reload; empty picks the active (else enabled) package unit.
    type: str
    default: ""
  health_timeout:
    description: Seconds to wait for Falco to finish the reload.
    type: float
    default: 30
  lock_timeout:
    description:
      - Seconds to wait while another deploy or rollback holds this host's lock
        (C(<state_dir>/.lock), which names the holder's pid and start time); then the module fails
        with a message that says so, having changed nothing.
    type: float
    default: 300
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Deploy a release
  falco_rules_release:
    action: deploy
    release: "{{ bundle.release }}"
  register: deploy
"""

RETURN = r"""
result:
  description: The host's report (status - ok, refused, rolled_back, no_falco, falco_down or
    rules_missing -, reason, findings, falco_version, driver, service, falco_state, main_pid,
    restarts, rules_dir_state, health_checks, release, release_sha256, previous_release, drift,
    drift_files, releases, validation, plan).
  returned: always
  type: dict
"""

import difflib
import fcntl
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.falco_deploy.falco.plugins.module_utils.falco_rules_host import (
    DEFAULT_RULES_DIR,
    DEFAULTS,
    Host,
    Refused,
    build_files,
    check_release_id,
    health_status,
    is_live,
    make_dir,
    manifest_hash,
    now_iso,
    release_id,
    report,
    sha256_bytes,
)


class ReleaseModule(AnsibleModule):
    def _log_invocation(self):
        # The default logs every argument to the journal: here that would be the whole release.
        release = self.params.get("release") or {}
        self.log(f"Invoked with action={self.params.get('action')} release={release.get('id', '')}")

    def _return_formatted(self, kwargs):
        # Every result, a failure's too, would otherwise echo the whole release back (megabytes
        # of base64 that ansible-runner then drops from the event, message and all).
        release = self.params.get("release") or {}
        kwargs.setdefault("invocation", {"module_args": {"action": self.params.get("action"),
                                                         "release": release.get("id", "")}})
        super()._return_formatted(kwargs)


def diff_of(before: dict[str, bytes], after: dict[str, bytes], before_dir: str) -> list[dict]:
    diffs = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        diffs.append({
            "before_header": os.path.join(before_dir, name) if old is not None else "/dev/null",
            "after_header": os.path.join(before_dir, name) if new is not None else "/dev/null",
            "before": (old or b"").decode("utf-8", "replace"),
            "after": (new or b"").decode("utf-8", "replace"),
        })
    return diffs


def summary_diff(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """One line per file: add, remove, or change with the number of changed lines."""
    out = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            out.append(f"add {name}")
        elif name not in after:
            out.append(f"remove {name}")
        elif before[name] != after[name]:
            old = before[name].decode("utf-8", "replace").splitlines()
            new = after[name].decode("utf-8", "replace").splitlines()
            count = sum(1 for line in difflib.ndiff(old, new) if line[:1] in "+-")
            out.append(f"change {name} ({count} lines)")
    return out


class Run:
    def __init__(self, module: ReleaseModule) -> None:
        self.m = module
        self.h = Host(module.params)
        self.changed = False
        self.status = "ok"
        self.reason = ""
        self.validation: list[dict] = []
        self.diff: list[dict] = []
        self.plan: list[str] = []

    def result(self) -> dict:
        return report(self.h, self.status, self.reason, self.validation, self.plan,
                      check_mode=self.m.check_mode)

    def refuse(self, reasons: list[str]) -> None:
        self.status = "refused"
        self.reason = reasons[0] + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
        self.h.findings.extend(reasons[1:])

    def check_and_validate(self, files: dict[str, bytes]) -> bool:
        """Validate files in a private temporary folder (check mode). True when valid."""
        tmp = tempfile.mkdtemp(prefix="falco-deploy-check-")
        try:
            for name, data in files.items():
                with open(os.path.join(tmp, name), "wb") as handle:
                    handle.write(data)
            self.validation, reasons = self.h.validate(tmp, list(files))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if reasons:
            self.refuse(reasons)
            return False
        return True

    def go_live(self, rid: str, previous: str, discard_on_failure: bool) -> None:
        """Switch to a validated release, reload, check; switch back on a failed check."""
        h = self.h
        recorded = h.record("previous")
        if previous:
            h.set_record("previous", previous)
        problem = h.reload_and_check(rid)
        self.changed = True
        if not problem:
            return
        self.status = "rolled_back"
        self.reason = problem
        if previous:
            h.checks.append(f"switched back to {previous}:")
            again = h.reload_and_check(previous)
            if again:
                h.findings.append(f"after switching back to {previous}: {again}")
        else:
            # There was no rules folder before: remove the link so Falco loads what it had.
            os.unlink(h.rules_dir)
            os.unlink(os.path.join(h.state_dir, "active"))
            if h.unit_active():
                h.run(["systemctl", "reload", h.unit()])
        if recorded:
            h.set_record("previous", recorded)
        elif os.path.exists(os.path.join(h.state_dir, "previous")):
            os.unlink(os.path.join(h.state_dir, "previous"))
        if discard_on_failure:
            # A release that never ran healthy is not history to roll back to.
            shutil.rmtree(h.release_path(rid), ignore_errors=True)

    def adopt(self, new_id: str) -> str:
        """A real rules folder becomes a release of its own (sorting just before the new one, so
        that one step back leads to it), so nothing in it is lost."""
        h = self.h
        if os.path.islink(h.rules_dir) or not os.path.isdir(h.rules_dir):
            return ""
        entries_on_disk = sorted(os.listdir(h.rules_dir))
        if not entries_on_disk:
            return ""
        files, others = {}, []
        for name in entries_on_disk:
            path = os.path.join(h.rules_dir, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    files[name] = handle.read()
            else:
                others.append(name)
        entries = [{"name": n, "sha256": sha256_bytes(d), "size": len(d)} for n, d in files.items()]
        digest = manifest_hash(entries)
        rid = release_id(digest, before=new_id)
        h.write_release(rid, files)
        if others:
            # Falco reads only a folder's regular files; anything else is kept verbatim beside.
            original = os.path.join(h.release_path(rid), "original")
            shutil.copytree(h.rules_dir, original, symlinks=True)
            for root, dirs, names in os.walk(original):
                for name in dirs + names:
                    path = os.path.join(root, name)
                    if not os.path.islink(path):
                        os.chown(path, 0, 0)
                        os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
        h.write_manifest(rid, {
            "id": rid, "created": now_iso(), "sha256": digest, "files": entries,
            "source": {"git_commit": "", "paths": [h.rules_dir], "adopted": True},
            "falco_deploy_version": "",
        })
        h.findings.append(f"adopted the existing {h.rules_dir} as release {rid}")
        return rid

    def staging_failed(self, rid: str, exc: OSError) -> None:
        """Writing the release failed before the switch (a full disk, a quota): nothing is live
        yet, so the partial release goes and the host fails with the reason."""
        shutil.rmtree(self.h.release_path(rid), ignore_errors=True)
        self.m.fail_json(msg=f"could not write release {rid} in {self.h.releases_dir}: "
                             f"{exc.strerror or exc}; the live rules are unchanged",
)

    # -- actions ----------------------------------------------------------------------------
    def deploy(self) -> None:
        h, release = self.h, self.m.params["release"] or {}
        try:
            files = build_files(release)
        except Refused as exc:
            self.refuse([str(exc)])
            return
        active = h.active()
        if is_live(h, release.get("sha256")):
            return
        before = h.read_files(active) if active else {}
        self.plan = summary_diff(before, files)
        if self.m._diff:
            self.diff = diff_of(before, files, h.rules_dir)
        if not h.falco_bin():
            if self.m.check_mode:
                self.changed = True
                h.findings.append(f"would deploy {release.get('id')} (not validated: falco is not "
                                  "installed yet)")
            else:
                self.status, self.reason = health_status(h)
            return
        if self.m.check_mode:
            self.changed = self.check_and_validate(files)
            return
        rid = release["id"]
        if rid <= active:  # e.g. the same id with drifted files: history must stay in order
            rid = release_id(release["sha256"], after=active)
        try:
            h.write_release(rid, files)
        except OSError as exc:
            self.staging_failed(rid, exc)
        self.validation, reasons = h.validate(h.release_rules(rid), list(files))
        if reasons:
            shutil.rmtree(h.release_path(rid), ignore_errors=True)
            self.refuse(reasons)
            return
        meta = {k: release.get(k) for k in ("created", "sha256", "source", "falco_deploy_version")}
        meta["id"] = rid
        meta["files"] = [{"name": n, "sha256": sha256_bytes(d), "size": len(d)}
                         for n, d in sorted(files.items())]
        try:
            h.write_manifest(rid, meta)
            previous = active or self.adopt(rid)
        except OSError as exc:
            self.staging_failed(rid, exc)
        self.go_live(rid, previous, discard_on_failure=True)
        keep = self.m.params["keep_releases"]
        h.prune(keep, {r for r in (h.active(), h.record("previous")) if r})

    def rollback(self) -> None:
        h, p = self.h, self.m.params
        releases = h.releases()
        active = h.active()
        if p["rollback_to"]:
            target = p["rollback_to"]
            try:
                check_release_id(target)
            except Refused as exc:
                self.refuse([str(exc)])
                return
            if target not in releases:
                self.refuse([f"release {target} does not exist on this host"])
                return
        else:
            if active not in releases:
                self.refuse(["no active release to step back from"])
                return
            index = releases.index(active) - p["rollback_steps"]
            if p["rollback_steps"] < 1 or index < 0:
                self.refuse([f"cannot go {p['rollback_steps']} step(s) back from {active}: "
                             f"{releases.index(active)} older release(s) on this host"])
                return
            target = releases[index]
        if target == active:
            return
        drifted = h.drift(target)
        if drifted:
            self.refuse([f"release {target} was modified on the host: {', '.join(drifted)}"])
            return
        files = h.read_files(target)
        before = h.read_files(active) if active else {}
        self.plan = [f"switch {active or h.rules_dir} -> {target}"] + summary_diff(before, files)
        if self.m._diff:
            self.diff = diff_of(before, files, h.rules_dir)
        if not h.falco_bin():
            self.status, self.reason = health_status(h)
            return
        if self.m.check_mode:
            self.changed = self.check_and_validate(files)
            return
        self.validation, reasons = h.validate(h.release_rules(target), list(files))
        if reasons:
            self.refuse(reasons)
            return
        self.go_live(target, active, discard_on_failure=False)
        h.prune(p["keep_releases"], {r for r in (h.active(), h.record("previous")) if r})


def take_lock(path: str, timeout: float):
    """The host's deploy lock, held while the returned file stays open: (file, "") or (None, why).

    The holder writes its pid and start time into the file so that a waiter can say whom it waits
    for. flock(2) ends with the holder's process, so a killed run never leaves a stale lock."""
    lock = open(path, "a+")  # noqa: SIM115 - stays open (and locked) until the module exits
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.seek(0)
                holder = lock.read(200).strip() or "an unknown process"
                lock.close()
                return None, (f"another deploy or rollback holds {path} ({holder}): waited "
                              f"{timeout:g} s (falco_rules_lock_timeout) and changed nothing")
            time.sleep(0.2)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    lock.flush()
    return lock, ""


def main() -> None:
    module = ReleaseModule(
        argument_spec={
            "action": {"type": "str", "required": True,
                       "choices": ["deploy", "rollback", "status"]},
            "release": {"type": "dict"},
            "rollback_to": {"type": "str", "default": ""},
            "rollback_steps": {"type": "int", "default": 1},
            "keep_releases": {"type": "int", "default": 5},
            "fail_on_warnings": {"type": "bool", "default": DEFAULTS["fail_on_warnings"]},
            "base_rules_files": {"type": "list", "elements": "path",
                                 "default": DEFAULTS["base_rules_files"]},
            "falco_config": {"type": "path", "default": DEFAULTS["falco_config"]},
            "rules_dir": {"type": "path", "default": DEFAULTS["rules_dir"]},
            "state_dir": {"type": "path", "default": DEFAULTS["state_dir"]},
            "service_unit": {"type": "str", "default": DEFAULTS["service_unit"]},
            "health_timeout": {"type": "float", "default": DEFAULTS["health_timeout"]},
            "lock_timeout": {"type": "float", "default": DEFAULTS["lock_timeout"]},
            "allowed_rules_dirs": {"type": "list", "elements": "path", "default": []},
        },
        required_if=[("action", "deploy", ["release"])],
        supports_check_mode=True,
    )
    os.umask(0o022)
    run = Run(module)
    action = module.params["action"]
    started = time.time()
    allowed = [DEFAULT_RULES_DIR, *module.params["allowed_rules_dirs"]]
    if action in ("deploy", "rollback") and \
            os.path.normpath(module.params["rules_dir"]) not in map(os.path.normpath, allowed):
        # A deploy adopts what is in the folder and turns it into a symlink: not for any folder.
        module.fail_json(msg=f"rules_dir {module.params['rules_dir']} is not "
                             f"{DEFAULT_RULES_DIR} nor in allowed_rules_dirs "
                             "(falco_rules_allowed_dirs)")
    if action in ("deploy", "rollback") and not module.check_mode:
        # Two runs against one host (two operators, an overlapping --limit) take turns.
        make_dir(run.h.state_dir)
        # The name keeps the locked file open until the module exits.
        _held_lock, busy = take_lock(os.path.join(run.h.state_dir, ".lock"),
                                     module.params["lock_timeout"])
        if busy:
            module.fail_json(msg=busy)
    if action == "deploy":
        run.deploy()
    elif action == "rollback":
        run.rollback()
    result = run.result()
    result["seconds"] = round(time.time() - started, 3)
    out = {"changed": run.changed, "result": result}
    if run.diff:
        out["diff"] = run.diff
    module.exit_json(**out)


if __name__ == "__main__":
    main()
