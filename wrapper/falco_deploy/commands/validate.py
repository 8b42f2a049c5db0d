"""`falco-deploy rules validate`: check rules files like `falco -V`, with or without Falco.

The builtin engine (falco_deploy.rules_engine) needs nothing but PyYAML; `--engine falco` runs
the real `falco -V FILE... -o json_output=true` and reads its JSON back, so both engines are
rendered by the same code (rules_engine.results).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.rules_engine import (
    FALCO_VERSIONS,
    RULES_SUFFIXES,
    expand_paths,
    source_problem,
    validate,
)
from falco_deploy.rules_engine.gate import upstream_rules_file
from falco_deploy.rules_engine.results import Report, report_from_falco_json

ENGINES = ("auto", "builtin", "falco")
# `--base upstream`: the falco_rules.yaml the package of the chosen Falco version installs.
UPSTREAM = "upstream"


def base_rules_file(falco_version: str) -> Path:
    """The upstream falco_rules.yaml the package of that Falco version installs
    (copied into the package by scripts/gen_rules_catalog.py)."""
    if falco_version not in FALCO_VERSIONS:
        raise FalcoDeployError(f"unsupported Falco version {falco_version!r}",
                               hint="one of: " + ", ".join(FALCO_VERSIONS))
    try:
        return Path(upstream_rules_file(falco_version))
    except ValueError as e:
        raise FalcoDeployError(str(e), hint="reinstall falco-deploy, or pass --base FILE",
                               exit_code=ExitCode.ENVIRONMENT) from e


def _refuse(message: str) -> FalcoDeployError:
    return FalcoDeployError(message, exit_code=ExitCode.USAGE)


def _check_file(path: Path, shown: str) -> None:
    problem = source_problem(path)
    if problem:
        raise _refuse(f"{shown}: {problem}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _refuse(f"{shown}: cannot be read: {exc.strerror or exc}") from None


def check_sources(paths: list[str]) -> None:
    """Exit 2 with one line for a source that is missing, unreadable, a symbolic link, not a
    regular file or folder, or too big - also for the rules files of a given folder - before
    anything is loaded."""
    for raw in paths:
        path = Path(raw)
        if not os.path.lexists(path):
            raise _refuse(f"{raw}: no such file or folder")
        if path.is_symlink() or not path.is_dir():
            _check_file(path, raw)
            continue
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            raise _refuse(f"{raw}: cannot read the folder: {exc.strerror or exc}") from None
        for name in names:
            entry = path / name
            if name.endswith(RULES_SUFFIXES) and not (entry.is_dir() and not entry.is_symlink()):
                _check_file(entry, str(entry))


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
    import subprocess  # only for --engine falco: `rules validate` starts fast without it

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
    base = [str(base_rules_file(options.falco_version)) if b == UPSTREAM else b
            for b in options.base]
    check_sources([*base, *options.paths])
    options = ValidateOptions(options.paths, base, options.falco_version, options.engine,
                              options.falco_binary)
    engine = options.engine
    if engine != "builtin":
        import shutil  # only to look for a falco binary: the builtin engine starts without it
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
