"""What every Ansible-backed command shares: its options, resolving them, running its playbook
through the runner, and judging each host (results.EventCollector with the command's profile).

install, rules deploy, rollback and status differ only in the playbook they run, the variables
they pass and the profile their verdicts use; the CLI draws progress and the summary for all
four with the same code.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from falco_deploy import runner
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import Project, find_project
from falco_deploy.results import EventCollector, RunResult, profile_for

# ansible-core's words when no inventory source parsed (ansible/inventory/manager.py), and when
# the inventory and --limit leave no host (ansible/cli/__init__.py, CLI.get_host_list).
_INVENTORY_UNPARSED = "No inventory was parsed"
_NO_HOSTS_TARGETED = "leaves us with no hosts to target"
# The files ansible's yaml inventory plugin reads (its yaml_extensions); any other file may be
# INI, a script or a plugin's, and only ansible can tell.
_YAML_INVENTORY_SUFFIXES = (".yaml", ".yml", ".json")
# An INI inventory's first line: a [group], [group:vars] or [group:children] header.
_INI_SECTION = re.compile(r"\[[A-Za-z0-9_.-]+(:(vars|children))?\]")
ProgressCallback = Callable[[dict[str, Any], EventCollector], None]
# Variables files are small; a bigger one is a mistake (or a device).
MAX_EXTRA_VARS_BYTES = 4 * 1024 * 1024


@dataclass
class PlaybookOptions:
    inventory: list[str]  # one or more inventory paths, as ansible-playbook -i takes them
    limit: str | None = None
    check: bool = False
    diff: bool = False
    extra_vars: list[str] = field(default_factory=list)  # ansible-playbook -e values
    output: str = "text"
    project_dir: str | None = None
    artifacts_dir: str | None = None
    verbosity: int = 0
    # ansible-playbook's own options, passed straight through (runner.PlaybookRun).
    forks: int | None = None
    remote_user: str | None = None
    private_key: str | None = None
    ask_become_pass: bool = False
    ask_vault_pass: bool = False
    vault_ids: list[str] = field(default_factory=list)
    vault_password_files: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    skip_tags: list[str] = field(default_factory=list)
    # {prompt regex: password}, asked by the CLI before the run (see runner.PlaybookRun).
    passwords: dict[str, str] = field(default_factory=dict, repr=False)


def resolve_inventories(paths: list[str]) -> list[Path]:
    if not paths:
        raise FalcoDeployError("no inventory given",
                               hint="pass --inventory PATH, e.g. inventories/example/hosts.yml")
    resolved = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FalcoDeployError(
                f"inventory {raw} does not exist",
                hint="pass --inventory PATH to an Ansible inventory file or directory, "
                     "e.g. inventories/example/hosts.yml",
            )
        problem = inventory_problem(path)
        if problem:
            raise FalcoDeployError(f"inventory {raw} {problem}")
        resolved.append(path.resolve())
    return resolved


def inventory_problem(path: Path) -> str | None:
    """Why an inventory file cannot name a host, found before ansible runs: ansible would take
    an empty file for an empty inventory and a broken YAML file for a failed parse, both only
    after starting the playbook, and say so in several lines. Folders, scripts and INI files
    are left to ansible."""
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    lines = data.decode("utf-8", "replace").splitlines()
    if all(not line.strip() or line.lstrip().startswith(("#", ";")) for line in lines):
        return "is empty: it names no host"
    if path.suffix not in _YAML_INVENTORY_SUFFIXES:
        return None
    try:
        json.loads(data)  # ansible's loader tries JSON first, which YAML 1.1 does not cover
        return None
    except ValueError:
        pass
    import yaml

    try:
        # Syntax only: composing builds no values, so ansible's own tags (!vault) pass.
        documents = list(yaml.compose_all(
            data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as exc:
        if _INI_SECTION.fullmatch(next(line.strip() for line in lines if line.strip()
                                       and not line.lstrip().startswith(("#", ";")))):
            # An INI inventory under a YAML name: ansible's ini plugin reads any file name.
            return None
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        if problem and mark is not None:
            where = f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
        else:
            where = " ".join(str(exc).split())
        return f"is not valid YAML: {where}"
    if all(isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
           for node in documents):
        return "is empty: it names no host"
    return None


def resolve_extra_vars(values: list[str], cwd: Path | None = None) -> list[str]:
    """Make @file references absolute (ansible-playbook runs in the project directory) and check
    that they exist; other values pass through untouched for ansible to parse."""
    base = cwd or Path.cwd()
    out = []
    for value in values:
        if value.startswith("@"):
            path = (base / Path(value[1:]).expanduser()).resolve()
            if not path.exists():
                raise FalcoDeployError(
                    f"extra-vars file {value[1:]} does not exist",
                    hint="-e @FILE takes a YAML or JSON file of variables",
                )
            # ansible would read a device such as /dev/zero until memory runs out.
            if not path.is_file():
                raise FalcoDeployError(f"extra-vars file {value[1:]} is not a regular file")
            if path.stat().st_size > MAX_EXTRA_VARS_BYTES:
                raise FalcoDeployError(f"extra-vars file {value[1:]} is larger than "
                                       f"{MAX_EXTRA_VARS_BYTES} bytes")
            out.append(f"@{path}")
        elif not value.strip():
            raise FalcoDeployError("empty --extra-vars value",
                                   hint="use -e key=value, -e @file.yml or -e '{\"k\": 1}'")
        else:
            out.append(value)
    return out


def _operator_file(raw: str, what: str) -> Path:
    """A file named on the command line, absolute (ansible-playbook runs in the project)."""
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise FalcoDeployError(f"{what} {raw} does not exist")
    return path


def resolve_vault_ids(values: list[str]) -> list[str]:
    """--vault-id LABEL@SOURCE or SOURCE: `prompt` stays, a password file (or script) becomes
    absolute."""
    out = []
    for value in values:
        label, _, source = value.rpartition("@")
        if source == "prompt":
            out.append(value)
            continue
        path = _operator_file(source, "--vault-id password file")
        out.append(f"{label}@{path}" if label else str(path))
    return out


def ansible_flags(options: PlaybookOptions) -> dict[str, Any]:
    """The PlaybookRun fields of ansible-playbook's own options, checked and made absolute."""
    return {
        "forks": options.forks,
        "remote_user": options.remote_user,
        "private_key": _operator_file(options.private_key, "--private-key")
        if options.private_key else None,
        "ask_become_pass": options.ask_become_pass,
        "ask_vault_pass": options.ask_vault_pass,
        "vault_ids": resolve_vault_ids(options.vault_ids),
        "vault_password_files": [_operator_file(p, "--vault-password-file")
                                 for p in options.vault_password_files],
        "tags": list(options.tags),
        "skip_tags": list(options.skip_tags),
        "passwords": dict(options.passwords),
    }


def run_playbook_command(command: str, playbook_name: str, options: PlaybookOptions,
                         on_event: ProgressCallback | None = None, *,
                         variables: dict[str, Any] | None = None,
                         project: Project | None = None,
                         account_for_every_host: bool = False) -> RunResult:
    """Run playbooks/<playbook_name>.yml and turn its events into a RunResult for `command`.

    `variables` go first as one JSON -e value, so an operator's own -e can still override them.
    `account_for_every_host`: with --serial a failed batch ends the play and the later batches'
    hosts send no event at all; after a failed run the targeted hosts are listed so those hosts
    appear as "not run" instead of vanishing from the summary.
    """
    inventories = resolve_inventories(options.inventory)
    extra_vars = resolve_extra_vars(options.extra_vars)
    flags = ansible_flags(options)
    if variables:
        extra_vars.insert(0, json.dumps(variables, sort_keys=True))
    project = project or find_project(options.project_dir)
    playbook = project.playbook(playbook_name)
    profile = profile_for(command)
    artifacts = runner.artifacts_dir_for(profile.slug, options.artifacts_dir)

    collector = EventCollector(check_mode=options.check, command=command)

    def handle(event: dict[str, Any]) -> None:
        collector.feed(event)
        if on_event is not None:
            on_event(event, collector)

    run = runner.PlaybookRun(
        project=project,
        playbook=playbook,
        inventories=inventories,
        artifacts_dir=artifacts,
        limit=options.limit,
        check=options.check,
        diff=options.diff,
        extra_vars=extra_vars,
        verbosity=options.verbosity,
        **flags,
    )
    started = datetime.now(timezone.utc)
    outcome = runner.run_playbook(run, handle)
    if outcome.canceled:
        # Hosts that had not reported when the signal came are "interrupted"; the others keep
        # their verdicts. Listing the play's hosts would start ansible again: not now.
        collector.interrupted = signal_name(outcome.signum)
    elif account_for_every_host and outcome.rc != 0 and collector.hosts:
        collector.expect_hosts(
            runner.list_hosts(run),
            "not run: an earlier batch failed, so the play stopped before this host")
    finished = datetime.now(timezone.utc)

    hosts = collector.results()
    error = None
    exit_code = None
    if outcome.canceled:
        error = f"interrupted by {collector.interrupted}: the run was stopped"
        exit_code = _SIGNAL_EXIT.get(outcome.signum or signal.SIGINT, ExitCode.INTERRUPTED)
    elif not hosts and no_host_matched(outcome, collector):
        # Nothing ran anywhere because of what the operator asked for: said like an input
        # error (one line on stderr, the JSON envelope), with the exit code the README gives it.
        raise FalcoDeployError(
            "no host matched the inventory"
            + (f" and --limit {options.limit}" if options.limit else ""),
            exit_code=ExitCode.FAILED)
    elif not hosts:
        error, exit_code = why_no_host_ran(outcome)
    return RunResult(
        command=command,
        hosts=hosts,
        artifacts_dir=str(artifacts),
        check_mode=options.check,
        started=started,
        finished=finished,
        error=error,
        exit_code=exit_code,
        validation=collector.validation,
    )


_SIGNAL_EXIT = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED,
                signal.SIGHUP: ExitCode.HANGUP}


def signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum or signal.SIGINT).name
    except ValueError:
        return f"signal {signum}"


def no_host_matched(outcome, collector) -> bool:
    """Whether a run without any host result targeted no host: the plays matched none, or
    ansible-playbook refused to start because the inventory and --limit leave none."""
    if collector.no_hosts_matched or outcome.rc == 0:
        return True
    return _NO_HOSTS_TARGETED in outcome.stdout_tail()


def why_no_host_ran(outcome) -> tuple[str, ExitCode]:
    """The error and exit code of a failed run in which no host produced a result."""
    tail = outcome.stdout_tail()
    if _INVENTORY_UNPARSED in tail:
        # runner.build_env makes an unparsable inventory fatal; it is a usage error.
        return "ansible could not parse the inventory:\n" + tail, ExitCode.USAGE
    return (f"ansible-playbook ended with rc {outcome.rc} before any host ran"
            + (f":\n{tail}" if tail else "")), ExitCode.FAILED
