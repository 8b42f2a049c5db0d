"""`falco-deploy verify`: on every Docker host, run the purple-team scenarios in throwaway
containers and say, per host and scenario, whether Falco detected the attack (by any rule), which
rules fired, whether ours did, and how fast.

playbooks/verify.yml (role falco_verify) runs and judges the scenarios on each host and reports
them in `falco_deploy_result`; this command checks the catalogue and the scenario names first,
then runs the playbook through the one pipeline every Ansible-backed command uses
(commands/playbook.py: verdicts, JSON envelope and exit code in falco_deploy.results), and writes
the JUnit file. No alert is ever made up: an attack without a detecting alert is "missed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from falco_deploy.commands.playbook import (
    PlaybookOptions,
    ProgressCallback,
    run_playbook_command,
)
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import find_project
from falco_deploy.results import RunResult
from falco_deploy.verify import catalogue as catalogue_mod
from falco_deploy.verify.junit import write_junit

COMMAND = "verify"
PLAYBOOK = "verify"
DEFAULT_TIMEOUT_S = 30.0


@dataclass
class VerifyOptions(PlaybookOptions):
    scenarios: list[str] = field(default_factory=list)  # names; empty means the whole catalogue
    timeout: float = DEFAULT_TIMEOUT_S
    junit: str | None = None
    catalogue: str | None = None  # a site's own catalogue file


def run(options: VerifyOptions, on_event: ProgressCallback | None = None) -> RunResult:
    if not math.isfinite(options.timeout) or options.timeout < 0:
        raise FalcoDeployError(f"--timeout must be a number of seconds >= 0 "
                               f"(got {options.timeout:g})")
    project = find_project(options.project_dir)
    scenarios = catalogue_mod.load(project, options.catalogue)
    chosen = catalogue_mod.select(project, scenarios, options.scenarios)
    run_id = catalogue_mod.new_run_id()
    names = [s["name"] for s in chosen]
    variables = {"falco_verify_run_id": run_id, "falco_verify_scenario_names": names,
                 "falco_verify_timeout": options.timeout}
    if options.catalogue:
        variables["falco_verify_catalogue"] = str(Path(options.catalogue).resolve())
    result = run_playbook_command(COMMAND, PLAYBOOK, options, on_event, variables=variables,
                                  project=project)
    result.verify = {"run_id": run_id, "timeout_s": options.timeout, "scenarios": names,
                     "catalogue": options.catalogue or "", "junit": None}
    if options.junit:
        try:
            result.verify["junit"] = str(write_junit(result, chosen, options.junit))
        except OSError as exc:
            result.error = f"cannot write --junit {options.junit}: {exc.strerror or exc}"
            if result.exit_code == ExitCode.OK:
                result.exit_code = ExitCode.USAGE
    return result
