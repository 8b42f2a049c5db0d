"""Transport falcosidekick on fd-fwd-sidekick, with the stand-in Falcosidekick
(molecule/shared/standin-falcosidekick: answers /healthz and /, forwards to its webhook output).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from conftest import (
    PROJECT,
    SIEM_PASSWORD,
    failure_messages,
    poll,
    real_alerts,
    records,
    run_playbook,
)

NAME = "fd-fwd-sidekick"
CONFIG = "/etc/falcosidekick/config.yaml"
DROPIN = "/etc/falco/config.d/70-falco-deploy-forwarding.yaml"
ROLE_VARS = yaml.safe_load((PROJECT / "roles/falco_forwarding/vars/main.yml").read_text())


def test_runs_as_its_own_system_user(sidekick):
    user = sidekick.user("falcosidekick")
    assert user.exists and user.uid < 1000 and user.group == "falcosidekick"
    assert user.shell == "/usr/sbin/nologin"
    assert sidekick.process.get(comm="falcosidekick").user == "falcosidekick"


def test_files_are_root_owned_and_the_config_is_not_world_readable(sidekick):
    config = sidekick.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "falcosidekick", 0o640)
    folder = sidekick.file("/etc/falcosidekick")
    assert (folder.user, folder.group, folder.mode) == ("root", "falcosidekick", 0o750)
    link = sidekick.file("/usr/local/bin/falcosidekick")
    assert link.linked_to == "/opt/falcosidekick/2.31.1/falcosidekick"
    binary = sidekick.file("/opt/falcosidekick/2.31.1/falcosidekick")
    assert binary.user == "root" and binary.mode & 0o022 == 0 and binary.mode & 0o111
    # The staged tarball is gone once unpacked.
    assert not sidekick.file("/opt/falcosidekick/.falcosidekick-2.31.1.tar.gz").exists


def test_config_holds_the_configured_outputs_only_with_documented_keys(sidekick):
    config = yaml.safe_load(sidekick.file(CONFIG).content_string)
    assert set(config) == {"listenaddress", "listenport", "webhook", "elasticsearch"}
    assert (config["listenaddress"], config["listenport"]) == ("127.0.0.1", 2801)
    documented = ROLE_VARS["__falco_forwarding_sidekick_keys"]
    for output in ("webhook", "elasticsearch"):
        assert set(config[output]) <= set(documented[output]), output
    assert config["elasticsearch"]["password"] == SIEM_PASSWORD, "password not rendered"


def test_unit_is_hardened(sidekick):
    props = dict(line.split("=", 1) for line in sidekick.check_output(
        "systemctl show falcosidekick.service -p User -p Group -p NoNewPrivileges "
        "-p ProtectSystem -p PrivateTmp -p ProtectHome -p Restart -p CapabilityBoundingSet "
        "-p ActiveState -p UnitFileState").splitlines())
    assert props == {"User": "falcosidekick", "Group": "falcosidekick",
                     "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                     "ProtectHome": "yes", "Restart": "always", "CapabilityBoundingSet": "",
                     "ActiveState": "active", "UnitFileState": "enabled"}


def test_listens_on_loopback_only_and_answers_healthz(sidekick):
    listening = sidekick.check_output("ss -Hltn 'sport = :2801'")
    assert "127.0.0.1:2801" in listening and "0.0.0.0:2801" not in listening
    answer = sidekick.run("curl -s -i http://127.0.0.1:2801/healthz").stdout
    assert answer.splitlines()[0].startswith("HTTP/1.") and " 200" in answer.splitlines()[0]
    assert answer.rstrip().endswith('{"status": "ok"}')
    assert "content-type: application/json" in answer.lower()


def test_falco_dropin_points_http_output_at_falcosidekick(sidekick):
    dropin = sidekick.file(DROPIN)
    assert (dropin.user, dropin.group, dropin.mode) == ("root", "root", 0o600)
    config = yaml.safe_load(dropin.content_string)
    assert config == {"json_output": True, "json_include_output_property": True,
                      "http_output": {"enabled": True, "url": "http://127.0.0.1:2801/"}}


def test_a_recorded_alert_posted_as_falco_does_reaches_the_webhook(sidekick):
    """Falco's http_output: one POST per alert to http_output.url, body the JSON alert,
    Content-Type application/json (json_output true), User-Agent http_output.user_agent
    (default falcosecurity/falco) (falcosecurity/falco userspace/falco/outputs_http.cpp)."""
    alert = real_alerts()[5]
    url = yaml.safe_load(sidekick.file(DROPIN).content_string)["http_output"]["url"]
    before = len(records(sidekick, "http"))
    post = sidekick.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -H 'Content-Type: application/json' "
        f"-A falcosecurity/falco --data-binary @- {url} <<'EOF'\n{alert}\nEOF")
    assert post.stdout == "200"
    got = poll(lambda: records(sidekick, "http")[before:], timeout=15)
    assert len(got) == 1 and got[0]["path"] == "/sidekick"
    body = dict(got[0]["body"])
    body.pop("uuid")  # Falcosidekick adds one to every event it forwards
    assert body == json.loads(alert)
    headers = {k.lower(): v for k, v in got[0]["headers"].items()}
    assert headers["x-falco-deploy-test"] == "sidekick"


def test_a_tampered_tarball_is_refused_and_the_running_version_stays(sidekick, tmp_path: Path):
    """A new version whose tarball does not match its pinned sum: refused before anything on
    the host changed; the running version, its link and its process stay."""
    built = Path(os.environ.get("FALCO_DEPLOY_TESTBED") or "/var/lib/falco-deploy-testbed") \
        / "standin-falcosidekick"  # where scripts/setup builds it (host_vars/fd-fwd-sidekick.yml)
    tampered = tmp_path / "falcosidekick_2.99.0_linux_amd64.tar.gz"
    shutil.copy(built / "tampered" / "falcosidekick_2.31.1_linux_amd64.tar.gz", tampered)
    good_sum = (built / "falcosidekick_2.31.1_linux_amd64.tar.gz.sha256").read_text().strip()
    pid = sidekick.process.get(comm="falcosidekick").pid
    proc = run_playbook("forwarding.yml", NAME, {
        "falco_forwarding_sidekick_version": "2.99.0",
        "falco_forwarding_sidekick_file": str(tampered),
        "falco_forwarding_sidekick_sha256": {"amd64": good_sum}})
    assert proc.returncode != 0
    messages = " ".join(failure_messages(proc, NAME))
    assert "does not match the pinned " + good_sum in messages, messages
    assert "the running Falcosidekick (if any) stays" in messages
    assert not sidekick.file("/opt/falcosidekick/2.99.0").exists
    assert sidekick.file("/usr/local/bin/falcosidekick").linked_to == \
        "/opt/falcosidekick/2.31.1/falcosidekick"
    assert sidekick.process.get(comm="falcosidekick").pid == pid
    assert SIEM_PASSWORD not in proc.stdout + proc.stderr


def test_a_misspelt_output_key_is_refused_before_anything_changes(sidekick):
    config = sidekick.file(CONFIG).content_string
    proc = run_playbook("forwarding.yml", NAME, {"falco_forwarding_sidekick_outputs": {
        "webhook": {"adress": "http://127.0.0.1:8080/typo"}, "lokii": {"hostport": "x"}}})
    assert proc.returncode != 0
    messages = " ".join(failure_messages(proc, NAME))
    assert "unknown key(s) webhook.adress" in messages, messages
    assert "unknown Falcosidekick output(s): lokii" in messages, messages
    assert sidekick.file(CONFIG).content_string == config


def test_url_source_installs_a_new_version_and_refuses_a_tampered_download(sidekick,
                                                                          tmp_path: Path):
    """source url, as from an internal mirror (here a web server on the host's loopback serving
    upstream's file names): a new version is fetched, checked, unpacked and switched to; a
    download that does not match its sum is refused and the running version stays."""
    import subprocess
    build = PROJECT / "molecule" / "shared" / "build-standin-falcosidekick.sh"
    subprocess.run(["bash", str(build), str(tmp_path / "mirror"), "2.31.2"], check=True,
                   capture_output=True)
    name = "falcosidekick_2.31.2_linux_amd64.tar.gz"
    good_sum = (tmp_path / "mirror" / f"{name}.sha256").read_text().strip()
    sidekick.run("rm -rf /srv/mirror && mkdir -p /srv/mirror/good /srv/mirror/bad")
    for local, remote in ((tmp_path / "mirror" / name, f"/srv/mirror/good/{name}"),
                          (tmp_path / "mirror" / "tampered" / name, f"/srv/mirror/bad/{name}")):
        assert subprocess.run(["docker", "cp", str(local), f"{NAME}:{remote}"]).returncode == 0
    server = sidekick.run("cd /srv/mirror && (nohup python3 -m http.server 8099 --bind 127.0.0.1 "
                          ">/dev/null 2>&1 &) && sleep 0.5 && curl -sf -o /dev/null "
                          "http://127.0.0.1:8099/good/" + name)
    assert server.rc == 0, server.stderr
    try:
        pid = sidekick.process.get(comm="falcosidekick").pid
        new = {"falco_forwarding_sidekick_version": "2.31.2",
               "falco_forwarding_sidekick_source": "url",
               "falco_forwarding_sidekick_sha256": {"amd64": good_sum}}
        bad = run_playbook("forwarding.yml", NAME, {
            **new, "falco_forwarding_sidekick_url": f"http://127.0.0.1:8099/bad/{name}"})
        assert bad.returncode != 0
        messages = " ".join(failure_messages(bad, NAME))
        assert "did not match" in messages and good_sum in messages, messages
        assert not sidekick.file("/opt/falcosidekick/2.31.2").exists
        assert sidekick.process.get(comm="falcosidekick").pid == pid

        # The URL as an operator writes it for a mirror: version and {arch} filled in by the role.
        good = run_playbook("forwarding.yml", NAME, {
            **new, "falco_forwarding_sidekick_url": "http://127.0.0.1:8099/good/falcosidekick_"
            "{{ falco_forwarding_sidekick_version }}_linux_{arch}.tar.gz"})
        assert good.returncode == 0, " ".join(failure_messages(good, NAME))
        assert sidekick.file("/usr/local/bin/falcosidekick").linked_to == \
            "/opt/falcosidekick/2.31.2/falcosidekick"
        assert "2.31.2" in sidekick.check_output("falcosidekick --version")
        assert poll(lambda: sidekick.run("curl -sf http://127.0.0.1:2801/healthz").rc == 0)
    finally:
        sidekick.run("pkill -f 'http.server 8099'")
        back = run_playbook("forwarding.yml", NAME)  # the converged version again
        assert back.returncode == 0
    assert sidekick.file("/usr/local/bin/falcosidekick").linked_to == \
        "/opt/falcosidekick/2.31.1/falcosidekick"
