"""Runs a playbook through ansible-runner. The only module that imports ansible_runner.

Each run gets a private, throwaway data dir; its artifacts (job_events/, stdout, rc, status,
command) go to one predictable directory that outlives the run and that the summary names:
$XDG_STATE_HOME/falco-deploy/runs/<UTC timestamp>-<command> unless the operator picks one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from falco_deploy.ansible_config import settings_env
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import Project
from falco_deploy.redact import Redactor, extra_vars_secrets, redact_env, redact_text

EventCallback = Callable[[dict[str, Any]], None]


def state_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    # XDG Base Directory spec: an unset, empty or relative XDG_STATE_HOME means ~/.local/state.
    value = env.get("XDG_STATE_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path(env.get("HOME") or Path.home()) / ".local" / "state"


def artifacts_dir_for(command: str, chosen: str | os.PathLike[str] | None = None, *,
                      environ: Mapping[str, str] | None = None,
                      now: datetime | None = None) -> Path:
    """The directory this run's artifacts go to.

    A `chosen` one is made here, 0700, when it does not exist; an existing one must be a real
    folder (not a symbolic link), owned by this user, 0700 and without the artifacts of another
    run: the run writes as this user (often root) into it, and another user's or a
    world-writable folder could hold links that make it overwrite any file.
    """
    if chosen is not None:
        path = Path(os.path.abspath(Path(chosen).expanduser()))
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            pass
        except OSError as exc:
            raise _artifacts_error(path, f"cannot be made: {exc.strerror or exc}") from None
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise _artifacts_error(path, "is a symbolic link")
        if not stat.S_ISDIR(info.st_mode):
            raise _artifacts_error(path, "is not a folder")
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise _artifacts_error(path, f"must be yours and mode 0700 (it is uid "
                                         f"{info.st_uid}, {stat.S_IMODE(info.st_mode):04o})")
        if (path / "job_events").exists():
            raise _artifacts_error(path, "already holds the artifacts of a run")
        return path
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    runs = state_home(environ) / "falco-deploy" / "runs"
    path = runs / f"{stamp}-{command}"
    n = 2
    while path.exists():  # two runs within one second
        path = runs / f"{stamp}-{command}-{n}"
        n += 1
    return path


def _artifacts_error(path: Path, problem: str) -> FalcoDeployError:
    return FalcoDeployError(
        f"--artifacts-dir {path} {problem}",
        hint="give a new folder, or leave --artifacts-dir out to get a fresh one under the "
             "state directory", exit_code=ExitCode.USAGE)


# Runs kept under the state directory (the oldest go first); FALCO_DEPLOY_KEEP_RUNS changes it,
# 0 keeps every run.
DEFAULT_KEEP_RUNS = 50
_RUN_NAME = re.compile(r"[0-9]{8}T[0-9]{6}Z-[a-z-]+(-[0-9]+)?")


def keep_runs(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get("FALCO_DEPLOY_KEEP_RUNS", "")
    if not raw:
        return DEFAULT_KEEP_RUNS
    if not raw.isdigit():
        raise FalcoDeployError(f"FALCO_DEPLOY_KEEP_RUNS={raw!r} is not a number of runs",
                               hint="e.g. 50; 0 keeps every run")
    return int(raw)


def prune_runs(runs: Path, keep: int) -> list[Path]:
    """Remove the oldest run folders beyond `keep` (names sort by time); only folders named
    like a run, and never a link."""
    if keep <= 0 or not runs.is_dir():
        return []
    found = sorted(p for p in runs.iterdir()
                   if _RUN_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    gone = found[:max(0, len(found) - keep)]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def redact_artifacts(artifacts: Path, ours: Mapping[str, str],
                     redactor: Redactor | None = None) -> None:
    """ansible-runner's `command` file holds the whole environment and every argument: keep
    what explains the run (our variables, ANSIBLE_*, PATH), with secrets masked. Then every
    other file (stdout, job_events/, fact_cache/) through `redactor`: what ansible printed
    or reported is kept, minus URL credentials and the secrets the run was given."""
    import json

    path = artifacts / "command"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict):
        doc["command"] = [redact_text(str(arg)) for arg in doc.get("command") or []]
        doc["env"] = redact_env(doc.get("env") or {}, keep=set(ours))
        tmp = path.with_name(".command.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
        os.replace(tmp, path)
    redactor = redactor or Redactor()
    for folder, _, names in os.walk(artifacts):
        for name in names:
            file = Path(folder) / name
            try:
                redactor.file(file)
            except OSError:
                # It holds a secret and no masked copy could be written (disk full): better
                # no file than that one.
                with contextlib.suppress(OSError):
                    file.unlink()


@dataclass
class PlaybookRun:
    project: Project
    playbook: Path
    inventories: list[Path]
    artifacts_dir: Path
    limit: str | None = None
    check: bool = False
    diff: bool = False
    # Passed one by one as `-e VALUE`, so key=value, @file and inline YAML/JSON mean exactly
    # what they mean to ansible-playbook. @file paths must already be absolute (the run's cwd is
    # the project, not the operator's directory).
    extra_vars: list[str] = field(default_factory=list)
    verbosity: int = 0
    forks: int | None = None
    # ansible-playbook's own connection, privilege, vault and tag options, passed unchanged
    # (paths already absolute: the run's cwd is the project).
    remote_user: str | None = None
    private_key: Path | None = None
    ask_become_pass: bool = False
    ask_vault_pass: bool = False
    vault_ids: list[str] = field(default_factory=list)
    vault_password_files: list[Path] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    skip_tags: list[str] = field(default_factory=list)
    # Answers to ansible-playbook's password prompts, {prompt regex: password}: ansible-runner
    # types them into its pty. Never on a command line, in a file or in a repr.
    passwords: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class RunnerOutcome:
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    artifacts_dir: Path
    signum: int | None = None  # canceled: the signal that stopped the run

    @property
    def canceled(self) -> bool:
        return self.status == "canceled"

    def stdout_tail(self, lines: int = 8) -> str:
        """Last lines of ansible's own output, colour codes stripped: what explains a crash."""
        import re

        try:
            text = (self.artifacts_dir / "stdout").read_text(errors="replace")
        except OSError:
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r", "")
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


def _ansible_playbook_dir() -> Path:
    """Directory holding ansible-playbook: PATH first, then next to this interpreter, because a
    venv's console scripts are not on PATH unless the venv is activated."""
    found = shutil.which("ansible-playbook")
    if found:
        return Path(found).parent
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside.parent
    raise FalcoDeployError(
        "ansible-playbook not found on PATH nor next to " + sys.executable,
        hint="install ansible-core into the same environment as falco-deploy "
             "(pip install falco-deploy pulls it in)",
        exit_code=ExitCode.ENVIRONMENT,
    )


def build_env(project: Project, bin_dir: Path, environ: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> dict[str, str]:
    """The environment ansible-playbook gets on top of the operator's: our bin dir on PATH,
    the operator's Ansible configuration with the project's settings as defaults, and the
    project as the collection falco_deploy.falco (falco_deploy.ansible_config)."""
    env = os.environ if environ is None else environ
    out = {
        "PATH": os.pathsep.join([str(bin_dir), env.get("PATH", "")]).rstrip(os.pathsep),
        # An inventory that does not parse is the operator's error; by default ansible only
        # warns and runs on no host, which would read as "no host matched".
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
    }
    out.update(settings_env(project, cwd or Path.cwd(), env,
                            state_home(env) / "falco-deploy"))
    return out


def vault_args(run: PlaybookRun, interactive: bool = True) -> list[str]:
    """--vault-id / --vault-password-file / --ask-vault-pass; without `interactive`, only
    what needs no prompt (for ansible runs that cannot be answered, like --list-hosts)."""
    args: list[str] = []
    if run.ask_vault_pass and interactive:
        args.append("--ask-vault-pass")
    for value in run.vault_ids:
        if interactive or not value.endswith("@prompt"):
            args += ["--vault-id", value]
    for path in run.vault_password_files:
        args += ["--vault-password-file", str(path)]
    return args


def build_cmdline(run: PlaybookRun) -> str:
    """ansible-playbook's options besides playbook, inventory, limit, forks and verbosity
    (ansible-runner takes those as arguments of their own)."""
    args: list[str] = []
    if run.check:
        args.append("--check")
    if run.diff:
        args.append("--diff")
    if run.remote_user:
        args += ["--user", run.remote_user]
    if run.private_key:
        args += ["--private-key", str(run.private_key)]
    if run.ask_become_pass:
        args.append("--ask-become-pass")
    args += vault_args(run)
    if run.tags:
        args += ["--tags", ",".join(run.tags)]
    if run.skip_tags:
        args += ["--skip-tags", ",".join(run.skip_tags)]
    for value in run.extra_vars:
        args += ["-e", value]
    return shlex.join(args)


class _Interrupt:
    """Ctrl-C, SIGTERM or SIGHUP during a run. ansible-playbook runs on its own pty, so the
    terminal's SIGINT does not reach it; ansible-runner's cancel SIGKILLs its process group, but
    ansible's workers call setsid() (ansible/executor/process/worker.py) and would be left
    running. So the first signal forwards SIGINT to ansible-playbook, which stops its workers
    and exits; only if it is still there after GRACE seconds, or on a second signal,
    ansible-runner kills it. Either way the run ends normally from here on: the summary is
    printed and the exit code says which signal (ExitCode.INTERRUPTED, TERMINATED, HANGUP).
    The previous handlers come back afterwards (ansible-runner's own would stay installed)."""

    GRACE = 10.0
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested_at: float | None = None
        self.force = False
        self.pid: int | None = None  # ansible-playbook's, from the events' `pid`
        self.signum: int | None = None  # the first signal received
        self.previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def _on_sigint(self, signum: int = signal.SIGINT, *_: object) -> None:
        if self.requested:
            self.force = True
            return
        self.signum = signum
        self.requested_at = time.monotonic()
        if self.pid is None:
            self.force = True
            return
        try:
            os.kill(self.pid, signal.SIGINT)
        except OSError:
            self.force = True

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def __call__(self) -> bool:
        """ansible-runner's cancel_callback: True makes it kill ansible-playbook."""
        if self.requested_at is None:
            return False
        return self.force or time.monotonic() - self.requested_at > self.GRACE


def run_playbook(run: PlaybookRun, on_event: EventCallback | None = None) -> RunnerOutcome:
    try:
        import ansible_runner
    except ImportError as exc:
        raise FalcoDeployError(
            f"cannot import ansible_runner ({exc})",
            hint="pip install ansible-runner (a dependency of falco-deploy) into this environment",
            exit_code=ExitCode.ENVIRONMENT,
        ) from exc

    bin_dir = _ansible_playbook_dir()

    stop = _Interrupt()
    redactor = Redactor(extra_vars_secrets(run.extra_vars) | set(run.passwords.values()))

    def handle(event: dict[str, Any]) -> bool:
        # Only forward: drawing is the renderer's business. True keeps the event in job_events/.
        if stop.pid is None and isinstance(event.get("pid"), int):
            stop.pid = event["pid"]
        # ansible-runner writes this same dict to job_events/ once we return: masked here, the
        # secrets reach neither that file nor the progress lines, the summary or the envelope.
        clean = redactor.value(event)
        event.clear()
        event.update(clean)
        if on_event is not None:
            on_event(event)
        return True

    # Artifacts hold the module output of a run: keep them to their owner.
    run.artifacts_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    envvars = build_env(run.project, bin_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="falco-deploy-") as private, stop:
            runner = ansible_runner.run(
                private_data_dir=private,
                project_dir=str(run.project.root),
                playbook=str(run.playbook),
                inventory=[str(p) for p in run.inventories],
                limit=run.limit,
                cmdline=build_cmdline(run) or None,
                verbosity=run.verbosity or None,
                forks=run.forks,
                passwords=run.passwords or None,
                # The passwords stay in memory: no env/ files in the private data dir either.
                suppress_env_files=True,
                envvars=envvars,
                artifact_dir=str(run.artifacts_dir.parent),
                ident=run.artifacts_dir.name,
                event_handler=handle,
                cancel_callback=stop,
                quiet=True,
            )
    finally:
        # Also when the run ends in an exception: ansible's stdout was written as it came, and
        # events that bypassed the handler (partial files of a killed run) are on disk too.
        redact_artifacts(run.artifacts_dir, envvars, redactor)
    if run.artifacts_dir.parent == state_home() / "falco-deploy" / "runs":
        prune_runs(run.artifacts_dir.parent, keep_runs())
    # ansible-playbook stopped by our SIGINT ends as "failed" (rc 99); it was still a signal.
    status = "canceled" if stop.requested else runner.status
    return RunnerOutcome(status=status, rc=int(runner.rc if runner.rc is not None else -1),
                         artifacts_dir=run.artifacts_dir, signum=stop.signum)


def list_hosts(run: PlaybookRun, timeout: float = 120) -> list[str]:
    """The hosts `run` targets (inventory, --limit and the plays' patterns), in inventory order,
    from `ansible-playbook --list-hosts`: nothing runs on any host. Empty when ansible cannot say.
    """
    import subprocess

    bin_dir = _ansible_playbook_dir()
    cmd = [str(bin_dir / "ansible-playbook"), "--list-hosts", str(run.playbook)]
    for inventory in run.inventories:
        cmd += ["-i", str(inventory)]
    if run.limit:
        cmd += ["--limit", run.limit]
    for value in run.extra_vars:  # play patterns or serial may depend on variables
        cmd += ["-e", value]
    # A vaulted inventory needs its secret; prompts cannot be answered here (then: no list).
    cmd += vault_args(run, interactive=False)
    env = {**os.environ, **build_env(run.project, bin_dir)}
    try:
        proc = subprocess.run(cmd, cwd=run.project.root, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    hosts: list[str] = []
    indent: int | None = None
    # Output per play: "    hosts (2):" then one host per line, indented deeper.
    for line in proc.stdout.splitlines():
        stripped = line.strip()
        width = len(line) - len(line.lstrip())
        if stripped.startswith("hosts (") and stripped.endswith("):"):
            indent = width
            continue
        if indent is not None and stripped and width > indent:
            if stripped not in hosts:
                hosts.append(stripped)
            continue
        indent = None
    return hosts
