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
    so the host gets it with the module itself: no separate upload. When the active release
    already has the same manifest hash and its live files match the manifest, nothing happens.
  - Otherwise it stages C(<state_dir>/releases/<id>/rules/), runs the host's own
    C(falco -c <config> -o json_output=true -V ...) over the package's rules files followed by the
    staged files (Falco's load order), and refuses the release on any error (and on warnings in
    the release's files when O(fail_on_warnings)). A valid release is switched live by renaming a
    new symlink over O(rules_dir) (one rename(2)); a real O(rules_dir) folder is first adopted
    into a release of its own and swapped with renameat2(RENAME_EXCHANGE).
  - Then it reloads the Falco unit and checks health (unit active, no C(hot restart failure)
    logged since the switch, the loaded rules are the new ones). A failed check switches back to
    the previous release and reloads again; the result says C(rolled_back) with the reason.
  - C(action=rollback) switches to an earlier release (by id or steps back) the same way.
  - C(action=status) only reads: Falco version, engine kind, unit state, active release, drift.
  - Never fails because of a refused or rolled back release: the result says so and the role
    decides. Supports check mode (and diff) for deploy and rollback.
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
    description: The rules folder Falco loads last; becomes a symlink to the active release.
    type: path
    default: /etc/falco/rules.d
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
  standin_state_file:
    description: State file of the test bed's stand-in falco; read when it exists.
    type: path
    default: /run/falco/standin-state.json
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
  description: The host's report (status, reason, findings, falco_version, driver, service,
    release, release_sha256, previous_release, drift, drift_files, releases, validation).
  returned: always
  type: dict
"""

import base64
import ctypes
import ctypes.util
import difflib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone

from ansible.module_utils.basic import AnsibleModule

# Units of the upstream package (falcosecurity/falco scripts/systemd/*.service), in the order a
# host would normally run them.
FALCO_UNITS = ("falco-modern-bpf.service", "falco-kmod.service", "falco-custom.service")
ENGINE_KIND_FILE = "/etc/falco/config.d/engine-kind-falcoctl.yaml"

# Journal lines of Falco's hot restart (userspace/falco/app/restart_handler.cpp logs
# "hot restart failure" at critical priority and keeps the old rules; a good restart logs the
# start sequence again). Observed on Falco 0.40: "SIGHUP received, restarting...", each rules
# file as "   <path> | schema validation: ok", then "Opening 'syscall' source with ...".
RESTART_FAILURE = "hot restart failure"
RESTART_BEGIN = "SIGHUP received, restarting"
RESTART_DONE = re.compile(r"^Opening '[^']+' source with")
LOADED_FILE = re.compile(r"^\s+(/\S+) \| schema validation:")

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
RENAME_EXCHANGE = 2


class Refused(Exception):
    """The release must not go live; the text is the one-line reason."""


class ReleaseModule(AnsibleModule):
    def _log_invocation(self):
        # The default logs every argument to the journal: here that would be the whole release.
        release = self.params.get("release") or {}
        self.log(f"Invoked with action={self.params.get('action')} release={release.get('id', '')}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_hash(files) -> str:
    """sha256 over `<sha256>  <name>\\n` lines sorted by name (sha256sum's format)."""
    lines = "".join(f"{f['sha256']}  {f['name']}\n" for f in sorted(files, key=lambda f: f["name"]))
    return sha256_bytes(lines.encode("utf-8"))


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


ID_TIME = "%Y%m%dT%H%M%SZ"


def release_id(digest: str, before: str = "", after: str = "") -> str:
    """A new id sorting just before `before` or after `after` (ids from the control node's
    clock), else at the host's current time."""
    stamp = datetime.now(timezone.utc).replace(microsecond=0)
    if before:
        stamp = datetime.strptime(before[:16], ID_TIME) - timedelta(seconds=1)
    elif after:
        stamp = max(stamp.replace(tzinfo=None),
                    datetime.strptime(after[:16], ID_TIME) + timedelta(seconds=1))
    return stamp.strftime(ID_TIME) + "-" + digest[:8]


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.chown(tmp, 0, 0)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_dir(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)
    os.chown(path, 0, 0)


def is_empty_rules(data: bytes) -> bool:
    """No YAML content at all: only blank lines, comments and document markers."""
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and line not in ("---", "..."):
            return False
    return True


class Host:
    def __init__(self, module: ReleaseModule) -> None:
        self.m = module
        p = module.params
        self.rules_dir = p["rules_dir"].rstrip("/")
        self.state_dir = p["state_dir"].rstrip("/")
        self.releases_dir = os.path.join(self.state_dir, "releases")
        self.findings: list[str] = []
        self._unit: str | None = None
        self._unit_state = ""

    # -- commands ---------------------------------------------------------------------------
    def run(self, argv, timeout=120):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  errors="replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, "", str(exc)
        return proc.returncode, proc.stdout, proc.stderr

    # -- Falco facts ------------------------------------------------------------------------
    def falco_bin(self) -> str | None:
        return self.m.get_bin_path("falco")

    def falco_version(self) -> str:
        falco = self.falco_bin()
        if falco:
            rc, out, _ = self.run([falco, "--version"], timeout=30)
            # With json_output set, --version prints one JSON line instead of the text block
            # (falcosecurity/falco userspace/falco/app/actions/print_version.cpp).
            match = re.search(r'^Falco version:\s*(\S+)|"falco_version":\s*"([^"]+)"', out, re.M)
            if rc == 0 and match:
                return match.group(1) or match.group(2)
        rc, out, _ = self.run(["dpkg-query", "--show", "--showformat=${Version}", "falco"])
        return out.strip() if rc == 0 else ""

    def engine_kind(self) -> str:
        # falcoctl writes `engine: {kind: KIND}` here (falcosecurity/falcoctl
        # cmd/driver/config/config.go); falco.yaml's engine.kind applies otherwise.
        for path in (ENGINE_KIND_FILE, self.m.params["falco_config"]):
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            match = re.search(r"^engine:\s*\n(?:\s+.*\n)*?\s+kind:\s*([a-z_]+)", text, re.M)
            if match:
                return match.group(1)
        return ""

    def unit(self) -> str:
        """The unit to reload: the given one, else the active package unit, else an enabled one."""
        if self._unit is not None:
            return self._unit
        wanted = self.m.params["service_unit"]
        units = [wanted] if wanted else list(FALCO_UNITS)
        rc, out, _ = self.run(["systemctl", "show", "--property=Id,ActiveState,SubState,"
                               "UnitFileState", *units])
        blocks = []
        for chunk in out.strip().split("\n\n"):
            props = dict(line.split("=", 1) for line in chunk.splitlines() if "=" in line)
            if props:
                blocks.append(props)
        chosen = {}
        for pick in (lambda b: b.get("ActiveState") == "active",
                     lambda b: b.get("UnitFileState") == "enabled"):
            chosen = next((b for b in blocks if pick(b)), {})
            if chosen:
                break
        if not chosen and wanted and blocks:
            chosen = blocks[0]
        self._unit = chosen.get("Id", "")
        if self._unit:
            self._unit_state = (f"{self._unit} {chosen.get('ActiveState', 'inactive')} "
                                f"({chosen.get('SubState', 'dead')})")
        return self._unit

    def unit_active(self) -> bool:
        unit = self.unit()
        if not unit:
            return False
        rc, out, _ = self.run(["systemctl", "is-active", unit])
        return out.strip() == "active"

    def service_state(self) -> str:
        self.unit()
        return self._unit_state

    # -- releases on disk -------------------------------------------------------------------
    def release_path(self, rid: str) -> str:
        return os.path.join(self.releases_dir, rid)

    def release_rules(self, rid: str) -> str:
        return os.path.join(self.releases_dir, rid, "rules")

    def manifest(self, rid: str) -> dict | None:
        try:
            path = os.path.join(self.release_path(rid), "manifest.json")
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("id") == rid else None

    def releases(self) -> list[str]:
        """Complete releases (with a manifest), oldest first: ids sort by time."""
        try:
            names = os.listdir(self.releases_dir)
        except OSError:
            return []
        return sorted(n for n in names if not n.startswith(".") and self.manifest(n))

    def active(self) -> str:
        """The live release: what the rules_dir symlink points at (the records follow it)."""
        if not os.path.islink(self.rules_dir):
            return ""
        target = os.readlink(self.rules_dir)
        rid = os.path.basename(os.path.dirname(target.rstrip("/")))
        ours = os.path.normpath(target) == os.path.normpath(self.release_rules(rid))
        if ours and self.manifest(rid):
            return rid
        return ""

    def record(self, name: str) -> str:
        try:
            with open(os.path.join(self.state_dir, name), encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def set_record(self, name: str, rid: str) -> None:
        write_atomic(os.path.join(self.state_dir, name), (rid + "\n").encode())

    def drift(self, rid: str) -> list[str]:
        """Live paths whose content, owner or mode differ from the release's manifest."""
        manifest = self.manifest(rid) or {"files": []}
        base = self.release_rules(rid)
        live = self.rules_dir if self.active() == rid else base
        wanted = {f["name"]: f["sha256"] for f in manifest["files"]}
        drifted = []
        try:
            present = sorted(os.listdir(base))
        except OSError:
            present = []
        for name in sorted(set(wanted) | set(present)):
            path = os.path.join(base, name)
            shown = os.path.join(live, name)
            if name not in wanted or not os.path.isfile(path) or os.path.islink(path):
                drifted.append(shown)
                continue
            st = os.stat(path)
            if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, 0, 0o644) \
                    or sha256_file(path) != wanted[name]:
                drifted.append(shown)
        return drifted

    def read_files(self, rid: str) -> dict[str, bytes]:
        out = {}
        for entry in (self.manifest(rid) or {}).get("files", []):
            try:
                with open(os.path.join(self.release_rules(rid), entry["name"]), "rb") as handle:
                    out[entry["name"]] = handle.read()
            except OSError:
                pass
        return out

    def write_release(self, rid: str, files: dict[str, bytes]) -> None:
        """Write a complete release; the manifest is written last and marks it complete."""
        make_dir(self.state_dir)
        make_dir(self.releases_dir)
        final = self.release_path(rid)
        if os.path.exists(final):
            shutil.rmtree(final)
        staging = tempfile.mkdtemp(prefix=f".staging-{rid}-", dir=self.releases_dir)
        os.chmod(staging, 0o755)
        rules = os.path.join(staging, "rules")
        make_dir(rules)
        for name, data in sorted(files.items()):
            write_atomic(os.path.join(rules, name), data)
        os.rename(staging, final)

    def write_manifest(self, rid: str, meta: dict) -> None:
        data = json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(os.path.join(self.release_path(rid), "manifest.json"), data)

    # -- validation -------------------------------------------------------------------------
    def validate(self, rules_dir: str, names: list[str]) -> tuple[list[dict], list[str]]:
        """Run the host's falco -V over the base files and the release's files, in load order.

        Returns the per-file results and the refusal reasons (empty when the set is valid).
        """
        falco = self.falco_bin()
        base = [f for f in self.m.params["base_rules_files"] if os.path.isfile(f)]
        staged = [os.path.join(rules_dir, n) for n in sorted(names)]
        argv = [falco, "-c", self.m.params["falco_config"], "-o", "json_output=true"]
        for path in base + staged:
            argv += ["-V", path]
        rc, out, err = self.run(argv, timeout=300)
        doc = None
        for line in out.splitlines():
            if line.startswith('{"falco_load_results"'):
                try:
                    doc = json.loads(line)
                except ValueError:
                    doc = None
        if doc is None:
            last = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
            return [], [f"falco -V exited {rc} without a JSON result: {last}"]
        reasons: list[str] = []
        results = []
        for res in doc.get("falco_load_results") or []:
            name = res.get("name", "")
            mine = name in staged
            label = os.path.basename(name) if mine else name
            errors = [f"{e.get('code', '')}: {e.get('message', '')}"
                      for e in res.get("errors") or []]
            warnings = [f"{w.get('code', '')}: {w.get('message', '')}"
                        for w in res.get("warnings") or []]
            results.append({"name": name, "successful": bool(res.get("successful")),
                            "errors": errors, "warnings": warnings})
            reasons += [f"{label}: {e}" for e in errors]
            if mine and self.m.params["fail_on_warnings"]:
                reasons += [f"{label}: warning {w}" for w in warnings]
            elif warnings:
                self.findings += [f"{label}: warning {w}" for w in warnings]
        if rc != 0 and not reasons:
            reasons.append(f"falco -V exited {rc}")
        return results, reasons

    # -- switch, reload, health -------------------------------------------------------------
    def switch(self, rid: str) -> None:
        """Point rules_dir at the release with a single rename(2) of a new symlink."""
        parent = os.path.dirname(self.rules_dir)
        if not os.path.isdir(parent):
            make_dir(parent)
        tmp = os.path.join(parent,
                           f".{os.path.basename(self.rules_dir)}.falco-deploy-{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.release_rules(rid), tmp)
        if os.path.isdir(self.rules_dir) and not os.path.islink(self.rules_dir):
            # A real folder cannot be renamed over; swap it with the symlink atomically, then
            # remove it (its files were adopted into a release first).
            if not self._exchange(tmp, self.rules_dir):
                old = tmp + ".old"
                os.rename(self.rules_dir, old)
                os.rename(tmp, self.rules_dir)
                tmp = old
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, self.rules_dir)

    @staticmethod
    def _exchange(a: str, b: str) -> bool:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = getattr(libc, "renameat2", None)
        if fn is None:
            return False
        at_fdcwd = -100
        return fn(at_fdcwd, a.encode(), at_fdcwd, b.encode(), RENAME_EXCHANGE) == 0

    def journal(self, unit: str, cursor: str | None, since: float) -> tuple[list[str], str | None]:
        argv = ["journalctl", "-u", unit, "--no-pager", "-o", "json"]
        argv += [f"--after-cursor={cursor}"] if cursor else [f"--since=@{int(since) - 1}"]
        _, out, _ = self.run(argv)
        lines, last = [], cursor
        for raw in out.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            msg = entry.get("MESSAGE")
            if isinstance(msg, list):  # journald stores non-UTF-8 text as a byte array
                msg = bytes(msg).decode("utf-8", "replace")
            lines.append(str(msg or ""))
            last = entry.get("__CURSOR", last)
        return lines, last

    def journal_cursor(self, unit: str) -> str | None:
        _, out, _ = self.run(["journalctl", "-u", unit, "--no-pager", "-o", "json", "-n", "1"])
        for raw in out.splitlines():
            try:
                return json.loads(raw).get("__CURSOR")
            except ValueError:
                continue
        return None

    def standin_state(self) -> dict | None:
        try:
            with open(self.m.params["standin_state_file"], encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def reload_and_check(self, rid: str) -> str:
        """Switch to `rid`, reload Falco and prove it runs the release; "" when healthy."""
        unit = self.unit()
        running = bool(unit) and self.unit_active()
        cursor = self.journal_cursor(unit) if running else None
        since = time.time()
        since_iso = datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="milliseconds")
        self.switch(rid)
        self.set_record("active", rid)
        if not running:
            self.findings.append(f"{unit or 'no Falco unit'} is not running: the release is "
                                 "live on disk and loads when Falco starts")
            return ""
        # The exit code proves nothing: a failed hot restart keeps the process up (shared corpus
        # README, Falco 0.40), so the journal and the loaded set are what count.
        self.run(["systemctl", "reload", unit])
        wanted = sorted((f["name"], f["sha256"]) for f in self.manifest(rid)["files"])
        deadline = time.time() + self.m.params["health_timeout"]
        lines: list[str] = []
        while True:
            new, cursor = self.journal(unit, cursor, since)
            lines += new
            failure = next((ln for ln in lines if RESTART_FAILURE in ln), None)
            if failure:
                detail = failure.split(RESTART_FAILURE, 1)[1].lstrip(": ").splitlines()
                return "Falco refused the reload: " + (detail[0] if detail else RESTART_FAILURE)
            verdict = self._restart_verdict(lines, wanted)
            state = self.standin_state()
            state_verdict = self._standin_verdict(state, since_iso, wanted) if state else "ok"
            if verdict is not None and state_verdict is not None:
                if verdict:
                    return verdict
                if state_verdict != "ok":
                    return state_verdict
                if not self.unit_active():
                    return f"{unit} is not active after the reload"
                return ""
            if time.time() > deadline:
                timeout = self.m.params["health_timeout"]
                return f"Falco did not finish a reload within {timeout:g} s of the switch"
            time.sleep(0.1)

    def _restart_verdict(self, lines: list[str], wanted) -> str | None:
        """None while no restart has completed since the switch; "" when the journal shows the
        release's files loaded (or does not list files); otherwise the mismatch."""
        begin = max((i for i, ln in enumerate(lines) if RESTART_BEGIN in ln), default=-1)
        if begin < 0:
            return None
        tail = lines[begin:]
        if not any(RESTART_DONE.match(ln) for ln in tail):
            return None
        prefix = self.rules_dir + "/"
        listed = [m.group(1) for m in map(LOADED_FILE.match, tail) if m]
        if not listed:
            return ""
        names = sorted(p[len(prefix):] for p in listed if p.startswith(prefix))
        expected = [n for n, _ in wanted]
        if names != expected:
            return f"Falco loaded {names or 'no files'} from {self.rules_dir}, expected {expected}"
        return ""

    def _standin_verdict(self, state: dict, since_iso: str, wanted) -> str | None:
        """The stand-in's state file: None until a reload finished after the switch."""
        last = state.get("last_reload") or {}
        if not last or str(last.get("at", "")) < since_iso:
            return None
        if last.get("result") != "ok":
            detail = str(last.get("error") or "").splitlines()
            return "Falco refused the reload: " + (detail[0] if detail else "failed")
        prefix = self.rules_dir + "/"
        loaded = sorted((f["path"][len(prefix):], f["sha256"]) for f in state.get("rules_files", [])
                        if f.get("path", "").startswith(prefix))
        if loaded != wanted:
            return "Falco runs other rules than the release (sha256 of the loaded files differ)"
        return "ok"

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        removed = []
        try:
            names = os.listdir(self.releases_dir)
        except OSError:
            return removed
        complete = self.releases()
        for name in names:
            # Leftovers of an interrupted run: staging folders and releases without a manifest.
            if name.startswith(".staging-") or (name not in complete and name not in protect):
                shutil.rmtree(os.path.join(self.releases_dir, name), ignore_errors=True)
        excess = [r for r in complete if r not in protect][: max(0, len(complete) - keep)]
        for rid in excess:
            shutil.rmtree(self.release_path(rid), ignore_errors=True)
            removed.append(rid)
        return removed


def build_files(release: dict) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in release.get("files") or []:
        name = str(entry.get("name", ""))
        if not SAFE_NAME.match(name):
            raise Refused(f"unsafe rules file name {name!r}")
        data = base64.b64decode(entry.get("content", ""))
        if sha256_bytes(data) != entry.get("sha256"):
            raise Refused(f"{name}: content does not match its sha256 (damaged in transfer)")
        if is_empty_rules(data):
            raise Refused(f"{name}: empty rules file (no rules, macros or lists)")
        files[name] = data
    if not files:
        raise Refused("the release has no rules files")
    if manifest_hash([{"name": n, "sha256": sha256_bytes(d)} for n, d in files.items()]) \
            != release.get("sha256"):
        raise Refused("the release's manifest hash does not match its files")
    return files


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
        self.h = Host(module)
        self.changed = False
        self.status = "ok"
        self.reason = ""
        self.validation: list[dict] = []
        self.diff: list[dict] = []
        self.plan: list[str] = []

    def result(self) -> dict:
        h = self.h
        active = h.active()
        manifest = h.manifest(active) if active else None
        drift = h.drift(active) if active else (
            [h.rules_dir] if os.path.isdir(h.rules_dir) and os.listdir(h.rules_dir) else [])
        return {
            "status": self.status,
            "reason": self.reason,
            "findings": h.findings,
            "falco_version": h.falco_version(),
            "driver": h.engine_kind(),
            "service": h.service_state(),
            "release": active,
            "release_sha256": (manifest or {}).get("sha256", ""),
            "previous_release": h.record("previous") if active else "",
            "drift": bool(drift),
            "drift_files": drift,
            "releases": h.releases(),
            "validation": self.validation,
            "plan": self.plan,
        }

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

    # -- actions ----------------------------------------------------------------------------
    def deploy(self) -> None:
        h, release = self.h, self.m.params["release"] or {}
        try:
            files = build_files(release)
        except Refused as exc:
            self.refuse([str(exc)])
            return
        active = h.active()
        if active and (h.manifest(active) or {}).get("sha256") == release.get("sha256") \
                and not h.drift(active):
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
                self.status, self.reason = "skipped", "falco is not installed"
            return
        if self.m.check_mode:
            self.changed = self.check_and_validate(files)
            return
        rid = release["id"]
        if rid <= active:  # e.g. the same id with drifted files: history must stay in order
            rid = release_id(release["sha256"], after=active)
        h.write_release(rid, files)
        self.validation, reasons = h.validate(h.release_rules(rid), list(files))
        if reasons:
            shutil.rmtree(h.release_path(rid), ignore_errors=True)
            self.refuse(reasons)
            return
        meta = {k: release.get(k) for k in ("created", "sha256", "source", "falco_deploy_version")}
        meta["id"] = rid
        meta["files"] = [{"name": n, "sha256": sha256_bytes(d), "size": len(d)}
                         for n, d in sorted(files.items())]
        h.write_manifest(rid, meta)
        previous = active or self.adopt(rid)
        self.go_live(rid, previous, discard_on_failure=True)
        keep = self.m.params["keep_releases"]
        h.prune(keep, {r for r in (h.active(), h.record("previous")) if r})

    def rollback(self) -> None:
        h, p = self.h, self.m.params
        releases = h.releases()
        active = h.active()
        if p["rollback_to"]:
            target = p["rollback_to"]
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
            self.refuse(["falco is not installed"])
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


def main() -> None:
    module = ReleaseModule(
        argument_spec={
            "action": {"type": "str", "required": True,
                       "choices": ["deploy", "rollback", "status"]},
            "release": {"type": "dict"},
            "rollback_to": {"type": "str", "default": ""},
            "rollback_steps": {"type": "int", "default": 1},
            "keep_releases": {"type": "int", "default": 5},
            "fail_on_warnings": {"type": "bool", "default": True},
            "base_rules_files": {"type": "list", "elements": "path",
                                 "default": ["/etc/falco/falco_rules.yaml",
                                             "/etc/falco/falco_rules.local.yaml"]},
            "falco_config": {"type": "path", "default": "/etc/falco/falco.yaml"},
            "rules_dir": {"type": "path", "default": "/etc/falco/rules.d"},
            "state_dir": {"type": "path", "default": "/var/lib/falco-deploy"},
            "service_unit": {"type": "str", "default": ""},
            "health_timeout": {"type": "float", "default": 30},
            "standin_state_file": {"type": "path", "default": "/run/falco/standin-state.json"},
        },
        required_if=[("action", "deploy", ["release"])],
        supports_check_mode=True,
    )
    os.umask(0o022)
    run = Run(module)
    action = module.params["action"]
    started = time.time()
    if action in ("deploy", "rollback") and not module.check_mode:
        # Two runs against one host (two operators, an overlapping --limit) take turns.
        make_dir(run.h.state_dir)
        lock = open(os.path.join(run.h.state_dir, ".lock"), "a")  # noqa: SIM115
        fcntl.flock(lock, fcntl.LOCK_EX)
    if action == "deploy":
        run.deploy()
    elif action == "rollback":
        run.rollback()
    result = run.result()
    result["seconds"] = round(time.time() - started, 3)
    # Without an explicit invocation the result would echo the whole release back.
    release_id_arg = (module.params["release"] or {}).get("id", "")
    out = {"changed": run.changed, "result": result,
           "invocation": {"module_args": {"action": action, "release": release_id_arg}}}
    if run.diff:
        out["diff"] = run.diff
    module.exit_json(**out)


if __name__ == "__main__":
    main()
