"""Fixtures on the real Falco 0.40 alert corpus (../shared/corpus/falco-alerts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from corpus_run import CORPUS_CONTAINERS, RUN_ID, TRIGGERS

from falco_deploy.verify.alerts import ParsedAlerts, read_alert_file
from falco_deploy.verify.matcher import HostRun, ScenarioRun
from falco_deploy.verify.scenarios import Catalogue, load_catalogue, parse_catalogue

REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_dir() -> Path:
    return Path(os.environ.get("FALCO_DEPLOY_SHARED") or REPO_ROOT.parent / "shared")


def corpus_name(scenario: str, run_id: str = RUN_ID) -> str:
    return f"purple-{run_id}-{CORPUS_CONTAINERS[scenario]}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def official_rules() -> Path:
    """falco_rules.yaml shipped with Falco 0.38-0.40 (the corpus Falco loaded it)."""
    return (shared_dir() / "corpus" / "falcosecurity-rules" / "falco-rules-3.2.0"
            / "falco_rules.yaml")


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    path = shared_dir() / "corpus" / "falco-alerts" / "falco-0.40-modern-ebpf.jsonl"
    if not path.is_file():
        pytest.fail(f"alert corpus not found at {path}; set FALCO_DEPLOY_SHARED to the shared dir")
    return path


@pytest.fixture(scope="session")
def corpus_lines(corpus_path: Path) -> list[str]:
    return corpus_path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def corpus_objects(corpus_lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in corpus_lines]


@pytest.fixture(scope="session")
def corpus(corpus_path: Path) -> ParsedAlerts:
    return read_alert_file(corpus_path)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


# The rules that fired for each scenario in the corpus run: the seed guide's rules, plus the
# official ones where the seed's never fired (release_agent, reverse shell). A site catalogue
# written for that rule set, so the matcher is tested on what real Falco raised.
CORPUS_CATALOGUE = """
version: 1
scenarios:
  release_agent: {expected_rules: [Detect release_agent File Container Escapes]}
  nsenter: {expected_rules: [Namespace Change via setns to Host]}
  privileged_mount: {expected_rules: [Mount Launched in Privileged Container]}
  docker_sock: {expected_rules: [Docker Socket Accessed From Container]}
  reverse_shell:
    expected_rules: [Redirect STDOUT/STDIN to Network Connection in Container]
  sensitive_file_read: {expected_rules: [Read Sensitive Host File From Container]}
benign:
  container_lifecycle: {description: start and stop}
  read_etc_hosts: {description: cat /etc/hosts}
"""


@pytest.fixture(scope="session")
def corpus_catalogue() -> Catalogue:
    return parse_catalogue(yaml.safe_load(CORPUS_CATALOGUE), "corpus-catalogue.yaml")


class CorpusRun:
    """The corpus run as the runner would have recorded it; tests vary it per case."""

    run_id = RUN_ID
    containers = CORPUS_CONTAINERS
    triggers = TRIGGERS

    @staticmethod
    def name(scenario: str, run_id: str = RUN_ID) -> str:
        return corpus_name(scenario, run_id)

    @staticmethod
    def scenario(scenario: str, trigger: str | None = None, **overrides) -> ScenarioRun:
        overrides.setdefault("name", corpus_name(scenario))
        return ScenarioRun.started(RUN_ID, scenario, trigger or TRIGGERS[scenario], **overrides)

    def host(self, *scenario_runs: ScenarioRun, run_id: str = RUN_ID,
             not_run_reason: str | None = None) -> HostRun:
        runs = scenario_runs or tuple(self.scenario(name) for name in CORPUS_CONTAINERS)
        return HostRun("vm", run_id, tuple(runs), not_run_reason)


@pytest.fixture
def run() -> CorpusRun:
    return CorpusRun()
