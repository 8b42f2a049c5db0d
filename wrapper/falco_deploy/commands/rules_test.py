"""`falco-deploy rules test`: must-fire / must-not-fire tests of rule conditions, without Falco.

The rules load as `rules validate` loads them (after the upstream base rules); each fixture's
events are evaluated by rules_engine.evaluate and judged by rules_engine.fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from falco_deploy.commands.validate import UPSTREAM, base_rules_file, check_sources
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.rules_engine import FALCO_VERSIONS
from falco_deploy.rules_engine.evaluate import RulesLoadError
from falco_deploy.rules_engine.fixtures import FixtureError, Summary
from falco_deploy.rules_engine.fixtures import run as run_fixtures


@dataclass
class RulesTestOptions:
    fixtures: list[str]
    rules: list[str] = field(default_factory=list)
    base: list[str] = field(default_factory=lambda: [UPSTREAM])
    falco_version: str = "0.44"
    project_dir: str | None = None


@dataclass
class RulesTestResult:
    summary: Summary
    rules: list[str]
    falco_version: str

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.summary.ok else ExitCode.RULES_INVALID


def _usage(message: str, hint: str | None = None) -> FalcoDeployError:
    return FalcoDeployError(message, hint=hint, exit_code=ExitCode.USAGE)


def run(options: RulesTestOptions) -> RulesTestResult:
    if options.falco_version not in FALCO_VERSIONS:
        raise _usage(f"unsupported Falco version {options.falco_version!r}",
                     "one of: " + ", ".join(FALCO_VERSIONS))
    rules, fixtures = list(options.rules), list(options.fixtures)
    if not rules or not fixtures:
        from falco_deploy.project import find_project

        project = find_project(options.project_dir)
        rules = rules or [str(project.rules_dir)]
        fixtures = fixtures or [str(project.rules_dir / "tests")]
    for path in fixtures:
        if not Path(path).exists():
            raise _usage(f"{path}: no such fixture file or folder")
    base = [str(base_rules_file(options.falco_version)) if b == UPSTREAM else b
            for b in options.base]
    check_sources([*base, *rules])
    try:
        summary = run_fixtures(rules, fixtures, base, options.falco_version)
    except FixtureError as e:
        raise _usage(str(e), "see rules/tests/README.md for the fixture format") from None
    except RulesLoadError as e:
        raise FalcoDeployError("the rules do not load:\n" + e.report_text,
                               hint="run `falco-deploy rules validate` on them",
                               exit_code=ExitCode.RULES_INVALID) from None
    if not summary.results:
        raise _usage("no fixtures found in " + ", ".join(fixtures))
    return RulesTestResult(summary, rules, options.falco_version)


def render_text(result: RulesTestResult, verbose: bool = False) -> str:
    lines = []
    for r in result.summary.results:
        fx = r.fixture
        expect = ("fires " + " + ".join(fx.fires)) if fx.fires else "fires none of ours"
        mark = "PASS" if r.ok else "FAIL"
        n = len(r.events)
        lines.append(f"{mark}  {fx.name}  [{n} event{'s' if n != 1 else ''}: {expect}]")
        if not r.ok or verbose:
            firsts = sorted({e.first for e in r.events if e.first})
            if fx.fires and firsts:
                undecided = sorted({u for e in r.events if e.first for u in e.undecided})
                note = f"      rule_matching first: {', '.join(firsts)} alerts"
                if undecided:
                    note += f" (unless {', '.join(undecided)}, undecided on these fields)"
                lines.append(note)
            if fx.assumed:
                lines.append(f"      assumed {', '.join(fx.assumed)}: {fx.because.strip()}")
        for p in sorted({p for e in r.events for p in e.problems}):
            lines.append(f"      {p}")
    total, events, failed = result.summary.counts()
    lines.append(f"{total - failed} of {total} fixtures passed ({events} events; "
                 f"Falco {result.falco_version} catalogue)")
    return "\n".join(lines)
