"""`falco-deploy forwarding`: run playbooks/forwarding.yml (role falco_forwarding) on an inventory:
set up, change or take down only the alert forwarding of each host (transport and outputs from
the inventory's falco_forwarding_* variables, or -e)."""

from __future__ import annotations

from dataclasses import dataclass

from falco_deploy.commands.playbook import PlaybookOptions, ProgressCallback, run_playbook_command
from falco_deploy.results import RunResult

COMMAND = "forwarding"


@dataclass
class ForwardingOptions(PlaybookOptions):
    transport: str | None = None  # overrides falco_forwarding_transport when given


def run(options: ForwardingOptions, on_event: ProgressCallback | None = None) -> RunResult:
    variables = {"falco_forwarding_transport": options.transport} if options.transport else {}
    return run_playbook_command(COMMAND, COMMAND, options, on_event, variables=variables)
