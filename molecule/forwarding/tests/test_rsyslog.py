"""Transport rsyslog on fd-fwd-rsyslog: Debian's rsyslog (imfile, omelasticsearch, omfwd) reads
the JSON alert file and forwards to the receiver double on the host's loopback, which answers
as Elasticsearch's _bulk API and as a TCP syslog server.

Recorded real alerts are appended to the alert file as Falco's file_output writes them; the
tests assert on the exact documents and syslog messages they became, and count them through a
receiver outage and an rsyslog restart during one.
"""

from __future__ import annotations

import base64
import json
import shlex
import time

from conftest import (
    ALERT_FILE,
    SIEM_PASSWORD,
    append_alerts,
    forwarding_check,
    host_clock,
    poll,
    real_alerts,
    records,
)

CONF = "/etc/rsyslog.d/60-falco-deploy-forwarding.conf"
INDEX = "falco-alerts"


def alert_key(doc: dict) -> tuple:
    return (doc["time"], doc["rule"], doc["output"])


def delivered(h) -> tuple[list[dict], list[dict]]:
    """(Elasticsearch documents, syslog messages) the receiver got."""
    return records(h, "es_doc"), records(h, "syslog")


def wait_read(h, timeout: float = 30.0) -> bool:
    """imfile has submitted the whole alert file: its state file's offset is the file's size
    (persistStateAfterSubmission writes it after each batch)."""
    def done():
        size = h.file(ALERT_FILE).size
        state = h.run("cat /var/spool/rsyslog/imfile-state:* 2>/dev/null").stdout
        return f'"curr_offs": {size},' in state
    return poll(done, timeout=timeout)


def test_config_is_root_only_and_rsyslog_accepts_it(rsyslog):
    conf = rsyslog.file(CONF)
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o600)
    assert rsyslog.run("rsyslogd -N1").rc == 0
    assert rsyslog.service("rsyslog").is_running
    for package in ("rsyslog", "rsyslog-elasticsearch"):
        assert rsyslog.package(package).is_installed


def test_replayed_alerts_become_these_exact_documents(rsyslog):
    alerts = real_alerts()[:20]
    es_before, sl_before = (len(x) for x in delivered(rsyslog))
    append_alerts(rsyslog, alerts)
    poll(lambda: all(len(x) >= b + 20 for x, b in zip(delivered(rsyslog),
                                                      (es_before, sl_before), strict=True)),
         timeout=30)
    docs, messages = delivered(rsyslog)
    docs, messages = docs[es_before:], messages[sl_before:]
    wanted = [json.loads(a) for a in alerts]
    # Elasticsearch: the document is the alert, unchanged: rule, priority, output fields,
    # hostname and time as Falco wrote them; in the configured index, with basic auth.
    assert [d["doc"] for d in docs] == wanted
    assert {d["index"] for d in docs} == {INDEX}
    auth = {k.lower(): v for k, v in docs[0]["headers"].items()}["authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == f"falco:{SIEM_PASSWORD}"
    # Syslog over TCP: RFC 5424, octet-counted, app-name falco, the alert JSON as the message.
    assert [json.loads(m["msg"]) for m in messages] == wanted
    assert {(m["format"], m["framing"], m["app_name"], m["hostname"]) for m in messages} == \
        {("rfc5424", "octet-counting", "falco", "fd-fwd-rsyslog")}


def outage(rsyslog, alerts: list[str], restart: bool, kill: bool = False) -> dict:
    """Stop the receiver, replay half the alerts, (restart rsyslog, or kill it with SIGKILL and
    start it,) replay the rest, start the receiver again; count what arrived. Returns the
    numbers the test asserts and prints."""
    es_before, sl_before = (len(x) for x in delivered(rsyslog))
    half = len(alerts) // 2
    rsyslog.run("systemctl stop siem-receiver")
    try:
        append_alerts(rsyslog, alerts[:half])
        assert wait_read(rsyslog)
        if kill:
            assert rsyslog.run("systemctl kill -s KILL rsyslog").rc == 0
            assert poll(lambda: not rsyslog.service("rsyslog").is_running, timeout=15)
            assert rsyslog.run("systemctl start rsyslog").rc == 0
        elif restart:
            assert rsyslog.run("systemctl restart rsyslog").rc == 0
        append_alerts(rsyslog, alerts[half:])
        assert wait_read(rsyslog)
    finally:
        rsyslog.run("systemctl start siem-receiver")
    back = time.monotonic()
    want = {alert_key(json.loads(a)) for a in alerts}

    def arrived():
        docs, messages = delivered(rsyslog)
        es = [alert_key(d["doc"]) for d in docs[es_before:]]
        sl = [alert_key(json.loads(m["msg"])) for m in messages[sl_before:]]
        return (want <= set(es) and want <= set(sl)), es, sl
    poll(lambda: arrived()[0], timeout=90)
    _, es, sl = arrived()
    numbers = {"replayed": len(alerts), "restart": "SIGKILL" if kill else restart,
               "es_delivered": len(want & set(es)), "es_lost": len(want - set(es)),
               "es_duplicates": len(es) - len(set(es)),
               "syslog_delivered": len(want & set(sl)), "syslog_lost": len(want - set(sl)),
               "syslog_duplicates": len(sl) - len(set(sl)),
               "seconds_to_drain": round(time.monotonic() - back, 1)}
    print("outage measurement:", json.dumps(numbers))
    return numbers


def test_receiver_outage_loses_no_alert(rsyslog):
    numbers = outage(rsyslog, real_alerts()[20:60], restart=False)
    assert (numbers["es_lost"], numbers["syslog_lost"]) == (0, 0), numbers


def test_rsyslog_restart_during_the_outage_loses_no_alert(rsyslog):
    numbers = outage(rsyslog, real_alerts()[60:100], restart=True)
    assert (numbers["es_lost"], numbers["syslog_lost"]) == (0, 0), numbers


def test_rsyslog_killed_during_the_outage_loses_no_alert(rsyslog):
    """A crash (SIGKILL): the disk queue is written through at every alert, and imfile's read
    position is saved after each submission."""
    numbers = outage(rsyslog, real_alerts()[106:146], restart=True, kill=True)
    assert (numbers["es_lost"], numbers["syslog_lost"]) == (0, 0), numbers


def test_verify_check_says_failed_while_the_receiver_is_down_then_delivered(rsyslog):
    """The `forwarding` verdict of `falco-deploy verify`, judged from rsyslog's own journal."""
    since = host_clock(rsyslog)
    rsyslog.run("systemctl stop siem-receiver")
    try:
        append_alerts(rsyslog, real_alerts()[100:102])
        assert poll(lambda: "suspended" in rsyslog.run(
            f"journalctl -u rsyslog --since @{int(since)} -o cat").stdout, timeout=30)
        down = forwarding_check("fd-fwd-rsyslog", since, 2)
    finally:
        rsyslog.run("systemctl start siem-receiver")
    assert down["status"] == "failed", down
    assert down["reason"].startswith("rsyslog action falco_deploy_") and "suspended" in \
        down["reason"]
    # Once rsyslog has resumed both actions (its retry interval is 1 s here).
    assert poll(lambda: forwarding_check("fd-fwd-rsyslog", since, 2)["status"] == "delivered",
                timeout=60, interval=1)


def test_an_alert_in_syslog_output_form_is_not_forwarded_twice(rsyslog):
    """Were Falco's syslog_output also on, each alert would reach rsyslog a second time, as
    syslog(3) with ident falco, facility user and the JSON as message (falcosecurity/falco
    userspace/falco/outputs_syslog.cpp: syslog(priority, "%s", msg)). Only the alert file is
    forwarded: such a message lands in the host's own log and not at the SIEM."""
    alert = json.loads(real_alerts()[3])
    marker = f"fd-syslog-form-{time.time_ns()}"
    alert["output"] = f"{alert['output']} {marker}"
    es_before, sl_before = (len(x) for x in delivered(rsyslog))
    sent = rsyslog.run(f"logger -t falco -p user.crit -- {shlex.quote(json.dumps(alert))}")
    assert sent.rc == 0, sent.stderr
    # rsyslog has handled it once it is in /var/log/syslog (Debian's default rules).
    assert poll(lambda: marker in rsyslog.run(f"grep -F {marker} /var/log/syslog").stdout,
                timeout=30)
    # The forwarding ruleset saw nothing: an alert appended now arrives, and alone.
    append_alerts(rsyslog, real_alerts()[104:105])
    assert poll(lambda: len(delivered(rsyslog)[0]) > es_before
                and len(delivered(rsyslog)[1]) > sl_before, timeout=30)
    docs, messages = delivered(rsyslog)
    assert marker not in json.dumps([d["doc"] for d in docs[es_before:]])
    assert marker not in json.dumps([m["raw"] for m in messages[sl_before:]])
