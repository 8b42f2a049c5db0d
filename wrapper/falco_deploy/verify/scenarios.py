"""Scenario catalogue (scenarios.yaml) and the naming convention of scenario containers.

Every scenario runs in a throwaway container named `purple-<runid>-<scenario>`. The run id is
unique per verify run, so the name alone attributes an alert (`container.name` in Falco's output
fields) to one scenario of one run, and alerts of earlier runs or other containers are ignored.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode

CONTAINER_PREFIX = "purple"
# Run id: UTC start time plus a random suffix, e.g. 20261129T190808-3fa9c1. Docker container names
# allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; scenario names leave out "-" so the last "-" splits the two.
RUN_ID_RE = re.compile(r"\d{8}T\d{6}-[0-9a-z]{1,16}")
SCENARIO_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_CONTAINER_RE = re.compile(
    rf"/?{CONTAINER_PREFIX}-(?P<run_id>{RUN_ID_RE.pattern})-(?P<scenario>{SCENARIO_NAME_RE.pattern})"
)

_CATALOGUE_FILE = "scenarios.yaml"


def new_run_id(now: datetime | None = None, suffix: str | None = None) -> str:
    """A fresh run id: sortable by start time, unique through a random suffix."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    run_id = f"{now:%Y%m%dT%H%M%S}-{suffix if suffix is not None else secrets.token_hex(3)}"
    if not RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    return run_id


def container_name(run_id: str, scenario: str) -> str:
    if not RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r} (expected YYYYMMDDTHHMMSS-suffix)")
    if not SCENARIO_NAME_RE.fullmatch(scenario):
        raise ValueError(f"invalid scenario name {scenario!r} (lower case, digits, '_')")
    return f"{CONTAINER_PREFIX}-{run_id}-{scenario}"


@dataclass(frozen=True)
class ContainerRef:
    run_id: str
    scenario: str


def parse_container_name(name: str | None) -> ContainerRef | None:
    """Run id and scenario of a scenario container name; None for any other container.

    A leading "/" (as the Docker API prints names) is accepted.
    """
    if not name:
        return None
    match = _CONTAINER_RE.fullmatch(name)
    if match is None:
        return None
    return ContainerRef(match["run_id"], match["scenario"])


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expected_rules: tuple[str, ...] = ()
    benign: bool = False
    # What runs on a host: a POSIX shell script (`/bin/sh -c`) in the image, and the extra
    # `docker run` arguments it needs (--privileged, --pid=host, a socket bind mount, ...).
    script: str = ""
    docker_args: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "expected_rules": list(self.expected_rules), "benign": self.benign}

    def to_run_spec(self) -> dict[str, Any]:
        """What the falco_verify role needs to run the scenario (its `falco_verify_scenarios`)."""
        return {"name": self.name, "script": self.script, "docker_args": list(self.docker_args),
                "expected_rules": list(self.expected_rules)}


@dataclass(frozen=True)
class Catalogue:
    scenarios: tuple[Scenario, ...]
    source: str = _CATALOGUE_FILE

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(scenario.name for scenario in self.scenarios)

    @property
    def attacks(self) -> tuple[Scenario, ...]:
        return tuple(scenario for scenario in self.scenarios if not scenario.benign)

    @property
    def benign(self) -> tuple[Scenario, ...]:
        return tuple(scenario for scenario in self.scenarios if scenario.benign)

    @property
    def our_rules(self) -> frozenset[str]:
        """Every rule some scenario expects: an alert of one of them on a benign scenario is a
        false positive."""
        return frozenset(rule for scenario in self.scenarios for rule in scenario.expected_rules)

    def get(self, name: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        raise FalcoDeployError(
            f"unknown scenario {name!r}",
            hint="known scenarios: " + ", ".join(self.names),
            exit_code=ExitCode.USAGE,
        )

    def select(self, names: Iterable[str] | None) -> tuple[Scenario, ...]:
        """The scenarios named (in the order given, duplicates dropped), or all when none are."""
        if not names:
            return self.scenarios
        chosen: dict[str, Scenario] = {}
        for name in names:
            chosen.setdefault(name, self.get(name))
        return tuple(chosen.values())


def _bad(source: str, message: str) -> FalcoDeployError:
    return FalcoDeployError(f"{source}: {message}",
                            hint="see the comments at the top of the packaged scenarios.yaml",
                            exit_code=ExitCode.USAGE)


def _parse_entries(source: str, section: str, entries: Any,
                   benign: bool) -> list[Scenario]:
    if entries is None:
        return []
    if not isinstance(entries, Mapping):
        raise _bad(source, f"'{section}' must map scenario names to their settings")
    parsed: list[Scenario] = []
    for name, body in entries.items():
        if not isinstance(name, str) or not SCENARIO_NAME_RE.fullmatch(name):
            raise _bad(source, f"{section}: invalid scenario name {name!r} "
                               "(lower case letters, digits and '_')")
        body = body or {}
        if not isinstance(body, Mapping):
            raise _bad(source, f"{section}.{name} must be a mapping")
        unknown = set(body) - {"description", "expected_rules", "script", "docker_args"}
        if unknown:
            raise _bad(source, f"{section}.{name}: unknown keys {sorted(unknown)}")
        description = body.get("description", "")
        if not isinstance(description, str):
            raise _bad(source, f"{section}.{name}.description must be a string")
        rules = body.get("expected_rules", [])
        if not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules):
            raise _bad(source, f"{section}.{name}.expected_rules must be a list of rule names")
        if benign and rules:
            raise _bad(source, f"{section}.{name}: a benign scenario expects no rules")
        if not benign and not rules:
            raise _bad(source, f"{section}.{name}: an attack scenario needs expected_rules")
        script = body.get("script", "")
        if not isinstance(script, str):
            raise _bad(source, f"{section}.{name}.script must be a string (a shell script)")
        docker_args = body.get("docker_args", [])
        if not isinstance(docker_args, list) or not all(
                isinstance(arg, str) and arg for arg in docker_args):
            raise _bad(source, f"{section}.{name}.docker_args must be a list of strings")
        parsed.append(Scenario(name, description.strip(), tuple(dict.fromkeys(rules)), benign,
                               script, tuple(docker_args)))
    return parsed


def parse_catalogue(data: Any, source: str = _CATALOGUE_FILE) -> Catalogue:
    if not isinstance(data, Mapping):
        raise _bad(source, "top level must be a mapping")
    if data.get("version") != 1:
        raise _bad(source, f"unsupported version {data.get('version')!r} (expected 1)")
    scenarios = (_parse_entries(source, "scenarios", data.get("scenarios"), benign=False)
                 + _parse_entries(source, "benign", data.get("benign"), benign=True))
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.name in seen:
            raise _bad(source, f"scenario {scenario.name!r} is defined twice")
        seen.add(scenario.name)
    if not scenarios:
        raise _bad(source, "no scenarios defined")
    return Catalogue(tuple(scenarios), source)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The packaged catalogue, or one from `path` (a site's own expected rule names)."""
    try:
        if path is None:
            text = resources.files(__package__).joinpath(_CATALOGUE_FILE).read_text("utf-8")
            source = _CATALOGUE_FILE
        else:
            text = Path(path).read_text(encoding="utf-8")
            source = str(path)
    except OSError as exc:
        raise FalcoDeployError(f"cannot read scenario catalogue: {exc}",
                               exit_code=ExitCode.USAGE) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _bad(source, f"not valid YAML: {exc}") from None
    return parse_catalogue(data, source)


def rule_names(rules_yaml: str | Path) -> frozenset[str]:
    """Names of the enabled rules a Falco rules file defines (to decide what is "ours")."""
    try:
        documents = yaml.safe_load(Path(rules_yaml).read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise FalcoDeployError(f"cannot read rules file {rules_yaml}: {exc}",
                               exit_code=ExitCode.USAGE) from None
    if not isinstance(documents, list):
        return frozenset()
    return frozenset(
        item["rule"] for item in documents
        if isinstance(item, Mapping) and isinstance(item.get("rule"), str)
        and item.get("enabled", True) is not False and "append" not in item
        and "override" not in item
    )
