# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Controller side of falco_rules_release: answer read-only calls with one probe command.

A module call costs an AnsiballZ build on the controller plus a Python start that imports
Ansible's module_utils on the host; for `status`, and for a deploy whose release is already
live unchanged (the common no-op run), that is most of the run. Those two cases are answered by
piping module_utils/falco_rules_host.py (standard library only) to the host's python3 as a
script: one command, the same code the module runs, the same report. Anything the probe cannot
settle - a release that is not live, drift, rollback, a failed probe, a connection without
pipelining - runs the module as usual, so the probe only ever saves time.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.falco_deploy.falco.plugins.module_utils.falco_rules_host import (
    build_files,
)

display = Display()

HOST_CODE = Path(__file__).resolve().parent.parent / "module_utils" / "falco_rules_host.py"
# Options the probe reads; the rest only matter to a deploy or rollback that changes something.
PROBE_OPTIONS = ("base_rules_files", "falco_config", "rules_dir", "state_dir", "service_unit")




class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        answer = self._probe_answer(args, task_vars)
        if answer is not None:
            result.update(answer)
            return result
        result.update(self._execute_module(module_name="falco_deploy.falco.falco_rules_release",
                                           module_args=args, task_vars=task_vars))
        return result

    def _probe_answer(self, args: dict, task_vars: dict) -> dict | None:
        """The module's answer without the module, or None when only the module can answer."""
        action = args.get("action")
        want = ""
        if action == "deploy":
            release = args.get("release")
            if not isinstance(release, dict):
                return None
            try:
                # A release the module would refuse never counts as live (same check, here).
                build_files(release)
            except Exception:  # noqa: BLE001 - Refused or a malformed release: the module says
                return None
            want = str(release.get("sha256") or "")
        elif action != "status":
            return None
        probe = self._probe({**{k: args[k] for k in PROBE_OPTIONS if k in args},
                             "want_sha256": want}, task_vars)
        if probe is None or (action == "deploy" and not probe.get("live")):
            return None
        display.vvv(f"falco_rules_release: {action} answered by the probe, no module call",
                    host=task_vars.get("inventory_hostname"))
        # As the module reports its invocation: the release by id, never its contents.
        release_id = (args.get("release") or {}).get("id", "")
        return {"changed": False, "result": probe["result"],
                "invocation": {"module_args": {"action": action, "release": release_id}}}

    def _probe(self, options: dict, task_vars: dict) -> dict | None:
        """Run the probe on the host; None when it cannot run or says nothing usable."""
        if not self._is_pipelining_enabled("new"):
            return None  # the script travels on stdin, as a pipelined module would
        interpreter = self._python(task_vars)
        if not interpreter:
            return None
        cmd = f"{shlex.quote(interpreter)} -I - {shlex.quote(json.dumps(options))}"
        try:
            res = self._low_level_execute_command(cmd, sudoable=True,
                                                  in_data=HOST_CODE.read_bytes())
        except AnsibleConnectionFailure:
            raise  # unreachable: report it now rather than wait for the module to time out too
        except Exception as exc:  # noqa: BLE001 - any trouble: the module runs instead
            display.vvv(f"falco_rules_release probe failed ({exc}); running the module")
            return None
        if res.get("rc") != 0:
            display.vvv(f"falco_rules_release probe exited {res.get('rc')}: "
                        f"{res.get('stderr', '')[-500:]}; running the module")
            return None
        for line in reversed(res.get("stdout", "").splitlines()):
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
                return answer
        return None

    def _python(self, task_vars: dict) -> str:
        """The Python a module runs with; before interpreter discovery has run, `python3` from
        PATH (should that fail, the module runs and discovers)."""
        try:
            value = C.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars)
            value = self._templar.template(value) if value else ""
        except Exception:  # noqa: BLE001
            return ""
        if not value or str(value).startswith("auto"):
            value = task_vars.get("ansible_facts", {}).get("discovered_interpreter_python", "")
        return str(value or "python3")
