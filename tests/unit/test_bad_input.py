"""Bad input through the real `falco-deploy`, run as its own process the way an operator runs it:
each case ends with exactly one `Error:` line on stderr that says what is wrong and names the
option or path, an exit code of the README's table, no Python traceback, and nothing started on
any host. Only a --limit that matches no host needs ansible-playbook (ansible alone resolves
host patterns); every other case is refused before it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_cli_validate import GOOD

from falco_deploy.exitcodes import ExitCode
from known_secrets import LINKED_FILE_SECRET, write_input

ROOT = Path(__file__).resolve().parents[2]
# Each case's check is all that stands between it and a host, so the project's playbooks are
# replaced by plays that fail at their first task: a check that stops working fails its case
# instead of installing Falco on this machine.
STAND_IN_PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Reached a host
      ansible.builtin.fail:
        msg: a bad-input case reached a host
"""
# click's own lines around a usage error, besides its single "Error:" line.
CLICK_USAGE_LINES = ("Usage: ", "Try '")


@dataclass
class Bench:
    tmp: Path
    inventory: Path
    project: Path
    state: Path

    def ansible(self, *args: str) -> list[str]:
        """An Ansible-backed command on the bench's inventory and stand-in project."""
        command = list(args[:2]) if args[0] == "rules" else [args[0]]
        return [*command, "-i", str(self.inventory), "--project-dir", str(self.project),
                *args[len(command):]]

    def file(self, name: str, content: str | bytes = "") -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def folder(self, name: str, mode: int) -> Path:
        path = self.tmp / name
        path.mkdir()
        path.chmod(mode)  # explicit: the umask would take the group and other bits away
        return path

    def link(self, name: str, target: Path) -> Path:
        path = self.tmp / name
        path.symlink_to(target)
        return path

    def rules(self, kind: str) -> Path:
        """A rules folder with one good file and, as b.yaml, one source of this kind."""
        folder = self.tmp / f"rules-{kind}"
        folder.mkdir()
        (folder / "a.yaml").write_text(GOOD)
        bad = folder / "b.yaml"
        if kind == "symlink":
            bad.symlink_to(write_input(self.tmp / "secret.txt",
                                       f"password: {LINKED_FILE_SECRET}\n"))
        elif kind == "fifo":
            os.mkfifo(bad)
        elif kind == "50mb":
            with bad.open("wb") as handle:
                handle.truncate(50 * 1024 * 1024)  # sparse: nothing is written
        elif kind == "binary":
            bad.write_bytes(bytes(range(256)) * 4)
        elif kind == "not-utf8":
            bad.write_bytes(GOOD.replace("desc: d", "desc: caf\xe9").encode("latin-1"))
        return folder


@pytest.fixture
def bench(tmp_path) -> Bench:
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    for name in ("install", "rules_deploy", "rollback", "verify"):
        (project / "playbooks" / f"{name}.yml").write_text(STAND_IN_PLAY)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    web1:\n      ansible_connection: local\n"
                         "    web2:\n      ansible_connection: local\n")
    return Bench(tmp_path, inventory, project, tmp_path / "state")


@dataclass(frozen=True)
class Case:
    argv: Callable[[Bench], list[str]]
    code: ExitCode
    says: str  # a fragment of the error line; {tmp} is the bench's folder
    runs_ansible: bool = False


def _rules_cases() -> dict[str, Case]:
    says = {
        "symlink": "rules-symlink/b.yaml: is a symbolic link",
        "fifo": "rules-fifo/b.yaml: not a regular file",
        "50mb": "rules-50mb/b.yaml: 52428800 bytes, larger than the 4194304 bytes a rules file "
                "may have",
        "binary": "rules-binary/b.yaml: not a text file (a NUL byte at offset 0)",
        "not-utf8": "rules-not-utf8/b.yaml: not a text file (byte 0xe9 at offset 21 is not "
                    "UTF-8)",
    }
    cases = {}
    for kind, fragment in says.items():
        cases[f"rules-validate-{kind}"] = Case(
            lambda b, kind=kind: ["rules", "validate", "--engine", "builtin",
                                  str(b.rules(kind))],
            ExitCode.USAGE, fragment)
        cases[f"rules-deploy-{kind}"] = Case(
            lambda b, kind=kind: b.ansible("rules", "deploy", "--rules", str(b.rules(kind))),
            ExitCode.USAGE, fragment)
    return cases


CASES: dict[str, Case] = {
    "inventory-missing": Case(
        lambda b: ["install", "-i", str(b.tmp / "nope.yml"), "--project-dir", str(b.project)],
        ExitCode.USAGE, "inventory {tmp}/nope.yml does not exist"),
    "inventory-empty": Case(
        lambda b: ["install", "-i", str(b.file("empty.yml")), "--project-dir", str(b.project)],
        ExitCode.USAGE, "inventory {tmp}/empty.yml is empty: it names no host"),
    "inventory-malformed-yaml": Case(
        lambda b: ["install", "-i", str(b.file("bad.yml", "all:\n  hosts: [web1\n  web2: {\n")),
                   "--project-dir", str(b.project)],
        ExitCode.USAGE, "inventory {tmp}/bad.yml is not valid YAML: did not find expected ',' "
                        "or ']' (line 3, column 7)"),
    "limit-matches-no-host": Case(
        lambda b: b.ansible("install", "--check", "--limit", "db*"),
        ExitCode.FAILED, "no host matched the inventory and --limit db*", runs_ansible=True),
    **{f"serial-{value}": Case(
        lambda b, value=value: b.ansible("rules", "deploy", "--serial", value),
        ExitCode.USAGE, f"--serial '{value}' is neither a host count nor a percentage")
       for value in ("0", "-1", "150%")},
    # click's range check answers inf, -1 and 1e300; nan compares false with both bounds and
    # passes it, so the command's own check answers that one.
    "timeout-nan": Case(
        lambda b: b.ansible("verify", "--timeout", "nan"),
        ExitCode.USAGE, "--timeout must be a number of seconds from 0 to 3600 (got nan)"),
    **{f"timeout-{value}": Case(
        lambda b, value=value: b.ansible("verify", "--timeout", value),
        ExitCode.USAGE, f"Invalid value for '--timeout': {shown} is not in the range "
                        "0<=x<=3600")
       for value, shown in (("inf", "inf"), ("-1", "-1.0"), ("1e300", "1e+300"))},
    "rollback-to-a-path": Case(
        lambda b: b.ansible("rollback", "--to", "../../etc"),
        ExitCode.USAGE, "--to '../../etc' is not a release id"),
    # install takes its version from falco_package_version (-e); only rollback has the option.
    "install-package-version": Case(
        lambda b: b.ansible("install", "--package-version", "1;reboot"),
        ExitCode.USAGE, "No such option '--package-version'"),
    "rollback-package-version": Case(
        lambda b: b.ansible("rollback", "--package-version", "1;reboot"),
        ExitCode.USAGE, "--package-version '1;reboot' is not a package version"),
    "extra-vars-device": Case(
        lambda b: b.ansible("install", "-e", "@/dev/zero"),
        ExitCode.USAGE, "extra-vars file /dev/zero is not a regular file"),
    "junit-under-a-file": Case(
        lambda b: b.ansible("verify", "--junit", str(b.file("file") / "junit.xml")),
        ExitCode.USAGE, "--junit {tmp}/file/junit.xml cannot be written: {tmp}/file is not a "
                        "folder"),
    "artifacts-dir-symlink": Case(
        lambda b: b.ansible("install", "--artifacts-dir",
                            str(b.link("link", b.folder("real", 0o700)))),
        ExitCode.USAGE, "--artifacts-dir {tmp}/link is a symbolic link"),
    "artifacts-dir-world-writable": Case(
        lambda b: b.ansible("install", "--artifacts-dir", str(b.folder("open", 0o777))),
        ExitCode.USAGE, "--artifacts-dir {tmp}/open must be yours and mode 0700"),
    **_rules_cases(),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_clear_error(bench, case):
    argv = case.argv(bench)
    env = {key: value for key, value in os.environ.items()
           if key != "FALCO_DEPLOY_PROJECT_DIR"}
    env["XDG_STATE_HOME"] = str(bench.state)
    # The working tree's package, whatever is installed in the environment.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "wrapper"),
                                                      env.get("PYTHONPATH")]))
    # A timeout, so that a check that waits on the FIFO or reads /dev/zero fails its case.
    proc = subprocess.run([sys.executable, "-m", "falco_deploy", *argv], cwd=bench.tmp,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False)
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    assert "Traceback" not in proc.stdout + proc.stderr, shown
    assert proc.returncode == case.code, shown
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, shown
    assert case.says.format(tmp=bench.tmp) in errors[0], shown
    # Besides the error: at most its hint, or click's usage lines; nothing on stdout.
    others = [line for line in lines
              if not line.startswith(("Error: ", "Hint: ", *CLICK_USAGE_LINES))]
    assert others == [] and len(lines) <= 3, shown
    assert proc.stdout == "", shown
    # A symbolic link in a rules folder is never followed, so its target is never shown.
    assert LINKED_FILE_SECRET not in proc.stdout + proc.stderr

    runs = bench.state / "falco-deploy" / "runs"
    if case.runs_ansible:
        # ansible-playbook stopped before its first play: no task ran on any host.
        (run,) = runs.iterdir()
        ansible_said = (run / "stdout").read_text()
        assert "no hosts to target" in ansible_said and "TASK [" not in ansible_said
    else:
        assert not runs.exists(), "ansible-playbook was started"
