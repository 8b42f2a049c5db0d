"""Which Ansible configuration a run uses: the operator's, with the project's settings as defaults.

An operator who runs Ansible already has a configuration: `ANSIBLE_CONFIG`, `./ansible.cfg` in
the directory they run from, `~/.ansible.cfg` or `/etc/ansible/ansible.cfg`, found in that order
as ansible itself looks for it (ansible/config/manager.py, find_ini_config_file). Its vault,
connection, privilege and inventory settings must hold for our playbooks too. So:
- with an operator configuration, ansible reads theirs; the project's own settings (speed:
  pipelining, forks, no fact gathering, ...) are passed as environment variables only where
  neither their file nor their environment sets them;
- without one, ansible reads the project's ansible.cfg.
Either way the checkout (or the installed content) is found as the collection
falco_deploy.falco, first on the collections path.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from falco_deploy.project import Project

COLLECTION = ("falco_deploy", "falco")
DEFAULT_COLLECTIONS_PATH = "~/.ansible/collections:/usr/share/ansible/collections"

# The project's ansible.cfg settings, as the environment variables that set them
# (ansible-core's config definitions, ansible/config/base.yml). Only these are carried over.
PROJECT_SETTINGS = {
    ("defaults", "forks"): "ANSIBLE_FORKS",
    ("defaults", "gathering"): "ANSIBLE_GATHERING",
    ("defaults", "gather_subset"): "ANSIBLE_GATHER_SUBSET",
    ("defaults", "interpreter_python"): "ANSIBLE_PYTHON_INTERPRETER",
    ("defaults", "retry_files_enabled"): "ANSIBLE_RETRY_FILES_ENABLED",
    ("defaults", "callback_result_format"): "ANSIBLE_CALLBACK_RESULT_FORMAT",
    ("defaults", "timeout"): "ANSIBLE_TIMEOUT",
    ("ssh_connection", "pipelining"): "ANSIBLE_PIPELINING",
    ("ssh_connection", "ssh_args"): "ANSIBLE_SSH_ARGS",
}


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    # ansible reports a broken file itself; nothing is carried over from it
    with contextlib.suppress(configparser.Error, UnicodeDecodeError):
        parser.read(path, encoding="utf-8")
    return parser


def operator_config(cwd: Path, environ: Mapping[str, str]) -> Path | None:
    """The configuration file ansible would read for the operator, or None."""
    chosen = environ.get("ANSIBLE_CONFIG")
    candidates = [Path(chosen).expanduser()] if chosen else []
    home = environ.get("HOME")
    candidates += [cwd / "ansible.cfg"]
    candidates += [Path(home) / ".ansible.cfg"] if home else []
    candidates += [Path("/etc/ansible/ansible.cfg")]
    for path in candidates:
        if path.is_dir():
            path = path / "ansible.cfg"
        if path.is_file():
            return path.resolve()
    return None


def collection_root(project: Project, state_dir: Path) -> Path:
    """A collections path on which `falco_deploy.falco` is the project: the checkout's own
    .collections link, or one made under `state_dir` for installed content."""
    own = project.root / ".collections"
    link = own.joinpath("ansible_collections", *COLLECTION)
    if link.is_dir() and link.resolve() == project.root.resolve():
        return own
    digest = hashlib.sha256(str(project.root.resolve()).encode()).hexdigest()[:12]
    made = state_dir / "collections" / digest
    link = made.joinpath("ansible_collections", *COLLECTION)
    if not (link.is_symlink() and link.resolve() == project.root.resolve()):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(project.root.resolve(), target_is_directory=True)
        tmp.replace(link)
    return made


def settings_env(project: Project, cwd: Path, environ: Mapping[str, str],
                 state_dir: Path) -> dict[str, str]:
    """The environment a run gets for its configuration (see the module docstring)."""
    own = operator_config(cwd, environ)
    out: dict[str, str] = {}
    collections = str(collection_root(project, state_dir))
    if own is None or own == project.ansible_cfg.resolve():
        if project.ansible_cfg.is_file():
            out["ANSIBLE_CONFIG"] = str(project.ansible_cfg)
        theirs_paths = environ.get("ANSIBLE_COLLECTIONS_PATH") or DEFAULT_COLLECTIONS_PATH
    else:
        out["ANSIBLE_CONFIG"] = str(own)
        theirs = _read(own)
        ours = _read(project.ansible_cfg)
        for (section, key), var in PROJECT_SETTINGS.items():
            if var in environ or any(theirs.has_option(s, key) for s in theirs.sections()):
                continue
            if ours.has_option(section, key):
                out[var] = ours.get(section, key)
        theirs_paths = environ.get("ANSIBLE_COLLECTIONS_PATH") or _paths_of(theirs, own) \
            or DEFAULT_COLLECTIONS_PATH
    out["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([collections, theirs_paths])
    return out


def _paths_of(parser: configparser.ConfigParser, origin: Path) -> str:
    """collections_path(s) of a configuration file, relative entries made absolute as ansible
    makes them (relative to the file's folder)."""
    for key in ("collections_path", "collections_paths"):
        if parser.has_option("defaults", key):
            entries = [e.strip() for e in parser.get("defaults", key).split(os.pathsep)]
            return os.pathsep.join(
                str((origin.parent / os.path.expanduser(e)).resolve())
                if e and not os.path.isabs(os.path.expanduser(e)) else e for e in entries if e)
    return ""
