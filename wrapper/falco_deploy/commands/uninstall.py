"""`falco-deploy uninstall`: run playbooks/uninstall.yml (role falco_uninstall) on an inventory."""

from __future__ import annotations

from dataclasses import dataclass

from falco_deploy.commands.playbook import PlaybookOptions, ProgressCallback, run_playbook_command
from falco_deploy.results import RunResult

COMMAND = "uninstall"


@dataclass
class UninstallOptions(PlaybookOptions):
    keep_releases: bool = False
    keep_alert_log: bool = False


def run(options: UninstallOptions, on_event: ProgressCallback | None = None) -> RunResult:
    variables = {"falco_uninstall_keep_releases": options.keep_releases,
                 "falco_uninstall_keep_alert_log": options.keep_alert_log}
    return run_playbook_command(COMMAND, COMMAND, options, on_event, variables=variables)
