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
import tempfile
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
# An hour: any longer is a typo (1e300), and the host-side wait would never end.
MAX_TIMEOUT_S = 3600.0


@dataclass
class VerifyOptions(PlaybookOptions):
    scenarios: list[str] = field(default_factory=list)  # names; empty means the whole catalogue
    timeout: float = DEFAULT_TIMEOUT_S
    junit: str | None = None
    catalogue: str | None = None  # a site's own catalogue file


def check_junit(path: str) -> None:
    """A --junit file that cannot be written is a usage error before the run, not after it:
    its folders are made and a scratch file is written and removed there (an existing report
    is opened for appending, which leaves it as it is)."""
    target = Path(path).expanduser()
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "is a folder")
        if target.exists():
            with open(target, "a", encoding="utf-8"):
                pass
            return
        # mkdir would say only "File exists" when a file stands where a folder must be.
        for folder in target.parents:
            if folder.exists():
                if not folder.is_dir():
                    raise NotADirectoryError(20, f"{folder} is not a folder")
                break
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".falco-deploy-junit-"):
            pass
    except OSError as exc:
        raise FalcoDeployError(f"--junit {path} cannot be written: {exc.strerror or exc}") \
            from None


def run(options: VerifyOptions, on_event: ProgressCallback | None = None) -> RunResult:
    if not math.isfinite(options.timeout) or not 0 <= options.timeout <= MAX_TIMEOUT_S:
        raise FalcoDeployError(f"--timeout must be a number of seconds from 0 to "
                               f"{MAX_TIMEOUT_S:g} (got {options.timeout:g})")
    if options.junit:
        check_junit(options.junit)
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
