"""Grep what the test runs left behind for the test secrets (tests/known_secrets.py).

Where runs leave things: pytest's base temporary folder (every tmp_path: the --artifacts-dir of
the CLI tests, XDG_STATE_HOME/falco-deploy/runs of the tests that set it, the Molecule logs),
the default falco-deploy state folder, ansible-runner private data folders that outlived their
run, and Molecule's ephemeral folders of this checkout. tests/conftest.py calls `locations` and
`scan` when the session ends.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    secret: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.secret}"


def _files(root: Path) -> Iterable[Path]:
    """Regular files under root; links are neither followed nor read (a test's link may point
    at one of its secret inputs on purpose)."""
    try:
        info = os.lstat(root)
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        yield root
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path
            except OSError:
                continue


def scan(roots: Iterable[Path], secrets: Iterable[str],
         skip: Collection[Path] = ()) -> list[Finding]:
    """Every line of every regular file under `roots` that holds one of `secrets` (a file
    holding one several times on a line counts once per line), except the files in `skip`."""
    needles = [(s, s.encode()) for s in secrets if s]
    skipped = {Path(p).resolve() for p in skip}
    findings: list[Finding] = []
    seen: set[Path] = set()
    for root in roots:
        for path in _files(root):
            real = path.resolve()
            if real in skipped or real in seen:
                continue
            seen.add(real)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for secret, needle in needles:
                lines = set()
                at = data.find(needle)
                while at != -1:
                    lines.add(data.count(b"\n", 0, at) + 1)
                    at = data.find(needle, at + 1)
                findings += [Finding(path, line, secret) for line in sorted(lines)]
    return sorted(findings, key=lambda f: (str(f.path), f.line, f.secret))


def run_folders(roots: Iterable[Path]) -> list[Path]:
    """The artifact folders of finished ansible-runner runs under `roots`: job_events/ with
    stdout, status and rc beside it (the unit tests' stand-ins write only some of them)."""
    found = []
    for root in roots:
        if not root.is_dir() or root.is_symlink():
            continue
        for folder, dirs, files in os.walk(root):
            if "job_events" in dirs and {"stdout", "status", "rc"} <= set(files):
                found.append(Path(folder))
    return found


def _changed_since(path: Path, since: float) -> bool:
    """The folder, or anything in it, was written to since `since`."""
    try:
        if path.lstat().st_mtime >= since:
            return True
    except OSError:
        return False
    return any(_mtime(p) >= since for p in _files(path))


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def molecule_ephemeral_dirs(environ: Mapping[str, str], home: Path) -> list[Path]:
    """Molecule's ephemeral folders of this checkout's scenarios: molecule keeps them in
    ansible-compat's cache folder, $VIRTUAL_ENV/.ansible when a virtualenv is active, else
    $ANSIBLE_HOME or ~/.ansible (ansible_compat.prerun.get_cache_dir, isolated=False), as
    tmp/molecule.<checksum of the project folder's name>.<scenario>."""
    try:
        from molecule.text import checksum
    except ImportError:  # no Molecule here: no Molecule run either
        return []
    caches = [Path(environ.get("ANSIBLE_HOME") or home / ".ansible")]
    if environ.get("VIRTUAL_ENV"):
        caches.insert(0, Path(environ["VIRTUAL_ENV"]).resolve() / ".ansible")
    prefix = f"molecule.{checksum(REPO_ROOT.name, 4)}."
    return [cache / "tmp" / f"{prefix}{scenario.parent.name}"
            for cache in caches for scenario in sorted(REPO_ROOT.glob("molecule/*/molecule.yml"))]


def locations(basetemp: Path | None, since: float,
              environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where the runs of a session that started at `since` (a time.time()) left things. Outside
    basetemp only what changed since then: another session's leftovers are not this one's."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    roots = [basetemp] if basetemp is not None else []
    # falco-deploy's default state folder (runner.state_home), for a run given no other.
    xdg = env.get("XDG_STATE_HOME", "")
    state = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".local" / "state"
    runs = state / "falco-deploy" / "runs"
    if runs.is_dir():
        roots += [p for p in runs.iterdir() if _changed_since(p, since)]
    # runner.run_playbook's private data folders are removed when the run ends; one that is
    # still there belongs to a run that was killed.
    tmp = Path(tempfile.gettempdir())
    roots += [p for p in tmp.glob("falco-deploy-*") if p.is_dir() and _changed_since(p, since)]
    roots += [p for p in molecule_ephemeral_dirs(env, home) if _changed_since(p, since)]
    return roots
