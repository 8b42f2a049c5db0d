"""The scenario catalogue of `falco-deploy verify`, read and checked before any host is touched.

The catalogue is the falco_verify role's files/scenarios.yml (or a site's own file, --catalogue),
and it is checked with the collection's plugins/module_utils/falco_verify_judge.py: the code
each host checks it with, loaded by path (standard library only), so the two never disagree.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from types import ModuleType

import yaml

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import Project

# Run id: UTC start time plus a random suffix, e.g. 20261129T190808-3fa9c1; scenario containers
# are named purple-<run id>-<scenario> (the role checks the same pattern).
RUN_ID_RE = re.compile(r"\d{8}T\d{6}-[0-9a-z]{1,16}")


@cache
def judge_module(project: Project) -> ModuleType:
    """plugins/module_utils/falco_verify_judge.py of the project (the collection)."""
    path = project.root / "plugins" / "module_utils" / "falco_verify_judge.py"
    spec = importlib.util.spec_from_file_location("falco_verify_judge", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FalcoDeployError(f"the falco_verify role's judge is missing: {path}",
                               exit_code=ExitCode.ENVIRONMENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_catalogue(project: Project) -> Path:
    return project.roles_dir / "falco_verify" / "files" / "scenarios.yml"


def load(project: Project, path: str | None = None) -> list[dict]:
    """The checked scenarios of the catalogue at `path` (default: the role's)."""
    source = Path(path) if path else default_catalogue(project)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FalcoDeployError(f"cannot read scenario catalogue {source}: {exc.strerror}",
                               exit_code=ExitCode.USAGE) from None
    except yaml.YAMLError as exc:
        raise FalcoDeployError(f"scenario catalogue {source} is not valid YAML: {exc}",
                               exit_code=ExitCode.USAGE) from None
    judge = judge_module(project)
    try:
        return judge.check_catalogue(data, str(source))
    except judge.CatalogueError as exc:
        raise FalcoDeployError(str(exc), hint=f"see the comments at the top of "
                               f"{default_catalogue(project)}",
                               exit_code=ExitCode.USAGE) from None


def select(project: Project, scenarios: list[dict], names: list[str]) -> list[dict]:
    judge = judge_module(project)
    try:
        return judge.select(scenarios, names)
    except judge.CatalogueError as exc:
        raise FalcoDeployError(str(exc), exit_code=ExitCode.USAGE) from None


def new_run_id(now: datetime | None = None) -> str:
    """A fresh run id: sortable by start time, unique through a random suffix."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
