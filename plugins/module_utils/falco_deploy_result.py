# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""The per-host report every falco-deploy playbook ends with: `falco_deploy_result`.

One task per host returns it (the falco_deploy_report action); `falco-deploy` reads it from the
event stream (wrapper/falco_deploy/results.py), an operator's playbook can register it, AWX shows
it in the job output. This module is its contract: the keys of each kind of report and the
status values they may carry. tests/unit/test_deploy_result.py pins both, and checks that the
wrapper reads nothing the contract does not promise.
"""

from __future__ import annotations

# Every report has these.
BASE_KEYS = ("status", "reason", "findings", "falco_version", "driver", "service")

# status values a host whose Falco does not protect it reports (falco_rules_host.health_status).
HEALTH_STATUSES = ("no_falco", "falco_down", "rules_missing")

# kind: (extra keys, status values). The keys of a report are exactly BASE_KEYS + its extras.
KINDS = {
    # falco_preflight (skipped) and falco_service (ok): install.
    "install": ((), ("ok", "skipped")),
    # falco_rules deploy, rollback and status: the module's report (falco_rules_host.report).
    "rules": (("falco_state", "main_pid", "restarts", "rules_dir_state", "health_checks",
               "release", "release_sha256", "previous_release", "drift", "drift_files",
               "releases", "validation", "plan", "seconds"),
              ("ok", "refused", "rolled_back") + HEALTH_STATUSES),
    # falco_uninstall: what went (check mode: would go) and what stayed.
    "uninstall": (("removed", "kept"), ("ok",)),
    # falco_forwarding (playbooks/forwarding.yml): where this host's alerts go now.
    "forwarding": (("transport", "outputs", "endpoint"), ("ok",)),
    # falco_verify: the judged scenarios of one host, and whether their alerts left the host
    # through the forwarder (forwarding: {status: delivered|not_configured|failed|no_alerts, ...}).
    "verify": (("verify_run_id", "docker_version", "image", "scenarios", "counts", "alert_file",
                "alert_file_exists", "alert_file_events", "alerts_ignored", "internal_documents",
                "containers_removed", "stale_containers_removed", "forwarding"),
               ("verified", "missed", "incomplete", "not_run")),
}


def keys(kind: str) -> tuple:
    return BASE_KEYS + KINDS[kind][0]


def build(kind: str, fields: dict) -> dict:
    """The report of `kind` from `fields`; ValueError names what breaks the contract (an unknown
    kind or status, a missing or unknown key, findings that are not a list)."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r} (one of {', '.join(KINDS)})")
    extras, statuses = KINDS[kind]
    wanted = keys(kind)
    defaults = {"reason": "", "findings": [], "falco_version": "", "driver": "", "service": ""}
    report = {**defaults, **fields}
    missing = [k for k in wanted if k not in report]
    unknown = sorted(set(report) - set(wanted))
    if missing or unknown:
        raise ValueError(f"{kind} report: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "",
                              f"unknown {', '.join(unknown)}" if unknown else "") if part))
    if report["status"] not in statuses:
        raise ValueError(f"{kind} report: status {report['status']!r} is not one of "
                         f"{', '.join(statuses)}")
    if not isinstance(report["findings"], list):
        raise ValueError(f"{kind} report: findings must be a list")
    report["findings"] = [str(f) for f in report["findings"]]
    for key in ("reason", "falco_version", "driver", "service"):
        report[key] = "" if report[key] is None else str(report[key]).strip()
    return {k: report[k] for k in wanted}
