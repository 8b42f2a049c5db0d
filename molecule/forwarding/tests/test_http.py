"""Transport http on fd-fwd-http: Falco's own http_output straight to a collector URL with
credentials. The stand-in Falco never alerts, so a recorded real alert is POSTed as Falco's
http_output sends it, to the URL the drop-in gives Falco."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlsplit

import yaml

from conftest import (
    COLLECTOR_TOKEN,
    forwarding_check,
    host_clock,
    host_stats,
    poll,
    real_alerts,
    records,
    run_playbook,
)

NAME = "fd-fwd-http"
DROPIN = "/etc/falco/config.d/70-falco-deploy-forwarding.yaml"
STANDIN_STATE = "/run/falco/standin-state.json"


def reloads(h) -> int:
    return json.loads(h.file(STANDIN_STATE).content_string)["reload_count"]


def test_dropin_is_root_only_and_carries_the_collector_url(collector):
    dropin = collector.file(DROPIN)
    assert (dropin.user, dropin.group, dropin.mode) == ("root", "root", 0o600)
    config = yaml.safe_load(dropin.content_string)
    output = config.pop("http_output")
    assert config == {"json_output": True, "json_include_output_property": True}
    url = urlsplit(output.pop("url"))
    assert output == {"enabled": True, "user_agent": "falcosecurity/falco"}
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "127.0.0.1", 8080, "/falco")
    assert url.password == COLLECTOR_TOKEN, "the collector credentials did not land"


def test_a_recorded_alert_posted_as_falco_does_reaches_the_collector(collector):
    """Falco's http_output: POST, body the JSON alert, Content-Type application/json,
    User-Agent http_output.user_agent; credentials from the URL (libcurl: basic auth)."""
    alert = real_alerts()[7]
    url = yaml.safe_load(collector.file(DROPIN).content_string)["http_output"]["url"]
    before = len(records(collector, "http"))
    post = collector.run(
        "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' "
        f"-A falcosecurity/falco --data-binary @- '{url}' <<'EOF'\n{alert}\nEOF")
    assert post.stdout == "200"
    got = poll(lambda: records(collector, "http")[before:], timeout=15)
    assert len(got) == 1 and got[0]["path"] == "/falco" and got[0]["method"] == "POST"
    assert got[0]["body"] == json.loads(alert)
    headers = {k.lower(): v for k, v in got[0]["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "falcosecurity/falco"
    assert base64.b64decode(headers["authorization"].split()[1]).decode() == \
        f"falco:{COLLECTOR_TOKEN}"


def test_falco_reloads_only_when_the_dropin_changed(collector):
    before = reloads(collector)
    same = run_playbook("forwarding.yml", NAME)
    assert same.returncode == 0 and host_stats(same, NAME)["changed"] == 0
    assert reloads(collector) == before
    # --diff: the drop-in holds the collector's credentials, so no diff of it may be shown.
    changed = run_playbook("forwarding.yml", NAME,
                           {"falco_forwarding_http_settings": {"user_agent": "fd-test/1"}},
                           diff=True)
    assert changed.returncode == 0 and host_stats(changed, NAME)["changed"] >= 1
    assert poll(lambda: reloads(collector) > before, timeout=30)
    assert COLLECTOR_TOKEN not in changed.stdout + changed.stderr
    back = run_playbook("forwarding.yml", NAME, diff=True)
    assert back.returncode == 0 and COLLECTOR_TOKEN not in back.stdout + back.stderr
    assert "fd-test/1" not in back.stdout  # not even the non-secret part of the diff
    assert "fd-test/1" not in collector.file(DROPIN).content_string


def test_verify_check_reports_delivered_without_curl_errors(collector):
    verdict = forwarding_check(NAME, host_clock(collector), 1)
    assert verdict == {"status": "delivered", "transport": "http", "alerts": 1,
                       "reason": verdict["reason"]}


def test_check_mode_plans_a_transport_switch_and_changes_nothing(collector):
    """--check on a host that has neither rsyslog nor Falcosidekick yet: each transport is
    planned (changes reported), nothing is installed or written, Falco is not reloaded."""
    dropin = collector.file(DROPIN).content_string
    before = reloads(collector)
    sidekick_dir = (os.environ.get("FALCO_DEPLOY_TESTBED") or "/var/lib/falco-deploy-testbed") \
        + "/standin-falcosidekick"
    with open(f"{sidekick_dir}/falcosidekick_2.31.1_linux_amd64.tar.gz.sha256") as f:
        good_sum = f.read().strip()
    for extra in ({"falco_forwarding_transport": "rsyslog",
                   "falco_forwarding_rsyslog_outputs": {"syslog": {"target": "127.0.0.1"}}},
                  {"falco_forwarding_transport": "falcosidekick",
                   "falco_forwarding_sidekick_source": "file",
                   "falco_forwarding_sidekick_version": "2.31.1",
                   "falco_forwarding_sidekick_file":
                       f"{sidekick_dir}/falcosidekick_2.31.1_linux_amd64.tar.gz",
                   "falco_forwarding_sidekick_sha256": {"amd64": good_sum}}):
        proc = run_playbook("forwarding.yml", NAME, extra, check=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert host_stats(proc, NAME)["changed"] >= 1
    assert not collector.package("rsyslog").is_installed
    assert not collector.file("/etc/falcosidekick").exists
    assert not collector.user("falcosidekick").exists
    assert collector.file(DROPIN).content_string == dropin
    assert reloads(collector) == before


def test_falco_deploy_forwarding_end_to_end_through_the_wrapper(collector, tmp_path):
    """`falco-deploy forwarding` itself on the inventory: the verdict, the transport in the
    JSON envelope, and the collector token nowhere in what the wrapper printed or kept."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import INVENTORY_FILE, PROJECT
    artifacts = tmp_path / "artifacts"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("falco-deploy")), "forwarding",
         "-i", str(Path(INVENTORY_FILE).parent), "--limit", NAME, "--project-dir", str(PROJECT),
         "--artifacts-dir", str(artifacts), "--output", "json"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg")))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    host = {h["host"]: h for h in doc["hosts"]}[NAME]
    assert (doc["command"], host["verdict"], host["transport"]) == \
        ("forwarding", "unchanged", "http")
    assert host["endpoint"] == "http://127.0.0.1:8080/falco"  # without the credentials
    kept = "".join(p.read_text(errors="replace") for p in artifacts.rglob("*") if p.is_file())
    assert COLLECTOR_TOKEN not in proc.stdout + proc.stderr + kept
