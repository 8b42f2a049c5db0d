"""ansible-runner event dicts for the wrapper tests, shaped like real ones.

`recorded()` loads data/install_events_mixed.json: the job_events/ of a real run (ansible-core
2.19, ansible-runner 2.4) of a playbook following the falco_deploy_result contract on five hosts:
h1 changed and reported ok, h2 failed a task ("Hard fail", msg "boom\\nsecond line"), h3 was
skipped by preflight (BTF reason), h4 reported ok with nothing changed, `bad` was unreachable
(ssh to 127.0.0.1:1). Only `invocation`, `pid` and coloured stdout were removed.

`recorded("install_events_roles.json")` is a real `falco-deploy install` of this project's
playbooks/install.yml on systemd test hosts with the stand-in falco repository: host-ok was
installed (Falco 0.44.0, modern_ebpf, service running, CAP_SYS_RESOURCE finding), host-nobtf was
skipped by preflight (BTF path pointed at a missing file), host-gone was a container that did not
exist (the docker connection reports that as a failed task, not as unreachable). Module results
were trimmed to the keys the wrapper reads; host names and paths were neutralised.

The builders below produce the same shapes (copied from those runs) for cases they lack.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
_counter = itertools.count(1)


def recorded(name: str = "install_events_mixed.json") -> list[dict[str, Any]]:
    return json.loads((DATA / name).read_text())


def _event(kind: str, **event_data: Any) -> dict[str, Any]:
    return {
        "uuid": f"00000000-0000-0000-0000-{next(_counter):012d}",
        "counter": next(_counter),
        "stdout": "",
        "start_line": 0,
        "end_line": 0,
        "runner_ident": "test",
        "event": kind,
        "created": "2026-11-29T20:10:30.000000+00:00",
        "event_data": {"playbook": "playbooks/install.yml", "play": "Install", **event_data},
    }


def task_start(task: str) -> dict[str, Any]:
    return _event("playbook_on_task_start", task=task, name=task)


def start(host: str, task: str) -> dict[str, Any]:
    return _event("runner_on_start", host=host, task=task)


def ok(host: str, task: str, changed: bool = False, **res: Any) -> dict[str, Any]:
    return _event("runner_on_ok", host=host, task=task, remote_addr=host,
                  res={"changed": changed, "_ansible_no_log": False, **res})


def report(host: str, status: str = "ok", reason: str = "", findings: list[str] | None = None,
           falco_version: str = "0.40.0", driver: str = "modern_ebpf",
           service: str = "active") -> dict[str, Any]:
    result = {"status": status, "reason": reason, "findings": findings or [],
              "falco_version": falco_version, "driver": driver, "service": service}
    return ok(host, "Report the result", falco_deploy_result=result,
              _ansible_verbose_always=True)


def failed(host: str, task: str, msg: str, ignore_errors: bool | None = None,
           **res: Any) -> dict[str, Any]:
    return _event("runner_on_failed", host=host, task=task, remote_addr=host,
                  ignore_errors=ignore_errors,
                  res={"msg": msg, "changed": False, "exception": "(traceback unavailable)",
                       "_ansible_no_log": False, **res})


def skipped(host: str, task: str) -> dict[str, Any]:
    return _event("runner_on_skipped", host=host, task=task, remote_addr=host)


def unreachable(host: str, task: str, msg: str) -> dict[str, Any]:
    return _event("runner_on_unreachable", host=host, task=task, remote_addr=host,
                  res={"unreachable": True, "exception": "(traceback unavailable)", "msg": msg,
                       "changed": False, "_ansible_no_log": False})


def stats(**per_key: dict[str, int]) -> dict[str, Any]:
    keys = ("changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped")
    data = {k: dict(per_key.get(k, {})) for k in keys}
    return _event("playbook_on_stats", artifact_data={}, **data)


def no_hosts_matched() -> dict[str, Any]:
    return _event("playbook_on_no_hosts_matched")
