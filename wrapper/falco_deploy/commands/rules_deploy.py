"""`falco-deploy rules deploy`: roll a rules set out with playbooks/rules_deploy.yml (offline
gate -> stage -> host-side `falco -V` -> atomic switch -> reload -> health).

The offline gate is the playbook's first task (the falco_rules_bundle action, on the control
node, before any host task), so plain ansible-playbook and AWX runs have it too; this command
checks its own arguments, passes the gate's settings as variables and reports a refusal as
exit 1 with the validator's words. It never validates a second time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from falco_deploy.commands.playbook import (
    PlaybookOptions,
    ProgressCallback,
    resolve_extra_vars,
    resolve_inventories,
    run_playbook_command,
)
from falco_deploy.commands.validate import check_sources
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import find_project
from falco_deploy.results import RunResult
from falco_deploy.rules_engine import FALCO_VERSIONS, expand_paths
from falco_deploy.rules_engine.gate import Gate

COMMAND = "rules deploy"
PLAYBOOK = "rules_deploy"
# The names a rules file may have on the hosts: the host's own rule (SAFE_NAME in
# plugins/module_utils/falco_rules_host.py, which the playbook's gate applies too), checked here
# to give a usage error before any run; tests/unit/test_cli_rules.py keeps the two equal.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# ansible's `serial` takes a count or a percentage of the play's hosts.
_SERIAL = re.compile(r"^(?:[1-9][0-9]*|(?:100|[1-9][0-9]?)%)$")


@dataclass
class RulesDeployOptions(PlaybookOptions):
    rules: list[str] = field(default_factory=list)  # folders or files; empty: the project's rules/
    serial: str = "100%"
    falco_version: str = "0.44"
    base: list[str] = field(default_factory=list)  # empty: the packaged upstream base rules
    allow_warnings: bool = False


def collect_set(sources: list[str]) -> list[Path]:
    """The files of the set in the order Falco loads them once they share one rules.d folder:
    by file name. Two sources with the same file name would overwrite each other there."""
    files: list[Path] = []
    for raw in sources:
        path = Path(raw).expanduser()
        if not os.path.lexists(path):
            raise FalcoDeployError(f"rules source {raw} does not exist",
                                   hint="--rules takes a folder of .yaml/.yml files or a file")
        # Links, devices, FIFOs and oversized files: one line, exit 2 (as `rules validate`).
        check_sources([str(path)])
        for name, problem in expand_paths([path.resolve()]):
            if problem:
                raise FalcoDeployError(f"{name}: {problem}",
                                       hint="--rules takes a folder of .yaml/.yml files")
            if not SAFE_NAME.fullmatch(Path(name).name):
                raise FalcoDeployError(
                    f"{name}: the hosts refuse this file name",
                    hint="letters, digits and . _ + - only, not starting with . _ + -")
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


def gate_variables(options: RulesDeployOptions, rules_dir: Path) -> dict:
    """The role's variables for the gate and the set, after checking what can be checked without
    validating: sources, --base files and the Falco version (usage errors, exit 2)."""
    files = collect_set(options.rules or [str(rules_dir)])
    if options.falco_version not in FALCO_VERSIONS:
        raise FalcoDeployError(f"unsupported Falco version {options.falco_version!r}",
                               hint="one of: " + ", ".join(FALCO_VERSIONS))
    base = []
    for raw in options.base:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise FalcoDeployError(f"--base {raw} is not a file")
        base.append(str(path.resolve()))
    return {"falco_rules_sources": [str(f) for f in files],
            "falco_rules_gate_falco_version": options.falco_version,
            "falco_rules_gate_base_files": base,
            # the host applies the same warnings policy to its own falco -V
            "falco_rules_fail_on_warnings": not options.allow_warnings}


def refused_by_gate(result: RunResult) -> RunResult | None:
    """The run as exit 1 when the playbook's gate refused the set before any host was touched
    (the gate's task failed and no host reported a result). A later batch's refusal after
    earlier batches deployed stays a normal failed run: those hosts must be reported."""
    if result.validation is None or result.validation.get("ok"):
        return None
    if any(value is not None for h in result.hosts for value in h.details.values()):
        return None
    checked = Gate.from_dict(result.validation)
    return RunResult(command=COMMAND, hosts=[], artifacts_dir=result.artifacts_dir,
                     check_mode=result.check_mode, started=result.started,
                     finished=result.finished, error=checked.verdict + "; no host was touched",
                     exit_code=ExitCode.RULES_INVALID, validation=result.validation,
                     validation_text=checked.to_text())


def run(options: RulesDeployOptions, on_event: ProgressCallback | None = None) -> RunResult:
    # Usage errors first: a broken set and a missing inventory should not read as exit 1.
    serial = check_serial(options.serial)
    resolve_inventories(options.inventory)
    resolve_extra_vars(options.extra_vars)
    project = find_project(options.project_dir)
    variables = {**gate_variables(options, project.rules_dir), "falco_rules_serial": serial}
    result = run_playbook_command(COMMAND, PLAYBOOK, options, on_event, variables=variables,
                                  project=project, account_for_every_host=True)
    return refused_by_gate(result) or result
