"""The whole suite's last check: no test secret (tests/known_secrets.py) in anything the session's
runs left behind (tests/artifact_scan.py). A finding fails the session with file:line.

So that the check can fail at all, a session in which a test marked `run_artifacts` passed must
also have found at least one ansible-runner artifact folder: when none turns up, the scan looks
in the wrong place and would pass whatever the runs wrote.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import artifact_scan
import known_secrets

_BASETEMP = pytest.StashKey[Path]()
_STARTED = pytest.StashKey[float]()
_PRODUCERS = pytest.StashKey[list]()
_REPORT = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "run_artifacts: the test makes falco-deploy runs whose artifacts stay in "
                   "the base temporary folder (the session's secret scan must find some when "
                   "it passed)")
    # A removed tmp_path is a run the scan cannot see.
    policy = config.getini("tmp_path_retention_policy")
    if policy != "all":
        raise pytest.UsageError(f"tmp_path_retention_policy = {policy}: the secret scan at the "
                                "end of the session needs every tmp_path kept ('all')")
    config.stash[_STARTED] = time.time()
    config.stash[_PRODUCERS] = []
    config.stash[_REPORT] = []


@pytest.fixture(scope="session", autouse=True)
def _record_basetemp(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    request.config.stash[_BASETEMP] = tmp_path_factory.getbasetemp()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" and report.passed and item.get_closest_marker("run_artifacts"):
        item.config.stash[_PRODUCERS].append(item.nodeid)
    return report


# Before pytest's own tmp_path clean-up, which also runs at session finish.
@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        return
    roots = artifact_scan.locations(config.stash.get(_BASETEMP, None), config.stash[_STARTED])
    findings = artifact_scan.scan(roots, known_secrets.SECRETS, skip=known_secrets.INPUT_FILES)
    report = config.stash[_REPORT]
    if findings:
        report.append(f"{len(findings)} test secret(s) found in what the runs left behind:")
        report += [f"  {finding}" for finding in findings]
    producers = config.stash[_PRODUCERS]
    if producers and not artifact_scan.run_folders(roots):
        report.append(f"{len(producers)} test(s) that leave run artifacts passed (e.g. "
                      f"{producers[0]}), but no artifact folder of a finished ansible-runner "
                      "run was found in: " + ", ".join(str(r) for r in roots))
    if report:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, [])
    if report:
        terminalreporter.section("secret scan of the run artifacts: FAILED", sep="=", red=True)
        for line in report:
            terminalreporter.line(line, red=True)
