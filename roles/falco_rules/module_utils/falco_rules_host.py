# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""The host side of falco_rules_release: releases on disk, Falco facts, validation, switch.

Standard library only, so that the same code runs in two ways: inside the module (Ansible ships
it as ansible.module_utils.falco_rules_host), and on its own as the read-only probe that the
action plugin (action_plugins/falco_rules_release.py) pipes to the host's python3. The probe
answers `status`, and a deploy whose release is already live unchanged, with one command and
no module round trip; everything else goes to the module.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

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


# Module option defaults (the module's argument_spec takes them from here, so the probe reads a
# host exactly as the module does).
DEFAULTS = {
    "base_rules_files": ["/etc/falco/falco_rules.yaml", "/etc/falco/falco_rules.local.yaml"],
    "falco_config": "/etc/falco/falco.yaml",
    "rules_dir": "/etc/falco/rules.d",
    "state_dir": "/var/lib/falco-deploy",
    "service_unit": "",
    "health_timeout": 30.0,
    "fail_on_warnings": True,
    "standin_state_file": "/run/falco/standin-state.json",
}
# Besides PATH, where AnsibleModule.get_bin_path looks (root's tools live in sbin).
SBIN = ("/sbin", "/usr/sbin", "/usr/local/sbin")

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
    """One host's Falco and releases, seen through the module's options (`params`)."""

    def __init__(self, params: dict) -> None:
        self.params = p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
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

    def unit(self) -> str:
        """The unit to reload: the given one, else the active package unit, else an enabled one."""
        if self._unit is not None:
            return self._unit
        wanted = self.params["service_unit"]
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
            if mine and self.params["fail_on_warnings"]:
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
            with open(self.params["standin_state_file"], encoding="utf-8") as handle:
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
        deadline = time.time() + self.params["health_timeout"]
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
                timeout = self.params["health_timeout"]
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




def report(h: Host, status: str = "ok", reason: str = "", validation: list | None = None,
           plan: list | None = None) -> dict:
    """The host's report as the role's tasks and the wrapper read it (the module's `result`)."""
    active = h.active()
    manifest = h.manifest(active) if active else None
    drift = h.drift(active) if active else (
        [h.rules_dir] if os.path.isdir(h.rules_dir) and os.listdir(h.rules_dir) else [])
    return {
        "status": status,
        "reason": reason,
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
