"""execution-environment.yml renders a build context with everything the AWX / Automation
Platform image needs. Building the image needs a registry (the base image) and cannot happen
here; `ansible-builder create` and the context's own dependency introspection can, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from falco_deploy import __version__

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE = yaml.safe_load((ROOT / "execution-environment.yml").read_text())


def run(*argv: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> tuple[Path, Path]:
    """(the rendered build context, a collections path holding the built collection)."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(ROOT / "execution-environment.yml", work)
    run(BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", work / "dist",
        cwd=work)
    run(BIN / "ansible-builder", "create", "-f", work / "execution-environment.yml",
        "-c", work / "context", "--output-filename", "Containerfile", cwd=work)
    run(BIN / "ansible-galaxy", "collection", "install",
        work / "dist" / f"falco_deploy-falco-{__version__}.tar.gz", "-p", work / "collections",
        cwd=work)
    return work / "context", work / "collections"


def test_the_definition_installs_this_version_of_the_collection():
    assert EE["version"] == 3
    (collection,) = EE["dependencies"]["galaxy"]["collections"]
    tarball = f"falco_deploy-falco-{__version__}.tar.gz"
    assert collection == {"name": f"collections/{tarball}", "type": "file"}
    assert EE["additional_build_files"] == [{"src": f"dist/{tarball}", "dest": "collections"}]


def test_the_context_lists_ansible_runner_and_the_collection(context):
    ctx, _ = context
    containerfile = (ctx / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16,<2.20 ansible-runner>=2.4"' \
        in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    requirements = yaml.safe_load((ctx / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == EE["dependencies"]["galaxy"]["collections"]
    assert (ctx / "_build" / "collections" /
            f"falco_deploy-falco-{__version__}.tar.gz").is_file()


def test_the_image_would_get_our_python_and_system_dependencies(context):
    # The image build runs this very introspection over the installed collections
    # (the Containerfile's builder stage); here it runs over the built tarball, installed.
    ctx, collections = context
    out = run(sys.executable, ctx / "_build" / "scripts" / "introspect.py", "introspect",
              "--user-pip", ctx / "_build" / "requirements.txt", collections, cwd=ctx)
    deps = yaml.safe_load(out)
    assert "PyYAML>=6  # from collection user" in deps["python"]
    assert "git [platform:rpm platform:dpkg]  # from collection falco_deploy.falco" \
        in deps["system"]
