"""The host-side health check (plugins/module_utils/falco_rules_host.py) reads what the
stand-in writes exactly as it reads the recordings of a real Falco (tests/unit/
test_falco_rules_health.py): a good reload lists the loaded files, a bad one is a failure that
names its file and line, and the web server the restart started answers.

Locally the stand-in's logger writes to stderr and its outputs to stdout; on a host both reach
the journal through syslog, after systemd's own `Reloading ...` line, which is added here.
"""

from __future__ import annotations

import importlib.util
import re

from standin_support import ROOT, wait_for
from test_matches_real_falco import (
    BROKEN,
    PROJECT_RULES,
    STDERR_PREFIX,
    shape_like_recorded_host,
    start,
)

HOST_CODE = ROOT / "plugins" / "module_utils" / "falco_rules_host.py"
spec = importlib.util.spec_from_file_location("falco_rules_host", HOST_CODE)
frh = importlib.util.module_from_spec(spec)
spec.loader.exec_module(frh)


def entries_since(d, line: int, output: int) -> list[dict]:
    """The journal a host would hold after `systemctl reload`: systemd's line, then the
    logger's lines and the outputs' documents of the stand-in since the given positions."""
    entries = [{"ident": "systemd", "pid": 1, "message": "Reloading falco-modern-bpf.service"}]
    for raw in d.log().splitlines()[line:]:
        match = STDERR_PREFIX.match(raw)
        entries.append({"ident": "falco", "pid": d.proc.pid,
                        "message": raw[match.end():] if match else raw})
    for raw in d.stdout().splitlines()[output:]:
        entries.append({"ident": "falco", "pid": d.proc.pid, "message": raw})
    return entries


def finished(d, line: int, output: int):
    outcomes, pending, reload_at = frh.reload_outcomes(entries_since(d, line, output))
    ours = [o for o in outcomes if o["start"] > reload_at]
    return ours[0] if ours and not pending else None


def test_the_health_check_reads_a_good_and_a_bad_reload_of_the_standin(daemon, tree):
    host = shape_like_recorded_host(tree)
    (tree.rules_d / "falco-deploy_rules.yaml").write_bytes(PROJECT_RULES.read_bytes())
    d = start(daemon, host)

    line, output = len(d.log().splitlines()), len(d.stdout().splitlines())
    d.hup()
    good = wait_for(lambda: finished(d, line, output), timeout=15)
    assert good and good["ok"], d.log()
    assert good["loaded"][-1] == f"{tree.rules_d}/falco-deploy_rules.yaml"
    assert good["webserver"] == f"127.0.0.1:{tree.web_port}"
    status, body = frh.http_get("127.0.0.1", tree.web_port, "/healthz")
    assert (status, body) == (200, '{"status": "ok"}')

    line, output = len(d.log().splitlines()), len(d.stdout().splitlines())
    (tree.rules_d / "zz-broken.yaml").write_text(BROKEN)
    d.hup()
    bad = wait_for(lambda: finished(d, line, output), timeout=15)
    assert bad and not bad["ok"], d.log() + d.stdout()
    assert frh.report_summary(bad["detail"]) == re.sub(r"^/etc/falco", str(tree.etc), (
        "/etc/falco/rules.d/zz-broken.yaml:2:13: LOAD_ERR_COMPILE_CONDITION (Error compiling "
        "condition): filter_check called with nonexistent field nosuch.field"))
