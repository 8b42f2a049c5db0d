"""`falco-deploy status`: what each host runs (Falco version, engine kind, unit state), which
rules release is active, and whether the live rules still match its manifest (drift).
Read-only: playbooks/status.yml changes nothing and works under --check."""

from __future__ import annotations

from dataclasses import dataclass

from falco_deploy.commands.playbook import (
    PlaybookOptions,
    ProgressCallback,
    run_playbook_command,
)
from falco_deploy.results import RunResult

COMMAND = "status"
PLAYBOOK = "status"


@dataclass
class StatusOptions(PlaybookOptions):
    pass


def run(options: StatusOptions, on_event: ProgressCallback | None = None) -> RunResult:
    return run_playbook_command(COMMAND, PLAYBOOK, options, on_event)
