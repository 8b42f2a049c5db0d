"""Paths, sample rules and a throwaway /etc/falco tree for the stand-in tests.

A module of its own (not conftest) so test files import it by a name no other test folder uses.
"""

from __future__ import annotations

import json
import os
import signal
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
        text = text.replace("log_syslog: true", "log_syslog: false")  # keep the machine's log clean
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


class Daemon:
    def __init__(self, tree: FalcoTree, args: list[str]) -> None:
        self.tree = tree
        self.log_path = tree.base / f"falco-{len(list(tree.base.glob('falco-*.log')))}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, str(FALCO), "-c", str(tree.config), *args],
                                     env=tree.env, stdout=subprocess.DEVNULL, stderr=self._log,
                                     text=True)

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

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        finally:
            self._log.close()
