#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Take Falco and everything falco-deploy put on a host off it again, in one module call."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_uninstall
short_description: Remove Falco, falco-deploy's files, units state, repository and keyring
description:
  - Works out what is there, then removes it in this order - stops and disables the Falco units
    and unmasks the ones falco-deploy masked; removes O(rules_dir) and O(files); purges the
    O(package) and the packages falco-deploy's first install added (recorded in
    O(package_record)), unless that would take other packages with them; removes the package
    lists apt keeps for the Falco repository of O(files); removes O(alert_file) and
    O(state_dir) (unless kept); removes the folders of O(empty_dirs) that are then empty.
  - Nothing there, nothing done (C(changed=false)). Check mode returns the same plan without
    doing it.
  - Uses only dpkg-query/apt-get (rpm/dnf on the RPM family) and systemctl, so it needs no
    python3-apt on the host (which it may remove, when falco-deploy's install added it).
options:
  package:
    description: The package to purge.
    type: str
    default: falco
  package_record:
    description:
      - The file falco_package wrote at the first install, listing the packages installed
        before it (C(before)) and the ones that install added (C(added)), one name a line.
        Without it only O(package) is removed.
    type: path
    default: /var/lib/falco-deploy/packages
  units:
    description: Units to stop and disable (those not installed are ignored).
    type: list
    elements: str
    default: []
  masked_units:
    description: Units falco-deploy masked; they are unmasked.
    type: list
    elements: str
    default: []
  files:
    description: Files and folders falco-deploy wrote (removed when present).
    type: list
    elements: path
    default: []
  rules_dir:
    description: The live rules folder (a symlink to the active release).
    type: path
    default: /etc/falco/rules.d
  state_dir:
    description: falco-deploy's state (releases, records, the package record).
    type: path
    default: /var/lib/falco-deploy
  keep_releases:
    description: Keep O(state_dir)/releases (everything else of O(state_dir) goes).
    type: bool
    default: false
  alert_file:
    description: The JSON alert log falco_service set up.
    type: path
    default: /var/log/falco/events.json
  keep_alert_log:
    description: Keep O(alert_file) and its folder.
    type: bool
    default: false
  empty_dirs:
    description: Folders removed at the end when empty, in this order.
    type: list
    elements: path
    default: []
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Remove Falco
  falco_deploy.falco.falco_uninstall:
    units: [falco-modern-bpf.service, falcoctl-artifact-follow.service]
    masked_units: [falcoctl-artifact-follow.service]
    files: [/etc/apt/sources.list.d/falcosecurity.list, /etc/apt/keyrings/falcosecurity.asc]
"""

RETURN = r"""
plan:
  description: What was (check mode - would be) done, one line each, in order.
  returned: always
  type: list
  elements: str
kept:
  description: What was left in place and why.
  returned: always
  type: list
  elements: str
"""

import os
import re
import shutil

from ansible.module_utils.basic import AnsibleModule

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


class Host:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.rpm = shutil.which("dpkg-query") is None and shutil.which("rpm") is not None

    def run(self, argv: list[str], check: bool = False) -> tuple[int, str, str]:
        rc, out, err = self.module.run_command(argv, environ_update=APT_ENV)
        if check and rc != 0:
            self.module.fail_json(msg=f"{' '.join(argv)} failed (rc {rc}): {err or out}")
        return rc, out, err

    # -- what is there -------------------------------------------------------------------------
    def installed(self) -> set[str]:
        if self.rpm:
            rc, out, _ = self.run(["rpm", "-qa", "--qf", "%{NAME}\n"])
        else:
            rc, out, _ = self.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n"])
            out = "\n".join(line.split()[0] for line in out.splitlines()
                            if line.endswith(" installed"))
        return set(out.split()) if rc == 0 else set()

    def record(self) -> tuple[set[str] | None, set[str]]:
        """(the packages before falco-deploy's first install, the ones it added)."""
        try:
            with open(self.p["package_record"], encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            return None, set()
        sections: dict[str, set[str]] = {"before": set(), "added": set()}
        current = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
            elif line and current in sections:
                sections[current].add(line)
        return sections["before"] or None, sections["added"]

    def unit_states(self) -> dict[str, dict[str, str]]:
        units = sorted(set(self.p["units"]) | set(self.p["masked_units"]))
        if not units or not shutil.which("systemctl"):
            return {}
        rc, out, _ = self.run(["systemctl", "show", "--property=Id,LoadState,UnitFileState,"
                               "ActiveState", "--", *units])
        states, current = {}, {}
        for line in (out if rc == 0 else "").splitlines() + [""]:
            if not line.strip():
                if current.get("Id"):
                    states[current["Id"]] = current
                current = {}
                continue
            key, _, value = line.partition("=")
            current[key] = value
        return states

    def also_removed(self, wanted: set[str]) -> set[str]:
        """The packages purging `wanted` would remove besides them (their dependents)."""
        if self.rpm:
            rc, out, _ = self.run(["dnf", "-q", "--assumeno", "remove", *sorted(wanted)])
            gone = set(re.findall(r"^\s*(\S+)\s+\S+\s+\S+\s+@", out, re.M))
        else:
            rc, out, _ = self.run(["apt-get", "-s", "purge", *sorted(wanted)])
            gone = set(re.findall(r"^(?:Purg|Remv) (\S+)", out, re.M))
        return gone - wanted

    def apt_lists(self) -> list[str]:
        """The package lists apt keeps for the repositories named in our source files
        (apt's own file names: the URI without its scheme, `/` as `_`)."""
        lists = "/var/lib/apt/lists"
        if self.rpm or not os.path.isdir(lists):
            return []
        prefixes = []
        for path in self.p["files"]:
            if not path.endswith(".list") or not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
                    if match:
                        uri = re.sub(r"^[a-z+]+:(//)?", "", match.group(1)).rstrip("/")
                        prefixes.append(uri.replace("/", "_") + "_")
        if not prefixes:
            return []
        return sorted(os.path.join(lists, name) for name in os.listdir(lists)
                      if any(name.startswith(p) for p in prefixes))


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "package": {"type": "str", "default": "falco"},
            "package_record": {"type": "path", "default": "/var/lib/falco-deploy/packages"},
            "units": {"type": "list", "elements": "str", "default": []},
            "masked_units": {"type": "list", "elements": "str", "default": []},
            "files": {"type": "list", "elements": "path", "default": []},
            "rules_dir": {"type": "path", "default": "/etc/falco/rules.d"},
            "state_dir": {"type": "path", "default": "/var/lib/falco-deploy"},
            "keep_releases": {"type": "bool", "default": False},
            "alert_file": {"type": "path", "default": "/var/log/falco/events.json"},
            "keep_alert_log": {"type": "bool", "default": False},
            "empty_dirs": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    h = Host(module)
    p = module.params
    kept: list[str] = []
    steps: list = []  # (line, action) in order

    # 1. units
    states = h.unit_states()
    units_touched = False
    for unit in p["units"]:
        state = states.get(unit, {})
        if state.get("LoadState") == "not-found":
            continue
        if state.get("ActiveState") in ("active", "activating", "reloading"):
            steps.append((f"stop {unit}", ["systemctl", "stop", unit]))
        if state.get("UnitFileState") in ("enabled", "enabled-runtime", "alias"):
            steps.append((f"disable {unit}", ["systemctl", "disable", unit]))
            units_touched = True
    for unit in p["masked_units"]:
        if states.get(unit, {}).get("UnitFileState") in ("masked", "masked-runtime"):
            steps.append((f"unmask {unit}", ["systemctl", "unmask", unit]))
            units_touched = True

    # 2. files (the apt lists of our repository are found before its source file goes)
    lists = h.apt_lists()
    for path in [p["rules_dir"], *p["files"]]:
        if os.path.lexists(path):
            steps.append((f"remove {path}", path))

    # 3. packages
    installed = h.installed()
    if p["package"] in installed:
        before, added = h.record()
        wanted = {p["package"]}
        if before is not None:
            wanted |= {name for name in added & installed if name not in before}
        others = h.also_removed(wanted)
        if others:
            # Something installed since needs them: take Falco only, keep the rest.
            kept.append(f"packages {', '.join(sorted(wanted - {p['package']}))}: other "
                        f"packages need them ({', '.join(sorted(others))})")
            wanted = {p["package"]}
        for name in sorted(wanted, key=lambda n: (n != p["package"], n)):
            steps.append((f"purge package {name}", ("package", name)))
    for path in lists:
        steps.append((f"remove {path}", path))

    # 4. alert log, state
    if p["keep_alert_log"]:
        if os.path.lexists(p["alert_file"]):
            kept.append(f"{p['alert_file']} (keep_alert_log)")
    elif os.path.lexists(p["alert_file"]):
        steps.append((f"remove {p['alert_file']}", p["alert_file"]))
    state_dir = p["state_dir"]
    if os.path.isdir(state_dir):
        if p["keep_releases"]:
            releases = os.path.join(state_dir, "releases")
            for name in sorted(os.listdir(state_dir)):
                path = os.path.join(state_dir, name)
                if path != releases:
                    steps.append((f"remove {path}", path))
            if os.path.isdir(releases):
                kept.append(f"{releases} (keep_releases)")
        else:
            steps.append((f"remove {state_dir}", state_dir))
    elif os.path.lexists(p["package_record"]):
        steps.append((f"remove {p['package_record']}", p["package_record"]))

    plan = [line for line, _ in steps]
    if not module.check_mode:
        packages = [what[1] for _, what in steps if isinstance(what, tuple)]
        for _, what in steps:
            if isinstance(what, list):
                h.run(what, check=True)
            elif isinstance(what, tuple):
                if what[1] == packages[0]:  # all packages in one transaction
                    if h.rpm:
                        h.run(["dnf", "-y", "remove", *packages], check=True)
                    else:
                        h.run(["apt-get", "-y", "purge", *packages], check=True)
            else:
                remove(what)
        if units_touched or packages:
            h.run(["systemctl", "daemon-reload"])
    # 5. folders left empty; which ones depends on what the purge takes, so check mode names
    # the candidates
    folders = [f for f in p["empty_dirs"] if os.path.isdir(f) and not os.path.islink(f)]
    if module.check_mode:
        if folders and plan:
            plan.append(f"remove these folders if left empty: {', '.join(folders)}")
    else:
        for folder in folders:
            left = sorted(os.listdir(folder))
            if left:
                kept.append(f"{folder}: not empty ({', '.join(left)})")
                continue
            os.rmdir(folder)
            plan.append(f"remove empty folder {folder}")
    module.exit_json(changed=bool(plan), plan=plan, kept=kept)


if __name__ == "__main__":
    main()
