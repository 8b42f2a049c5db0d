# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Filters of the falco_forwarding role: the checks of its structured output variables.

A misspelt key of a Falcosidekick output (`hostprt`) would be ignored by Falcosidekick and the
output would quietly send nowhere, so the role refuses keys its documented lists do not hold.
"""

from __future__ import annotations

import re


def forwarding_unknown_keys(outputs, documented):
    """`output.key` for every key of `outputs` (output name -> dict of settings) that
    `documented` (output name -> list of keys) does not list; an output `documented` does not
    know is left to the unknown-output check, a non-dict output is reported as `output (not a
    dict)`."""
    problems = []
    for name, settings in (outputs or {}).items():
        if name not in documented:
            continue
        if not isinstance(settings, dict):
            problems.append(f"{name} (not a dict)")
            continue
        known = set(documented[name])
        problems.extend(f"{name}.{key}" for key in settings if key not in known)
    return problems


def forwarding_missing_keys(outputs, required):
    """`output.key` for every key `required` (output name -> list of keys) lists that an output
    of `outputs` lacks or leaves empty."""
    return [f"{name}.{key}" for name, settings in (outputs or {}).items()
            if isinstance(settings, dict) for key in required.get(name, [])
            if settings.get(key) in (None, "", [])]


# What the forwarders write when an alert did not leave the host (their journal since the
# verify run began):
# - Falcosidekick, per output: "[ERROR] : <Output> - <reason>" (upstream outputs/client.go,
#   log.Printf("[ERROR] : %v - %v", ...)).
# - rsyslog 8.2302: "action '<name>' suspended (module ...)" until "action '<name>' resumed",
#   with the cause in the lines before it ("cannot connect to ...", "omelasticsearch: we are
#   suspending ourselfs due to server failure ..."); a reply refusing documents is logged as
#   "error in elasticsearch reply: ..." (the documents go to the error file and are dropped),
#   a non-JSON reply as "omelasticsearch: could not parse JSON result" (plugins/omelasticsearch/
#   omelasticsearch.c).
# - Falco's http_output: "libcurl failed to perform call: <curl error>" (userspace/falco/
#   outputs_http.cpp). Falco does not look at the HTTP status: a 4xx/5xx answer is not logged.
_SUSPENDED = re.compile(r"action '([^']+)' suspended")
_RESUMED = re.compile(r"action '([^']+)' resumed")
_RSYSLOG_CAUSE = re.compile(r"cannot connect to|omelasticsearch:|error|failed", re.IGNORECASE)


def _rsyslog_problem(lines):
    suspended = {}
    for i, line in enumerate(lines):
        if m := _SUSPENDED.search(line):
            if m.group(1).startswith("falco_deploy_"):
                cause = next((lines[j] for j in range(i - 1, max(i - 4, -1), -1)
                              if _RSYSLOG_CAUSE.search(lines[j])
                              and not _SUSPENDED.search(lines[j])), "")
                suspended[m.group(1)] = cause
        elif m := _RESUMED.search(line):
            suspended.pop(m.group(1), None)
    rejected = [line for line in lines if "error in elasticsearch reply" in line
                or "could not parse JSON result" in line]
    if suspended:
        name, cause = next(iter(suspended.items()))
        return f"rsyslog action {name} is suspended" + (f": {_clean(cause)}" if cause else "")
    if rejected:
        return f"rsyslog: {_clean(rejected[-1])}"
    return ""


def _clean(line):
    """A journal line without rsyslog's trailing "[v8.2302.0 try https://...]" reference."""
    return re.sub(r"\s*\[v[0-9.]+ try [^]]*\]\s*$", "", line.strip())


def forwarding_verdict(record, alerts, lines, healthy=None):
    """Whether the alerts of a verify run left the host through its forwarder.

    record: the host's /var/lib/falco-deploy/forwarding.json (None: never set up); alerts: how
    many alerts the run's scenarios raised; lines: the forwarder's journal since the run began;
    healthy: Falcosidekick's /healthz answered (None: not asked). Returns {status, transport,
    alerts, reason} with status delivered, failed, no_alerts or not_configured."""
    transport = (record or {}).get("transport") or "none"
    result = {"status": "", "transport": transport, "alerts": int(alerts or 0), "reason": ""}
    lines = [str(line) for line in (lines or [])]
    if transport == "none":
        return {**result, "status": "not_configured",
                "reason": "no forwarding set up (falco_forwarding_transport none)"}
    problem = ""
    if transport == "falcosidekick":
        if healthy is False:
            problem = "falcosidekick does not answer /healthz"
        else:
            errors = [line for line in lines if "[ERROR]" in line]
            problem = f"falcosidekick: {_clean(errors[-1])}" if errors else ""
    elif transport == "rsyslog":
        problem = _rsyslog_problem(lines)
    elif transport == "http":
        errors = [line for line in lines if "libcurl failed to perform call" in line]
        problem = f"falco http_output: {_clean(errors[-1])}" if errors else ""
    if problem:
        return {**result, "status": "failed", "reason": problem}
    if not result["alerts"]:
        return {**result, "status": "no_alerts",
                "reason": "the scenarios raised no alert, so nothing was forwarded"}
    return {**result, "status": "delivered",
            "reason": f"{result['alerts']} alert(s) handed to {transport}, no forwarding error "
                      f"since the run began"}


class FilterModule:
    def filters(self):
        return {"forwarding_unknown_keys": forwarding_unknown_keys,
                "forwarding_missing_keys": forwarding_missing_keys,
                "forwarding_verdict": forwarding_verdict}
