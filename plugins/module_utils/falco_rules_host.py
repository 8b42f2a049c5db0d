# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""The host side of falco_rules_release: releases on disk, Falco facts, validation, switch.

Standard library only, so that the same code runs in two ways: inside the module (Ansible ships
it as ansible.module_utils.falco_rules_host), and on its own as the read-only probe that the
action plugin (plugins/action/falco_rules_release.py) pipes to the host's python3. The probe
answers `status`, and a deploy whose release is already live unchanged, with one command and
no module round trip; everything else goes to the module.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

# Units of the upstream package (falcosecurity/falco scripts/systemd/*.service), in the order a
# host would normally run them.
FALCO_UNITS = ("falco-modern-bpf.service", "falco-kmod.service", "falco-custom.service")
ENGINE_KIND_FILE = "/etc/falco/config.d/engine-kind-falcoctl.yaml"

# What Falco writes to its unit's journal (through syslog: the units send stdout to null), as
# recorded from a real Falco 0.40 (../shared/corpus/falco-real-0.40/ of the project's test bed):
# - every reload (SIGHUP, or a change seen by watch_config_files) starts with a dry run that logs
#   `Falco version: ...`, the configuration files and `Loading rules from:` with every rules file
#   (falcosecurity/falco userspace/falco/app/restart_handler.cpp runs it before any restart);
# - a failed dry run emits the internal event "Falco internal: hot restart failure" through the
#   outputs: the text `<time>: Critical Falco internal: hot restart failure: <report> ()`, or with
#   json_output a JSON document with that `rule` and `"source": "internal"`
#   (userspace/falco/falco_outputs.cpp, handle_msg); the old rules stay loaded;
# - a passed dry run is followed by `SIGHUP received, restarting...` (logged for every hot restart,
#   userspace/falco/app/actions/process_events.cpp) and the whole start sequence again, with
#   `Loading rules from:` listing the files now loaded, `Starting health webserver with
#   threadiness N, listening on ADDR:PORT` when the web server is on, and
#   `Opening '<source>' source with ...` last; the process (MainPID) stays the same.
RESTART_FAILURE_RULE = "Falco internal: hot restart failure"
RESTART_BEGIN = "SIGHUP received, restarting"
DRY_RUN_BEGIN = "Falco version:"
RULES_LIST = "Loading rules from:"
RESTART_DONE = re.compile(r"^Opening '[^']+' source with")
LOADED_FILE = re.compile(r"^\s+(/\S+) \| schema validation:")
WEBSERVER = re.compile(r"^Starting health webserver with threadiness \d+, listening on (\S+):(\d+)")
# A location in Falco's error report: `(<file>:<line>:<column>)`; a quoted name is a condition.
REPORT_LOCATION = re.compile(r'\((?P<name>[^"()][^()]*?):(?P<line>\d+):(?P<col>\d+)\)\s*$')

# Names a rules file may have in a release, and release ids (YYYYMMDDTHHMMSSZ-<sha256[:8]>).
# Always used with fullmatch: `$` would also accept a trailing newline.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")
# The live rules folder may only be this (or one the operator allowed explicitly): a deploy turns
# it into a symlink, and adopts what was there.
DEFAULT_RULES_DIR = "/etc/falco/rules.d"
RENAME_EXCHANGE = 2


class Refused(Exception):
    """The release must not go live; the text is the one-line reason."""


# Module option defaults (the module's argument_spec takes them from here, so the probe reads a
# host exactly as the module does).
DEFAULTS = {
    "base_rules_files": ["/etc/falco/falco_rules.yaml", "/etc/falco/falco_rules.local.yaml"],
    "falco_config": "/etc/falco/falco.yaml",
    "rules_dir": "/etc/falco/rules.d",
    "state_dir": "/var/lib/falco-deploy",
    "service_unit": "",
    "health_timeout": 30.0,
    "lock_timeout": 300.0,
    "fail_on_warnings": True,
}
# Besides PATH, where AnsibleModule.get_bin_path looks (root's tools live in sbin).
SBIN = ("/sbin", "/usr/sbin", "/usr/local/sbin")

def _number(text) -> int:
    return int(text) if str(text or "").isdigit() else 0


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


def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET a path of Falco's web server on this host: (status, body), or (0, why) when nothing
    answered. Plain HTTP first; a server with webserver.ssl_enabled gets HTTPS without
    certificate checks (it is this host's own Falco over loopback)."""
    last = ""
    for scheme in ("http", "https"):
        if scheme == "http":
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=ssl._create_unverified_context())
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return answer.status, answer.read(4096).decode("utf-8", "replace")
        except ConnectionRefusedError as exc:
            return 0, f"connection refused ({exc.strerror or exc})"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
    return 0, last


def _json_field(body: str, key: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get(key) or "") if isinstance(doc, dict) else ""


# -- reading Falco's journal -------------------------------------------------------------------
# An entry is {"ident": syslog identifier ("falco", "systemd"), "pid": int or None, "message"}.
JOURNAL_TEXT_LINE = re.compile(
    r"^\S+ \S+ (?P<ident>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$")


def journal_entry(record: dict) -> dict:
    """An entry from one `journalctl -o json` record."""
    msg = record.get("MESSAGE")
    if isinstance(msg, list):  # journald stores non-UTF-8 text as a byte array
        msg = bytes(msg).decode("utf-8", "replace")
    pid = str(record.get("_PID") or record.get("SYSLOG_PID") or "")
    return {"ident": str(record.get("SYSLOG_IDENTIFIER") or record.get("_COMM") or ""),
            "pid": int(pid) if pid.isdigit() else None, "message": str(msg or "")}


def journal_entries_from_text(text: str) -> list[dict]:
    """Entries from `journalctl -o short-iso` text (how the recordings are kept)."""
    entries = []
    for line in text.splitlines():
        match = JOURNAL_TEXT_LINE.match(line)
        if match:
            entries.append({"ident": match["ident"],
                            "pid": int(match["pid"]) if match["pid"] else None,
                            "message": match["message"]})
        elif entries and line.strip():  # a message with several lines
            entries[-1]["message"] += "\n" + line
    return entries


def restart_failure(message: str) -> str | None:
    """The error report of a hot restart failure in its text or JSON form, else None."""
    text = message.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("rule") != RESTART_FAILURE_RULE:
            return None
        detail = str(doc.get("output") or "")
    elif RESTART_FAILURE_RULE in text:
        detail = text
    else:
        return None
    detail = detail.split(RESTART_FAILURE_RULE, 1)[-1].lstrip(":").strip()
    # The text form ends with the (empty) output fields: ` ()`.
    return detail[:-2].rstrip() if detail.endswith("()") else detail


def report_summary(report: str) -> str:
    """One line from Falco's error report: where (the innermost file location) and what (the
    error codes and messages), e.g. `/etc/falco/rules.d/x.yaml:2:13: LOAD_ERR_COMPILE_CONDITION
    (Error compiling condition): filter_check called with nonexistent field nosuch.field`."""
    lines = [ln.strip() for ln in report.splitlines() if ln.strip()]
    where = ""
    for line in lines:
        match = REPORT_LOCATION.search(line)
        if match:
            where = f"{match['name']}:{match['line']}:{match['col']}"
    codes = [ln for ln in lines if re.match(r"^LOAD_[A-Z_]+ ", ln)]
    what = "; ".join(codes) or (lines[0] if lines else "no details")
    return f"{where}: {what}" if where else what


def reload_outcomes(entries: list[dict]) -> tuple[list[dict], bool, int | None]:
    """The reloads Falco finished in these journal entries, in order.

    Returns (outcomes, pending, reload_at): each outcome is {"ok", "detail", "loaded" (files the
    restart listed), "webserver" ("ADDR:PORT" or ""), "start" (index of its dry run's first
    line)};
    `pending` is True while a dry run or restart is still under way; `reload_at` is the index of
    systemd's `Reloading ...` line (the first `systemctl reload` in these entries), or None.
    An outcome belongs to that reload when it starts after that line; a dry run that began
    earlier judged files as they were before.
    """
    outcomes: list[dict] = []
    state, start, loaded, webserver, listing = "", 0, [], "", False
    reload_at = None
    for index, entry in enumerate(entries):
        msg = entry["message"]
        if entry["ident"] == "systemd":
            if msg.startswith("Reloading") and reload_at is None:
                reload_at = index
            continue
        failure = restart_failure(msg)
        if failure is not None:
            # A dry run that fails on the configuration fails before it logs anything
            # (userspace/falco/app/actions/load_config.cpp logs `Falco version:` once the
            # configuration is read): its failure line is its only line.
            outcomes.append({"ok": False, "detail": failure, "loaded": [], "webserver": "",
                             "start": start if state == "check" else index})
            state = ""
            continue
        if msg.startswith(RESTART_BEGIN):
            # A restart belongs to the dry run before it (a watch_config_files reload whose dry
            # run began before these entries starts at its SIGHUP line).
            start = start if state == "check" else index
            state, loaded, webserver, listing = "restart", [], "", False
            continue
        if msg.startswith(DRY_RUN_BEGIN) and state != "restart":
            state, start = "check", index
            continue
        if state != "restart":
            continue
        if msg.strip() == RULES_LIST:
            listing = True
            continue
        match = LOADED_FILE.match(msg)
        if listing and match:
            loaded.append(match.group(1))
            continue
        listing = False
        match = WEBSERVER.match(msg)
        if match:
            webserver = f"{match.group(1)}:{match.group(2)}"
        elif RESTART_DONE.match(msg):
            outcomes.append({"ok": True, "detail": "", "loaded": loaded, "webserver": webserver,
                             "start": start})
            state = ""
    return outcomes, bool(state), reload_at


def last_webserver(entries: list[dict]) -> str:
    """ADDR:PORT of the web server the last (re)start in these entries started, or ""."""
    address, pid = "", None
    for entry in entries:
        msg = entry["message"]
        if entry["ident"] == "systemd":
            continue
        if msg.startswith((RESTART_BEGIN, "SIGINT received")) or entry["pid"] != pid:
            address, pid = "", entry["pid"]
        match = WEBSERVER.match(msg)
        if match:
            address = f"{match.group(1)}:{match.group(2)}"
    return address


class Host:
    """One host's Falco and releases, seen through the module's options (`params`)."""

    def __init__(self, params: dict) -> None:
        self.params = p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        self.rules_dir = p["rules_dir"].rstrip("/")
        self.state_dir = p["state_dir"].rstrip("/")
        self.releases_dir = os.path.join(self.state_dir, "releases")
        self.findings: list[str] = []
        self._unit_facts: dict | None = None
        # How the last reload was judged, one line per check (reported as `health_checks`).
        self.checks: list[str] = []

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
        path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
        return shutil.which("falco", path=path)

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
        for path in (ENGINE_KIND_FILE, self.params["falco_config"]):
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            match = re.search(r"^engine:\s*\n(?:\s+.*\n)*?\s+kind:\s*([a-z_]+)", text, re.M)
            if match:
                return match.group(1)
        return ""

    def unit_facts(self, refresh: bool = False) -> dict:
        """The Falco unit and its state: the given unit, else the package unit that is active,
        else one that is restarting, else the enabled one (empty `unit` when there is none)."""
        if self._unit_facts is not None and not refresh:
            return self._unit_facts
        wanted = self.params["service_unit"] or (self._unit_facts or {}).get("unit", "")
        units = [wanted] if wanted else list(FALCO_UNITS)
        _, out, _ = self.run(["systemctl", "show", "--property=Id,LoadState,ActiveState,"
                              "SubState,UnitFileState,MainPID,NRestarts", *units])
        blocks = []
        for chunk in out.strip().split("\n\n"):
            props = dict(line.split("=", 1) for line in chunk.splitlines() if "=" in line)
            if props.get("Id"):
                blocks.append(props)
        chosen: dict = {}
        for pick in (lambda b: b.get("ActiveState") == "active",
                     lambda b: b.get("ActiveState") == "activating",
                     lambda b: b.get("UnitFileState") == "enabled"):
            chosen = next((b for b in blocks if pick(b)), {})
            if chosen:
                break
        if not chosen and wanted and blocks:
            chosen = blocks[0]
        loaded = chosen.get("LoadState", "loaded") != "not-found"
        self._unit_facts = {
            "unit": chosen.get("Id", "") if loaded else "",
            "active": chosen.get("ActiveState", "inactive"),
            "sub": chosen.get("SubState", "dead"),
            "main_pid": _number(chosen.get("MainPID")),
            "restarts": _number(chosen.get("NRestarts")),
        }
        return self._unit_facts

    def unit(self) -> str:
        return self.unit_facts()["unit"]

    def unit_active(self) -> bool:
        facts = self.unit_facts(refresh=True)
        return bool(facts["unit"]) and facts["active"] == "active"

    def service_state(self) -> str:
        facts = self.unit_facts()
        return f"{facts['unit']} {facts['active']} ({facts['sub']})" if facts["unit"] else ""

    def falco_state(self) -> tuple[str, str]:
        """running, restarting (a crash loop), stopped or missing (no Falco installed), and why
        when not running."""
        facts = self.unit_facts()
        if not self.falco_bin():
            return "missing", "no falco binary on this host (Falco is not installed)"
        if not facts["unit"]:
            return "stopped", ("no Falco unit is active or enabled ("
                               + ", ".join(FALCO_UNITS) + ")")
        state = f"{facts['unit']} {facts['active']} ({facts['sub']})"
        if facts["active"] == "active" and facts["sub"] == "running":
            return "running", ""
        # Restart=always: a Falco that cannot start waits in auto-restart between attempts, and
        # systemd gives up (failed, start-limit-hit) after StartLimitBurst attempts.
        if facts["sub"] == "auto-restart" or (facts["active"] in ("failed", "activating")
                                              and facts["restarts"]):
            return "restarting", (f"{state}: restarting in a loop "
                                  f"({facts['restarts']} restarts)")
        return "stopped", f"{state}: Falco is not running"

    def rules_dir_state(self) -> str:
        """release (the symlink to a release), folder, link (to something else), dangling
        (a symlink to nothing) or missing."""
        if os.path.islink(self.rules_dir):
            if not os.path.exists(self.rules_dir):
                return "dangling"
            return "release" if self.active() else "link"
        return "folder" if os.path.isdir(self.rules_dir) else "missing"

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
        try:
            os.chmod(staging, 0o755)
            rules = os.path.join(staging, "rules")
            make_dir(rules)
            for name, data in sorted(files.items()):
                write_atomic(os.path.join(rules, name), data)
            os.rename(staging, final)
        except BaseException:
            # A full disk or a quota must not leave a half-written release behind.
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def write_manifest(self, rid: str, meta: dict) -> None:
        data = json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(os.path.join(self.release_path(rid), "manifest.json"), data)

    # -- validation -------------------------------------------------------------------------
    def validate(self, rules_dir: str, names: list[str]) -> tuple[list[dict], list[str]]:
        """Run the host's falco -V over the base files and the release's files, in load order.

        Returns the per-file results and the refusal reasons (empty when the set is valid).
        """
        falco = self.falco_bin()
        base = [f for f in self.params["base_rules_files"] if os.path.isfile(f)]
        staged = [os.path.join(rules_dir, n) for n in sorted(names)]
        argv = [falco, "-c", self.params["falco_config"], "-o", "json_output=true"]
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
            # Falco compiles the whole set at each file it loads, so an error may be filed under
            # a later file's result: the error's own locations say which file holds it.
            name = res.get("name", "")
            entry = {"name": name, "successful": bool(res.get("successful")), "errors": [],
                     "warnings": []}
            for kind, word in (("errors", ""), ("warnings", "warning ")):
                for item in res.get(kind) or []:
                    where, mine = self._where(item, name, staged)
                    text = f"{where}: {word}{item.get('code', '')}: {item.get('message', '')}"
                    entry[kind].append(text)
                    if not word or (mine and self.params["fail_on_warnings"]):
                        reasons.append(text)
                    else:
                        self.findings.append(text)
            results.append(entry)
        if rc != 0 and not reasons:
            reasons.append(f"falco -V exited {rc}")
        return results, reasons

    @staticmethod
    def _where(item: dict, result_name: str, staged: list[str]) -> tuple[str, bool]:
        """`<file>:<line>:<column>` of one error or warning of falco -V's JSON (line and column
        as Falco prints them), and whether that file is one of the release's; a release file is
        named by its name alone (it is staged elsewhere)."""
        path, position = result_name, ""
        for loc in (item.get("context") or {}).get("locations") or []:
            pos = loc.get("position") or {}
            name = str(pos.get("name") or "")
            if name and not name.startswith('"'):  # a quoted name is a condition, not a file
                path, position = name, f":{pos.get('line', 0)}:{pos.get('column', 0)}"
        mine = path in staged
        return (os.path.basename(path) if mine else path) + position, mine

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

    def journal(self, unit: str, cursor: str | None = None,
                lines: int = 0) -> tuple[list[dict], str | None]:
        """The unit's journal entries after `cursor` (or its last `lines` entries), and the
        cursor of the last one."""
        argv = ["journalctl", "-u", unit, "--no-pager", "-o", "json"]
        argv += [f"--after-cursor={cursor}"] if cursor else [f"--lines={lines}"]
        _, out, _ = self.run(argv)
        entries, last = [], cursor
        for raw in out.splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            entries.append(journal_entry(record))
            last = record.get("__CURSOR", last)
        return entries, last

    def reload_and_check(self, rid: str) -> str:
        """Switch to `rid`, reload Falco and prove from what Falco itself offers (its journal,
        its unit, its web server) that it runs the release; "" when healthy, else why not.
        `self.checks` says which checks decided."""
        unit = self.unit()
        running = bool(unit) and self.unit_active()
        before = dict(self.unit_facts())
        # The last start before the switch says whether Falco runs its web server, and where
        # (the unit's journal also holds alerts when syslog_output is on: read enough of it).
        history, cursor = self.journal(unit, lines=2000) if running else ([], None)
        self.switch(rid)
        self.set_record("active", rid)
        if not running:
            # Nothing to reload: the release loads when Falco starts; the report's status says
            # that Falco is down.
            self.checks.append("not reloaded: Falco is not running")
            return ""
        # The exit code proves nothing: a failed hot restart keeps the process up and
        # `systemctl reload` exits 0 (recorded from Falco 0.40).
        self.run(["systemctl", "reload", unit])
        wanted = sorted(f["name"] for f in self.manifest(rid)["files"])
        timeout = self.params["health_timeout"]
        deadline = time.time() + timeout
        entries: list[dict] = []
        while True:
            new, cursor = self.journal(unit, cursor)
            entries += new
            outcomes, pending, reload_at = reload_outcomes(entries)
            ours = [o for o in outcomes if reload_at is not None and o["start"] > reload_at]
            facts = self.unit_facts(refresh=True)
            if facts["main_pid"] != before["main_pid"] or facts["active"] != "active":
                return (f"{unit} did not stay up during the reload: {facts['active']} "
                        f"({facts['sub']}), MainPID {before['main_pid']} -> {facts['main_pid']}"
                        + self._journal_tail(entries))
            if ours:
                outcome = ours[0]
                self.checks.append(f"journal: the reload that followed `systemctl reload {unit}`")
                break
            if time.time() > deadline:
                if outcomes and not pending:
                    # The switch itself made Falco reload (watch_config_files) and the signal
                    # came while that reload was finishing: judge the reload after the switch.
                    outcome = outcomes[-1]
                    self.checks.append("journal: the reload Falco started by itself after the "
                                       "switch (none followed `systemctl reload`)")
                    break
                if not any(e["ident"] != "systemd" for e in entries):
                    return (f"Falco wrote nothing to the journal of {unit} within {timeout:g} s "
                            "of `systemctl reload`: no reload happened, or Falco does not log "
                            "through syslog (log_syslog: false), so none can be proven")
                return f"Falco did not finish a reload within {timeout:g} s of the switch"
            time.sleep(0.1)
        if not outcome["ok"]:
            return "Falco refused the reload: " + report_summary(outcome["detail"])
        problem = self._loaded_problem(outcome["loaded"], wanted)
        if problem:
            return problem
        self.checks.append(f"unit: {unit} active, MainPID {before['main_pid']} kept")
        return self._webserver_problem(outcome["webserver"], last_webserver(history), deadline)

    def _loaded_problem(self, loaded: list[str], wanted: list[str]) -> str:
        """The files a restart listed from rules_dir, against the release's: "" when the same."""
        prefix = self.rules_dir + "/"
        names = sorted(p[len(prefix):] for p in loaded if p.startswith(prefix))
        if names != wanted:
            return (f"Falco loaded {names or 'no files'} from {self.rules_dir}, expected "
                    f"{wanted}")
        # rules_dir is the release's symlink and the release is complete (manifest written after
        # validation), so the same names are the release's files.
        self.checks.append(f"journal: Falco loaded the release's {len(names)} file(s) from "
                           f"{self.rules_dir}")
        return ""

    def _webserver_problem(self, now: str, before: str, deadline: float) -> str:
        """Falco's web server after a restart (`Starting health webserver ... listening on
        ADDR:PORT`): it must answer /healthz with {"status": "ok"} and /versions with Falco's
        versions. "" when it does, or when it is off."""
        if not now:
            if before:
                return (f"Falco's web server (listening on {before} before the reload) did not "
                        "start again: no `Starting health webserver` line after the restart")
            self.checks.append("web server: off (no `Starting health webserver` line)")
            return ""
        host, port = now.rsplit(":", 1)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")
        if host in ("::", ""):
            host = "::1"
        last = "no answer"
        while True:
            status, body = http_get(host, int(port), "/healthz")
            if status == 200 and _json_field(body, "status") == "ok":
                status, body = http_get(host, int(port), "/versions")
                version = _json_field(body, "falco_version")
                if status == 200 and version:
                    self.checks.append(f"web server: /healthz ok and /versions says Falco "
                                       f"{version} on {host}:{port}")
                    return ""
                last = f"/versions answered {status or 'nothing'}"
            else:
                last = (f"/healthz answered {status}: {body[:80]!r}" if status
                        else f"/healthz: {body}")
            if time.time() > deadline:
                return (f"Falco's web server on {host}:{port} is not healthy after the reload "
                        f"({last})")
            time.sleep(0.2)

    def _journal_tail(self, entries: list[dict], count: int = 3) -> str:
        lines = [e["message"].splitlines()[0] for e in entries if e["message"].strip()][-count:]
        return (": " + " | ".join(lines)) if lines else ""

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


def check_release_id(rid: object) -> str:
    """A release id, or Refused: it becomes a folder name under the releases folder."""
    if not isinstance(rid, str) or not RELEASE_ID.fullmatch(rid):
        raise Refused(f"invalid release id {rid!r} (expected YYYYMMDDTHHMMSSZ-<8 hex>)")
    return rid


def unsafe_name(name: str) -> str | None:
    """Why a rules file may not have this name in a release, or None."""
    if not SAFE_NAME.fullmatch(name):
        return (f"unsafe rules file name {name!r} (letters, digits and . _ + - only, not "
                "starting with . _ + -)")
    return None


def build_files(release: dict) -> dict[str, bytes]:
    check_release_id(release.get("id"))
    files: dict[str, bytes] = {}
    for entry in release.get("files") or []:
        name = str(entry.get("name", ""))
        problem = unsafe_name(name)
        if problem:
            raise Refused(problem)
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




# Statuses that say Falco itself does not protect the host, whatever its rules: the wrapper
# gives each its own verdict (falco_deploy.results).
NO_FALCO, FALCO_DOWN, RULES_MISSING = "no_falco", "falco_down", "rules_missing"


def health_status(h: Host) -> tuple[str, str]:
    """("ok", "") when Falco is installed, running and has its rules folder; otherwise the
    status that says what is wrong and the one-line reason."""
    state, why = h.falco_state()
    if state == "missing":
        return NO_FALCO, why
    if state != "running":
        return FALCO_DOWN, why
    rules = h.rules_dir_state()
    if rules == "dangling":
        return RULES_MISSING, (f"{h.rules_dir} is a dangling symlink (to "
                               f"{os.readlink(h.rules_dir)}): Falco loads no rules from it")
    if rules == "missing":
        return RULES_MISSING, f"{h.rules_dir} does not exist: Falco loads no rules from it"
    return "ok", ""


def report(h: Host, status: str = "ok", reason: str = "", validation: list | None = None,
           plan: list | None = None, check_mode: bool = False) -> dict:
    """The host's report as the role's tasks and the wrapper read it (the module's `result`).

    A run that went well ("ok") still reports a Falco that is missing, not running or without
    its rules folder: a host in that state is not protected, whatever was deployed. Check mode
    keeps "ok" (an install --check has not installed Falco yet)."""
    if status == "ok" and not check_mode:
        status, reason = health_status(h)
    active = h.active()
    manifest = h.manifest(active) if active else None
    drift = h.drift(active) if active else (
        [h.rules_dir] if os.path.isdir(h.rules_dir) and os.listdir(h.rules_dir) else [])
    facts = h.unit_facts()
    return {
        "status": status,
        "reason": reason,
        "findings": h.findings,
        "falco_version": h.falco_version(),
        "driver": h.engine_kind(),
        "service": h.service_state(),
        "falco_state": h.falco_state()[0],
        "main_pid": facts["main_pid"],
        "restarts": facts["restarts"],
        "rules_dir_state": h.rules_dir_state(),
        "health_checks": h.checks,
        "release": active,
        "release_sha256": (manifest or {}).get("sha256", ""),
        "previous_release": h.record("previous") if active else "",
        "drift": bool(drift),
        "drift_files": drift,
        "releases": h.releases(),
        "validation": validation or [],
        "plan": plan or [],
    }


def is_live(h: Host, sha256: str) -> bool:
    """The active release has manifest hash `sha256` and its live files match the manifest:
    a deploy of that release has nothing to do."""
    active = h.active()
    return bool(active) and (h.manifest(active) or {}).get("sha256") == sha256 \
        and not h.drift(active)


def probe(params: dict) -> dict:
    """Read-only: the host's report, and whether the release hashed `want_sha256` is live."""
    started = time.time()
    result = report(Host(params))
    result["seconds"] = round(time.time() - started, 3)
    # is_live, read off the report instead of hashing the live files a second time.
    want = params.get("want_sha256") or ""
    live = bool(want and result["release"]) and result["release_sha256"] == want \
        and not result["drift"]
    return {"live": live, "result": result}


if __name__ == "__main__":
    # The probe: `python3 -I - '<options as JSON>'` with this file on stdin; prints one JSON line.
    print(json.dumps(probe(json.loads(sys.argv[1]))))
