"""plugins/filter/forwarding.py: the checks of falco_forwarding's variables, and the verdict
`falco-deploy verify` gives per host on whether the run's alerts left it.

The rsyslog journal is real: Debian 12's rsyslog 8.2302 on a test host of the Molecule
scenario `forwarding`, through a receiver outage and a restart during it
(data/forwarding/rsyslog-8.2302-outage.journal). The Falcosidekick and Falco lines are the
formats upstream's code writes (cited in the plugin).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("forwarding_filters",
                                               ROOT / "plugins" / "filter" / "forwarding.py")
forwarding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(forwarding)
JOURNAL = (Path(__file__).parent / "data" / "forwarding" /
           "rsyslog-8.2302-outage.journal").read_text().splitlines()
RSYSLOG = {"transport": "rsyslog", "unit": "rsyslog.service", "outputs": ["elasticsearch"]}


def cut(after: str, before: str | None = None) -> list[str]:
    """The journal from the first line containing `after` (to the first `before` after it)."""
    start = next(i for i, line in enumerate(JOURNAL) if after in line)
    end = next((i for i in range(start + 1, len(JOURNAL)) if before and before in JOURNAL[i]),
               len(JOURNAL))
    return JOURNAL[start:end]


def test_unknown_and_missing_keys_are_named():
    documented = {"webhook": ["address", "customheaders"]}
    outputs = {"webhook": {"adress": "x", "customheaders": {}}, "loky": {"hostport": "y"},
               "elasticsearch": "not a dict"}
    assert forwarding.forwarding_unknown_keys(outputs, documented) == ["webhook.adress"]
    assert forwarding.forwarding_unknown_keys({"webhook": "x"}, documented) == \
        ["webhook (not a dict)"]
    assert forwarding.forwarding_missing_keys(
        {"elasticsearch": {"server": ""}, "syslog": {"target": "h"}},
        {"elasticsearch": ["server"], "syslog": ["target"]}) == ["elasticsearch.server"]


def test_no_record_or_transport_none_is_not_configured():
    for record in (None, {}, {"transport": "none"}):
        verdict = forwarding.forwarding_verdict(record, 3, [])
        assert verdict["status"] == "not_configured" and verdict["transport"] == "none"


def test_rsyslog_suspended_without_resume_is_failed_with_its_cause():
    # From the second outage's first suspension to just before the receiver came back.
    lines = cut("falco_deploy_elasticsearch queue[DA]: queue files exist",
                "action 'falco_deploy_syslog' resumed")
    verdict = forwarding.forwarding_verdict(RSYSLOG, 5, lines)
    assert verdict["status"] == "failed"
    assert verdict["reason"].startswith("rsyslog action falco_deploy_")
    assert "suspended: " in verdict["reason"]
    assert "[v8.2302.0" not in verdict["reason"]  # rsyslog's reference link is cut off


def test_rsyslog_suspended_then_resumed_is_delivered():
    verdict = forwarding.forwarding_verdict(RSYSLOG, 5, cut("queue files exist"))
    assert verdict == {"status": "delivered", "transport": "rsyslog", "alerts": 5,
                       "reason": verdict["reason"]}
    assert verdict["reason"].startswith("5 alert(s) handed to rsyslog")


def test_no_alerts_is_said_as_such():
    assert forwarding.forwarding_verdict(RSYSLOG, 0, [])["status"] == "no_alerts"


def test_falcosidekick_output_error_or_dead_healthz_is_failed():
    record = {"transport": "falcosidekick"}
    lines = ["2026/12/02 05:39:01 [INFO]  : Webhook - Post OK (200)",
             "2026/12/02 05:39:02 [ERROR] : Webhook - unexpected Response (500)"]
    verdict = forwarding.forwarding_verdict(record, 2, lines, True)
    assert verdict["status"] == "failed"
    assert verdict["reason"].endswith("[ERROR] : Webhook - unexpected Response (500)")
    assert forwarding.forwarding_verdict(record, 2, lines[:1], True)["status"] == "delivered"
    assert forwarding.forwarding_verdict(record, 2, [], False)["reason"] == \
        "falcosidekick does not answer /healthz"


def test_falco_http_output_curl_failure_is_failed():
    record = {"transport": "http"}
    line = ("Tue Dec  2 05:39:02 2026: libcurl failed to perform call: Couldn't connect to "
            "server")
    verdict = forwarding.forwarding_verdict(record, 1, [line])
    assert verdict["status"] == "failed" and "Couldn't connect to server" in verdict["reason"]
    assert forwarding.forwarding_verdict(record, 1, [])["status"] == "delivered"
