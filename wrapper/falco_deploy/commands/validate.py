"""`falco-deploy rules validate`: check rules files like `falco -V`, with or without Falco.

The builtin engine (falco_deploy.rules_engine) needs nothing but PyYAML; `--engine falco` runs
the real `falco -V FILE... -o json_output=true` and reads its JSON back, so both engines are
rendered by the same code (rules_engine.results).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.rules_engine import FALCO_VERSIONS, expand_paths, validate
from falco_deploy.rules_engine.results import Report, report_from_falco_json

ENGINES = ("auto", "builtin", "falco")


@dataclass
class ValidateOptions:
    paths: list[str]
    base: list[str] = field(default_factory=list)
    falco_version: str = "0.44"
    engine: str = "auto"
    falco_binary: str = "falco"


@dataclass
class ValidateResult:
    report: Report
    engine: str  # "builtin" or "falco"

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.report.ok else ExitCode.RULES_INVALID


def _falco_report(binary: str, files: list[str]) -> Report:
    cmd = [binary]
    for f in files:
        cmd += ["-V", f]
    cmd += ["-o", "json_output=true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except OSError as e:
        raise FalcoDeployError(f"cannot run {binary}: {e.strerror or e}",
                               hint="use --engine builtin", exit_code=ExitCode.ENVIRONMENT) from e
    except subprocess.TimeoutExpired as e:
        raise FalcoDeployError(f"{binary} -V did not finish in 120 s",
                               exit_code=ExitCode.ENVIRONMENT) from e
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and "falco_load_results" in line:
            try:
                return report_from_falco_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:
                raise FalcoDeployError(f"unreadable JSON from {binary} -V: {e}",
                                       exit_code=ExitCode.ENVIRONMENT) from e
    detail = (proc.stderr or proc.stdout).strip().splitlines()
    raise FalcoDeployError(
        f"{binary} -V printed no load results (exit {proc.returncode})"
        + (f": {detail[-1]}" if detail else ""),
        hint="use --engine builtin to validate without Falco", exit_code=ExitCode.ENVIRONMENT)


def run(options: ValidateOptions) -> ValidateResult:
    if options.engine not in ENGINES:
        raise FalcoDeployError(f"unknown engine {options.engine!r}",
                               hint="one of: " + ", ".join(ENGINES))
    if options.falco_version not in FALCO_VERSIONS:
        raise FalcoDeployError(f"unsupported Falco version {options.falco_version!r}",
                               hint="one of: " + ", ".join(FALCO_VERSIONS))
    if not options.paths:
        raise FalcoDeployError("no rules file or folder given")
    engine = options.engine
    if engine == "auto":
        engine = "falco" if shutil.which(options.falco_binary) else "builtin"
    if engine == "falco":
        binary = shutil.which(options.falco_binary)
        if binary is None:
            raise FalcoDeployError(f"{options.falco_binary} not found on PATH",
                                   hint="use --engine builtin (or auto)",
                                   exit_code=ExitCode.ENVIRONMENT)
        entries = expand_paths(list(options.base) + list(options.paths))
        empty = [p for p, problem in entries if problem]
        if empty:
            raise FalcoDeployError(f"{empty[0]}: folder contains no rules files (*.yaml, *.yml)")
        return ValidateResult(_falco_report(binary, [p for p, _ in entries]), "falco")
    return ValidateResult(validate(options.paths, options.base, options.falco_version),
                          "builtin")
