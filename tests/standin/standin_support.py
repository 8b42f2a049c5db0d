"""Paths, sample rules and a throwaway /etc/falco tree for the stand-in tests.

A module of its own (not conftest) so test files import it by a name no other test folder uses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "molecule" / "shared" / "standin-falco"
FALCO = STANDIN / "falco"
FALCOCTL = STANDIN / "falcoctl"
VALIDATOR_PARENT = ROOT / "wrapper" / "falco_deploy"
SHARED = Path(os.environ.get("FALCO_DEPLOY_SHARED", ROOT.parent / "shared"))
DEFAULT_RULES = SHARED / "corpus" / "falcosecurity-rules" / "main" / "falco_rules.yaml"

GOOD_RULE = """\
- rule: Stand-in test shell in container
  desc: A shell ran in a container. Tune with a local exception on proc.pname.
  condition: evt.type in (execve, execveat) and container.id != host and proc.name = bash
  output: Shell in container (user=%user.name container=%container.name)
  priority: WARNING
  tags: [container, shell]
"""

BROKEN_RULE = """\
- rule: Broken
  desc: bad field
  condition: evt.type = open and proc.nosuchfield = x
  output: x
  priority: WARNING
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never a fixed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not in the stand-in's falco.yaml exactly once"
    return text.replace(old, new)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class FalcoTree:
    """An /etc/falco laid out like the package, rooted in tmp, plus the env the scripts read."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.etc = base / "etc" / "falco"
        self.config_d = self.etc / "config.d"
        self.rules_d = self.etc / "rules.d"
        self.config_d.mkdir(parents=True)
        self.rules_d.mkdir()
        text = (STANDIN / "falco.yaml").read_text().replace("/etc/falco", str(self.etc))
        # Keep the machine's log clean: no logger and no output channel to syslog.
        text = _replace_once(text, "log_syslog: true", "log_syslog: false")
        text = _replace_once(text, "syslog_output:\n  enabled: true",
                             "syslog_output:\n  enabled: false")
        # The web server listens on loopback only, on a free port.
        self.web_port = free_port()
        text = _replace_once(text, "listen_address: 0.0.0.0", "listen_address: 127.0.0.1")
        text = _replace_once(text, "listen_port: 8765", f"listen_port: {self.web_port}")
        self.config = self.etc / "falco.yaml"
        self.config.write_text(text)
        (self.etc / "falco_rules.yaml").write_bytes(DEFAULT_RULES.read_bytes())
        (self.etc / "falco_rules.local.yaml").write_bytes(
            (STANDIN / "falco_rules.local.yaml").read_bytes())
        (self.config_d / "falco.container_plugin.yaml").write_bytes(
            (STANDIN / "falco.container_plugin.yaml").read_bytes())
        self.falcoctl_config = base / "etc" / "falcoctl" / "falcoctl.yaml"
        self.falcoctl_config.parent.mkdir(parents=True)
        self.falcoctl_config.write_bytes((STANDIN / "falcoctl.yaml").read_bytes())
        self.state = base / "run" / "falco" / "standin-state.json"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("FALCO")}
        self.env.update({
            "FALCO_STANDIN_LIB": str(VALIDATOR_PARENT),
            "FALCO_STANDIN_STATE": str(self.state),
            "FALCO_STANDIN_VERSION": "0.44.0",
            "PYTHONDONTWRITEBYTECODE": "1",
        })

    def falco(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(FALCO), "-c", str(self.config), *args],
                              env=self.env, text=True, capture_output=True, timeout=60,
                              check=check)

    def falcoctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(FALCOCTL), "--config",
                               str(self.falcoctl_config), *args],
                              env=self.env, text=True, capture_output=True, timeout=60)

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


class Background:
    """A program in the background with its stdout and stderr in files (stderr into stdout's
    file when no err_path is given); stop() ends it with SIGTERM and closes the files."""

    def __init__(self, argv: list[str], out_path: Path, err_path: Path | None = None,
                 env: dict | None = None) -> None:
        self.out_path = out_path
        self.err_path = err_path or out_path
        self._files = [out_path.open("w")]
        if err_path is not None:
            self._files.append(err_path.open("w"))
        self.proc = subprocess.Popen(argv, env=env, stdout=self._files[0],
                                     stderr=self._files[-1] if err_path else subprocess.STDOUT,
                                     text=True)

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        finally:
            for file in self._files:
                file.close()


class Daemon(Background):
    """The stand-in running in the background: its stderr (the logger) and stdout (the
    stdout_output channel) go to files in tmp."""

    def __init__(self, tree: FalcoTree, args: list[str]) -> None:
        self.tree = tree
        number = len(list(tree.base.glob("falco-*.log")))
        self.log_path = tree.base / f"falco-{number}.log"
        super().__init__([sys.executable, str(FALCO), "-c", str(tree.config), *args],
                         tree.base / f"falco-{number}.out", self.log_path, env=tree.env)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_state(self, predicate=lambda s: True, timeout: float = 15.0) -> dict:
        def ready():
            state = self.tree.read_state()
            return state if state and state["pid"] == self.proc.pid and predicate(state) else None
        state = wait_for(ready, timeout)
        assert state, f"no matching state; falco log:\n{self.log()}"
        return state

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)
