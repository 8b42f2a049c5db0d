"""Fixtures of the verify tests: the falco_verify role's judge and catalogue, and a real
`falco-deploy verify` run on Falco 0.40 (../shared/corpus/falco-real-0.40/verify-run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from verify_support import JUDGE, RECORDED_RUN, recorded_runs

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def judge():
    return JUDGE


@pytest.fixture(scope="session")
def catalogue() -> list[dict]:
    """The packaged catalogue, checked."""
    path = REPO_ROOT / "roles" / "falco_verify" / "files" / "scenarios.yml"
    return JUDGE.check_catalogue(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


@pytest.fixture(scope="session")
def recorded_lines() -> list[str]:
    path = RECORDED_RUN / "events.jsonl"
    if not path.is_file():
        pytest.fail(f"recorded verify run not found at {path}; set FALCO_DEPLOY_SHARED")
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def runs(catalogue) -> list[dict]:
    return recorded_runs(catalogue)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return Path(os.environ.get("FALCO_DEPLOY_SHARED") or REPO_ROOT.parent / "shared")


@pytest.fixture(scope="session")
def corpus_lines(shared_dir) -> list[str]:
    """22 real alerts of Falco 0.40 with the modern eBPF driver (../shared/corpus/falco-alerts)."""
    path = shared_dir / "corpus" / "falco-alerts" / "falco-0.40-modern-ebpf.jsonl"
    if not path.is_file():
        pytest.fail(f"alert corpus not found at {path}; set FALCO_DEPLOY_SHARED")
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def corpus_objects(corpus_lines) -> list[dict]:
    return [json.loads(line) for line in corpus_lines]
