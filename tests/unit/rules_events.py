"""ansible-runner events of the rules playbooks (rules_deploy, rollback, status), built with the
same shapes as the recorded install runs in data/ (see install_events.py): the only difference
is the falco_deploy_result a host reports, which carries the rules keys of the contract."""

from __future__ import annotations

from typing import Any

from install_events import ok

RELEASE_OLD = "20261129T200000Z-0a1b2c3d"
RELEASE_NEW = "20261129T201500Z-9f8e7d6c"
SHA_OLD = "0a1b2c3d" + "1" * 56
SHA_NEW = "9f8e7d6c" + "2" * 56


def rules_report(host: str, status: str = "ok", reason: str = "",
                 release: str = RELEASE_NEW, release_sha256: str = SHA_NEW,
                 previous_release: str = RELEASE_OLD, drift: bool = False,
                 drift_files: list[str] | None = None, findings: list[str] | None = None,
                 falco_version: str = "0.44.0", driver: str = "modern_ebpf",
                 service: str = "active", **more: Any) -> dict[str, Any]:
    result = {"status": status, "reason": reason, "findings": findings or [],
              "falco_version": falco_version, "driver": driver, "service": service,
              "release": release, "release_sha256": release_sha256,
              "previous_release": previous_release, "drift": drift,
              "drift_files": drift_files or [], **more}
    return ok(host, "Report the result", falco_deploy_result=result,
              _ansible_verbose_always=True)
