"""Every role's defaults/main.yml and meta/argument_specs.yml describe the same variables.

The specs are what `ansible-doc`, argument validation and the README show to operators; the
defaults are what actually applies. This test keeps them from drifting apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())

# Python type of a default for each argument_specs type.
SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "bool": (bool,),
    "int": (int,),
    "float": (float, int),
    "list": (list,),
    "dict": (dict,),
}


def _load(role: str, *parts: str):
    return yaml.safe_load((ROLES_DIR / role).joinpath(*parts).read_text(encoding="utf-8")) or {}


# Public outputs of one role that others take as inputs: declared in the reader's specs without
# a default (the reader runs the producing role when the value is missing).
CONTRACT_INPUTS = {"falco_preflight_result": "falco_preflight",
                   "falco_package_result": "falco_package",
                   "falco_driver_result": "falco_driver"}


def _all_options(role: str) -> dict:
    return _load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def _options(role: str) -> dict:
    """The role's own variables (contract inputs left out)."""
    return {k: v for k, v in _all_options(role).items() if k not in CONTRACT_INPUTS}


def _task_files(role: str) -> str:
    """What the role runs: tasks, vars, handlers, templates (not its docs or specs)."""
    return "\n".join(p.read_text(encoding="utf-8")
                     for part in ("tasks", "vars", "handlers", "templates")
                     for p in sorted((ROLES_DIR / role / part).glob("*")) if p.is_file())


def test_every_expected_role_exists():
    assert {"falco_preflight", "falco_package", "falco_driver", "falco_service"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_role_has_the_documented_layout(role):
    for part in ("defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml", "README.md"):
        assert (ROLES_DIR / role / part).is_file(), f"{role} lacks {part}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_specs_name_the_same_variables(role):
    defaults = set(_load(role, "defaults", "main.yml"))
    options = set(_options(role))
    assert defaults - options == set(), f"{role}: defaults without a spec"
    assert options - defaults == set(), f"{role}: specs without a default"


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role):
    for name in _load(role, "defaults", "main.yml"):
        assert name.startswith(f"{role}_"), f"{role}: {name} lacks the role prefix"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_equal_role_defaults(role):
    defaults = _load(role, "defaults", "main.yml")
    for name, spec in _options(role).items():
        assert "default" in spec, f"{role}: {name} has no default in its spec"
        assert spec["default"] == defaults[name], f"{role}: {name} default differs"


@pytest.mark.parametrize("role", ROLES)
def test_spec_types_match_defaults_and_choices(role):
    defaults = _load(role, "defaults", "main.yml")
    for name, spec in _options(role).items():
        assert spec.get("description"), f"{role}: {name} has no description"
        kind = spec.get("type")
        assert kind in SPEC_TYPES, f"{role}: {name} has unknown type {kind!r}"
        value = defaults[name]
        # bool is an int subclass; an int spec must not accept true/false.
        assert isinstance(value, SPEC_TYPES[kind]) and not (
            kind in ("int", "float") and isinstance(value, bool)
        ), f"{role}: {name} default {value!r} is not a {kind}"
        if kind == "list" and "elements" in spec:
            element_types = SPEC_TYPES[spec["elements"]]
            assert all(isinstance(v, element_types) for v in value), f"{role}: {name} elements"
        if "choices" in spec:
            chosen = value if kind == "list" else [value]
            assert set(chosen) <= set(spec["choices"]), f"{role}: {name} default not in choices"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_file_documents_every_group(role):
    """The defaults file is the manual: each block of variables is preceded by a comment."""
    lines = (ROLES_DIR / role / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    previous = ""
    for line in lines:
        top_level_key = line and not line.startswith((" ", "#", "-")) and ":" in line
        if top_level_key and previous.strip() == "":
            pytest.fail(f"{role}: {line.split(':')[0]} starts a group without a comment")
        previous = line


@pytest.mark.parametrize("role", ROLES)
def test_a_role_reading_a_contract_input_declares_it_and_runs_its_producer(role):
    """Roles do not read each other's private `__` variables. A role that reads another's public
    output declares it in its specs (no default: absent means "not run"); one it cannot do
    without (read with no `| default`) makes it run the producer first when it is missing, so
    the role works alone in an operator's playbook."""
    text = _task_files(role)
    main = _load(role, "tasks", "main.yml")
    for name, producer in CONTRACT_INPUTS.items():
        if role == producer or name not in text:
            continue
        spec = _all_options(role).get(name)
        assert spec and "default" not in spec and not spec.get("required"), (
            f"{role} reads {name} but its argument specs do not declare it as an optional input")
        uses = re.finditer(re.escape(name) + r"(?:\.\w+)*(?P<then>\s*\|\s*default|\s+is\s)?",
                           text)
        needed = [m.group(0) for m in uses if not m.group("then")]
        if needed:
            first = main[0]
            assert first.get("ansible.builtin.include_role", {}).get("name") == \
                f"falco_deploy.falco.{producer}", f"{role} needs {name}: {needed[0]}"
            assert first["when"] == f"{name} is not defined", f"{role}: {first}"
    for other in ROLES:
        if other != role:
            assert f"__{other}_" not in text.replace(f"__{role}_", ""), (
                f"{role} reads a private variable of {other}")


@pytest.mark.parametrize("role", ROLES)
def test_other_entry_points_use_the_role_defaults(role):
    """Entry points beside main (tasks_from) describe a subset of the same variables."""
    defaults = _load(role, "defaults", "main.yml")
    specs = _load(role, "meta", "argument_specs.yml")["argument_specs"]
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            if name in CONTRACT_INPUTS:
                continue
            assert name in defaults, f"{role}/{entry}: {name} has no default"
            assert option.get("default") == defaults[name], f"{role}/{entry}: {name} default"
            assert option.get("description"), f"{role}/{entry}: {name} has no description"
