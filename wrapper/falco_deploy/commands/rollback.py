"""`falco-deploy rollback`: switch hosts back to an earlier rules release (playbooks/rollback.yml:
validate on the host, switch, reload, health check), optionally after pinning an earlier Falco."""

from __future__ import annotations

import re
from dataclasses import dataclass

from falco_deploy.commands.playbook import (
    PlaybookOptions,
    ProgressCallback,
    run_playbook_command,
)
from falco_deploy.errors import FalcoDeployError
from falco_deploy.results import RunResult

COMMAND = "rollback"
PLAYBOOK = "rollback"
# Release ids are YYYYMMDDTHHMMSSZ-<sha256[:8]> (see the falco_rules role); anything that could
# walk out of the releases folder is refused here already.
_RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")
# Debian version strings (deb-version(7)): digits first, then this alphabet.
_DEB_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~:-]*")


@dataclass
class RollbackOptions(PlaybookOptions):
    to: str | None = None  # a release id; None: go back `steps` releases
    steps: int = 1
    package_version: str | None = None


def variables_for(options: RollbackOptions) -> dict[str, object]:
    if options.to is not None and not _RELEASE_ID.fullmatch(options.to):
        raise FalcoDeployError(f"--to {options.to!r} is not a release id",
                               hint="release ids look like 20261129T203000Z-1a2b3c4d; "
                                    "`falco-deploy status` shows each host's")
    if options.steps < 1:
        raise FalcoDeployError(f"--steps {options.steps} must be 1 or more")
    variables: dict[str, object] = {
        "falco_rules_rollback_to": options.to or "",
        "falco_rules_rollback_steps": options.steps,
    }
    if options.package_version is not None:
        if not _DEB_VERSION.fullmatch(options.package_version):
            raise FalcoDeployError(f"--package-version {options.package_version!r} is not a "
                                   "package version", hint="e.g. --package-version 0.43.0")
        variables["falco_package_version"] = options.package_version
        # Going back to an older Falco is a downgrade; the package role refuses one otherwise.
        variables["falco_package_allow_downgrade"] = True
    return variables


def run(options: RollbackOptions, on_event: ProgressCallback | None = None) -> RunResult:
    return run_playbook_command(COMMAND, PLAYBOOK, options, on_event,
                                variables=variables_for(options))
