"""`falco-deploy install`: run playbooks/install.yml on an inventory and judge each host."""

from __future__ import annotations

from dataclasses import dataclass

from falco_deploy.commands.playbook import (
    PlaybookOptions,
    ProgressCallback,
    resolve_extra_vars,
    resolve_inventories,
    run_playbook_command,
)
from falco_deploy.results import RunResult

COMMAND = "install"
__all__ = ["InstallOptions", "resolve_extra_vars", "resolve_inventories", "run"]


@dataclass
class InstallOptions(PlaybookOptions):
    pass


def run(options: InstallOptions, on_event: ProgressCallback | None = None) -> RunResult:
    return run_playbook_command(COMMAND, COMMAND, options, on_event)
