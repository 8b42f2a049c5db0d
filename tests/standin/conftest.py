"""Run the stand-in `falco` and `falcoctl` scripts against a throwaway /etc/falco tree in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest
from standin_support import DEFAULT_RULES, VALIDATOR_PARENT, Daemon, FalcoTree


@pytest.fixture
def tree(tmp_path: Path) -> FalcoTree:
    if not (VALIDATOR_PARENT / "rules_engine" / "__init__.py").is_file():
        pytest.skip("wrapper/falco_deploy/rules_engine (the validator the stand-in vendors) "
                    "is not in this tree")
    if not DEFAULT_RULES.is_file():
        pytest.skip(f"default rules corpus not found at {DEFAULT_RULES}")
    return FalcoTree(tmp_path)


@pytest.fixture
def daemon(tree: FalcoTree):
    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        d = Daemon(tree, list(args))
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
