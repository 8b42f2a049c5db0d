"""Find the Ansible content (playbooks/, roles/, rules/, inventories/, ansible.cfg) a run uses.

Lookup order, first match wins:
1. the `--project-dir` option (an operator's own checkout),
2. the FALCO_DEPLOY_PROJECT_DIR environment variable,
3. the content shipped inside the wheel at falco_deploy/_content/ (pyproject force-includes it),
4. the source checkout: the directory two levels above this package, when it holds playbooks/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode

ENV_VAR = "FALCO_DEPLOY_PROJECT_DIR"
_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Project:
    root: Path
    source: str  # which lookup step found it: option, environment, wheel, checkout

    @property
    def playbooks_dir(self) -> Path:
        return self.root / "playbooks"

    @property
    def roles_dir(self) -> Path:
        return self.root / "roles"

    @property
    def rules_dir(self) -> Path:
        return self.root / "rules"

    @property
    def ansible_cfg(self) -> Path:
        return self.root / "ansible.cfg"

    def playbook(self, name: str) -> Path:
        """playbooks/<name>.yml, or an ENVIRONMENT error naming the project that lacks it."""
        path = self.playbooks_dir / f"{name}.yml"
        if not path.is_file():
            raise FalcoDeployError(
                f"playbook {path} not found in the project at {self.root} ({self.source})",
                hint="point --project-dir at a complete falco-deploy checkout",
                exit_code=ExitCode.ENVIRONMENT,
            )
        return path


def _is_project(path: Path) -> bool:
    return (path / "playbooks").is_dir()


def find_project(project_dir: str | os.PathLike[str] | None = None,
                 *, environ: dict[str, str] | None = None,
                 package_dir: Path = _PACKAGE_DIR) -> Project:
    """Resolve the project root; `environ` and `package_dir` exist so tests can point elsewhere."""
    env = os.environ if environ is None else environ
    looked: list[str] = []

    # An explicit choice that does not hold content is an error, not a reason to fall back:
    # silently using other playbooks than the ones the operator named would be worse.
    if project_dir is not None:
        path = Path(project_dir).expanduser().resolve()
        if not _is_project(path):
            raise FalcoDeployError(
                f"--project-dir {path} holds no playbooks/ directory",
                hint="give the root of a falco-deploy checkout (the directory with playbooks/ "
                     "and roles/)",
                exit_code=ExitCode.USAGE,
            )
        return Project(path, "option")

    env_value = env.get(ENV_VAR)
    if env_value:
        path = Path(env_value).expanduser().resolve()
        if not _is_project(path):
            raise FalcoDeployError(
                f"{ENV_VAR}={path} holds no playbooks/ directory",
                hint=f"unset {ENV_VAR} or point it at the root of a falco-deploy checkout",
                exit_code=ExitCode.ENVIRONMENT,
            )
        return Project(path, "environment")
    looked.append(f"${ENV_VAR} (unset)")

    shipped = package_dir / "_content"
    if _is_project(shipped):
        return Project(shipped, "wheel")
    looked.append(str(shipped))

    checkout = package_dir.parent.parent
    if _is_project(checkout):
        return Project(checkout, "checkout")
    looked.append(str(checkout))

    raise FalcoDeployError(
        "cannot find the falco-deploy playbooks; looked in: " + ", ".join(looked),
        hint="pass --project-dir PATH (or set FALCO_DEPLOY_PROJECT_DIR) to a falco-deploy "
             "checkout, or reinstall the package from a wheel that ships its content",
        exit_code=ExitCode.ENVIRONMENT,
    )
