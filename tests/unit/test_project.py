"""Where the Ansible content is found: option, environment, wheel, checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import ENV_VAR, find_project


def make_project(root: Path, playbooks: tuple[str, ...] = ("install",)) -> Path:
    (root / "playbooks").mkdir(parents=True)
    (root / "roles").mkdir()
    for name in playbooks:
        (root / "playbooks" / f"{name}.yml").write_text("- hosts: all\n")
    return root


@pytest.fixture
def layout(tmp_path):
    """A fake installed package (site/falco_deploy) inside a fake checkout (src/wrapper/...)."""
    package = tmp_path / "src" / "wrapper" / "falco_deploy"
    package.mkdir(parents=True)
    return package


def test_option_wins_over_everything(tmp_path, layout):
    mine = make_project(tmp_path / "mine")
    make_project(layout / "_content")
    env = {ENV_VAR: str(make_project(tmp_path / "env"))}
    project = find_project(mine, environ=env, package_dir=layout)
    assert project.root == mine.resolve()
    assert project.source == "option"


def test_environment_before_wheel(tmp_path, layout):
    env_dir = make_project(tmp_path / "env")
    make_project(layout / "_content")
    project = find_project(None, environ={ENV_VAR: str(env_dir)}, package_dir=layout)
    assert (project.root, project.source) == (env_dir.resolve(), "environment")


def test_wheel_content_before_checkout(tmp_path, layout):
    make_project(tmp_path / "src")  # the checkout two levels above the package
    shipped = make_project(layout / "_content")
    project = find_project(None, environ={}, package_dir=layout)
    assert (project.root, project.source) == (shipped, "wheel")


def test_checkout_last(tmp_path, layout):
    checkout = make_project(tmp_path / "src")
    project = find_project(None, environ={}, package_dir=layout)
    assert (project.root, project.source) == (checkout, "checkout")
    assert project.playbook("install") == checkout / "playbooks" / "install.yml"
    assert project.roles_dir == checkout / "roles"
    assert project.ansible_cfg == checkout / "ansible.cfg"


def test_nothing_found_names_every_place(layout):
    with pytest.raises(FalcoDeployError) as err:
        find_project(None, environ={}, package_dir=layout)
    assert err.value.exit_code is ExitCode.ENVIRONMENT
    assert str(layout / "_content") in err.value.message
    assert str(layout.parent.parent) in err.value.message
    assert ENV_VAR in err.value.message
    assert "--project-dir" in err.value.hint


def test_bad_option_is_usage_error_without_fallback(tmp_path, layout):
    make_project(layout / "_content")
    with pytest.raises(FalcoDeployError) as err:
        find_project(tmp_path / "empty", environ={}, package_dir=layout)
    assert err.value.exit_code is ExitCode.USAGE


def test_bad_environment_is_environment_error(tmp_path, layout):
    make_project(layout / "_content")
    with pytest.raises(FalcoDeployError) as err:
        find_project(None, environ={ENV_VAR: str(tmp_path / "nope")}, package_dir=layout)
    assert err.value.exit_code is ExitCode.ENVIRONMENT
    assert ENV_VAR in err.value.message


def test_missing_playbook_is_environment_error(tmp_path):
    project = find_project(make_project(tmp_path / "p", playbooks=()), environ={})
    with pytest.raises(FalcoDeployError) as err:
        project.playbook("install")
    assert err.value.exit_code is ExitCode.ENVIRONMENT
    assert "install.yml" in err.value.message


def test_this_checkout_is_found_by_default():
    # Run from the source tree, the real package resolves to the repository root.
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "playbooks").is_dir():
        pytest.skip("no playbooks/ in this tree")
    project = find_project(None, environ={})
    assert project.root in (repo, repo / "wrapper" / "falco_deploy" / "_content")
