"""`falco-deploy rules deploy`: validate a rules set offline, then roll it out with
playbooks/rules_deploy.yml (stage -> host-side `falco -V` -> atomic switch -> reload -> health).

The offline validation is the gate before any host is touched: the same files, in the order
Falco will load them from /etc/falco/rules.d (one folder, name order), after the upstream
falco_rules.yaml of the target Falco version. A set that fails here never reaches Ansible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from falco_deploy.commands.playbook import (
    PlaybookOptions,
    ProgressCallback,
    resolve_extra_vars,
    resolve_inventories,
    run_playbook_command,
)
from falco_deploy.commands.validate import base_rules_file
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import find_project
from falco_deploy.results import RunResult
from falco_deploy.rules_engine import expand_paths, validate
from falco_deploy.rules_engine.results import Report

COMMAND = "rules deploy"
PLAYBOOK = "rules_deploy"
# ansible's `serial` takes a count or a percentage of the play's hosts.
_SERIAL = re.compile(r"^(?:[1-9][0-9]*|(?:100|[1-9][0-9]?)%)$")


@dataclass
class RulesDeployOptions(PlaybookOptions):
    rules: list[str] = field(default_factory=list)  # folders or files; empty: the project's rules/
    serial: str = "100%"
    falco_version: str = "0.44"
    base: list[str] = field(default_factory=list)  # empty: the packaged upstream base rules
    allow_warnings: bool = False


@dataclass
class Gate:
    """The offline validation of a set: what was loaded and what the policy made of it."""

    report: Report
    base: list[str]
    files: list[str]  # the set, absolute, in host load order
    falco_version: str
    allow_warnings: bool

    @property
    def own_warnings(self) -> int:
        """Warnings in the set itself; the upstream base's are not ours to fix."""
        base = set(self.base)
        return sum(len(r.warnings) for r in self.report.results if r.name not in base)

    @property
    def ok(self) -> bool:
        return self.report.ok and (self.allow_warnings or self.own_warnings == 0)

    @property
    def verdict(self) -> str:
        if not self.report.ok:
            return "the rules set is invalid"
        if not self.ok:
            return (f"the rules set has {self.own_warnings} warning(s) and warnings fail "
                    "(--allow-warnings relaxes that)")
        return "ok"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "falco_version": self.falco_version, "base": self.base,
                "files": self.files, "allow_warnings": self.allow_warnings,
                **self.report.to_json()}

    def to_text(self) -> str:
        """The validator's own text: the per-file summary, plus warnings when they count."""
        text = self.report.to_text()
        if not self.allow_warnings and self.report.ok and self.own_warnings:
            text += "\n" + self.report.warnings_text().rstrip("\n")
        return text


def collect_set(sources: list[str]) -> list[Path]:
    """The files of the set in the order Falco loads them once they share one rules.d folder:
    by file name. Two sources with the same file name would overwrite each other there."""
    files: list[Path] = []
    for raw in sources:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FalcoDeployError(f"rules source {raw} does not exist",
                                   hint="--rules takes a folder of .yaml/.yml files or a file")
        for name, problem in expand_paths([path.resolve()]):
            if problem:
                raise FalcoDeployError(f"{name}: {problem}",
                                       hint="--rules takes a folder of .yaml/.yml files")
            files.append(Path(name))
    seen: dict[str, Path] = {}
    for f in files:
        if f.name in seen and seen[f.name] != f:
            raise FalcoDeployError(
                f"two rules files named {f.name}: {seen[f.name]} and {f}",
                hint="the set lands in one folder on the hosts; rename one of them")
        seen[f.name] = f
    return sorted(seen.values(), key=lambda f: f.name)


def check_serial(value: str) -> str:
    if not _SERIAL.match(value.strip()):
        raise FalcoDeployError(f"--serial {value!r} is neither a host count nor a percentage",
                               hint="e.g. --serial 1, --serial 5 or --serial 25%")
    return value.strip()


def gate(options: RulesDeployOptions, rules_dir: Path) -> Gate:
    files = collect_set(options.rules or [str(rules_dir)])
    if options.base:
        base = []
        for raw in options.base:
            path = Path(raw).expanduser()
            if not path.is_file():
                raise FalcoDeployError(f"--base {raw} is not a file")
            base.append(str(path.resolve()))
    else:
        base = [str(base_rules_file(options.falco_version))]
    report = validate([str(f) for f in files], base, options.falco_version)
    return Gate(report, base, [str(f) for f in files], options.falco_version,
                options.allow_warnings)


def run(options: RulesDeployOptions, on_event: ProgressCallback | None = None) -> RunResult:
    # Usage errors first: a broken set and a missing inventory should not read as exit 1.
    serial = check_serial(options.serial)
    resolve_inventories(options.inventory)
    resolve_extra_vars(options.extra_vars)
    project = find_project(options.project_dir)
    started = datetime.now(timezone.utc)
    checked = gate(options, project.rules_dir)
    if not checked.ok:
        return RunResult(command=COMMAND, hosts=[], artifacts_dir="", check_mode=options.check,
                         started=started, finished=datetime.now(timezone.utc),
                         error=checked.verdict + "; no host was touched",
                         exit_code=ExitCode.RULES_INVALID, validation=checked.to_dict(),
                         validation_text=checked.to_text())
    variables = {"falco_rules_sources": checked.files, "falco_rules_serial": serial,
                 # the host applies the same warnings policy to its own falco -V
                 "falco_rules_fail_on_warnings": not options.allow_warnings}
    result = run_playbook_command(COMMAND, PLAYBOOK, options, on_event, variables=variables,
                                  project=project, account_for_every_host=True,
                                  validation=checked.to_dict())
    result.started = started
    return result
