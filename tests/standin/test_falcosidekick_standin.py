"""The stand-in Falcosidekick (molecule/shared/standin-falcosidekick/falcosidekick) and the script
that packs it like the upstream release archive (molecule/shared/build-standin-falcosidekick.sh).

The stand-in runs here on loopback with a tmp configuration; its webhook output posts to the SIEM
receiver double's HTTP collector, whose record file shows what was forwarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from standin_support import ROOT, Background, free_port, wait_for
from test_siem_receiver import Receiver, call, real_alert

STANDIN = ROOT / "molecule" / "shared" / "standin-falcosidekick" / "falcosidekick"
BUILD = ROOT / "molecule" / "shared" / "build-standin-falcosidekick.sh"
ARCHIVE = "falcosidekick_{}_linux_amd64.tar.gz"
HEADER = ("X-Standin-Test", "forwarded-by-the-stand-in")


class Sidekick(Background):
    """The stand-in in the background, its stdout (the journal's accepted lines) and stderr (Go's
    log lines) in tmp."""

    def __init__(self, base: Path, config: dict) -> None:
        self.port = config.setdefault("listenport", free_port())
        config.setdefault("listenaddress", "127.0.0.1")  # never all interfaces of the builder
        self.config = base / "falcosidekick" / "config.yaml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(config))
        super().__init__([sys.executable, str(STANDIN), "-c", str(self.config)],
                         base / "sidekick.out", base / "sidekick.err",
                         env={"PYTHONDONTWRITEBYTECODE": "1"})
        ready = wait_for(lambda: self.proc.poll() is not None or "is up and listening" in
                         self.err_path.read_text(), timeout=10)
        assert ready and self.proc.poll() is None, f"no start:\n{self.err_path.read_text()}"


@pytest.fixture
def receiver(tmp_path: Path):
    started = Receiver(tmp_path / "receiver")
    yield started
    started.stop()


@pytest.fixture
def sidekick(tmp_path: Path, receiver: Receiver):
    # The keys as the role writes them; upstream's viper reads them case-insensitively.
    started = Sidekick(tmp_path, {
        "listenaddress": "127.0.0.1",
        "webhook": {"address": f"http://127.0.0.1:{receiver.http}/falcosidekick",
                    "customHeaders": {HEADER[0]: HEADER[1]}},
    })
    yield started
    started.stop()


def test_healthz_is_upstreams_answer(sidekick):
    status, headers, body = call(sidekick.port, "GET", "/healthz")
    assert status == 200
    assert body == b'{"status": "ok"}'
    assert headers["content-type"] == "application/json"
    assert "server" not in headers  # net/http sends none


def test_ping_answers_pong(sidekick):
    status, _, body = call(sidekick.port, "GET", "/ping")
    assert (status, body) == (200, b"pong\n")


def test_real_alert_is_accepted_and_forwarded_to_the_webhook(sidekick, receiver):
    alert = real_alert()
    status, _, body = call(sidekick.port, "POST", "/", json.dumps(alert).encode(),
                           {"Content-Type": "application/json"})
    assert (status, body) == (200, b"")
    (record,) = receiver.wait_records("http", 1)
    assert record["method"] == "POST" and record["path"] == "/falcosidekick"
    assert record["headers"][HEADER[0]] == HEADER[1]
    assert record["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert record["headers"]["User-Agent"] == "Falcosidekick"
    forwarded = dict(record["body"])
    # Upstream re-encodes the payload with a uuid of its own; everything else is Falco's.
    assert uuid.UUID(forwarded.pop("uuid")).version == 4
    assert forwarded == alert
    assert (f'standin-falcosidekick: accepted alert rule={json.dumps(alert["rule"])} '
            f'priority="{alert["priority"]}"') in sidekick.stdout().splitlines()
    assert wait_for(lambda: "[INFO]  : Webhook - Post OK (200)" in sidekick.stderr()), \
        sidekick.stderr()


@pytest.mark.parametrize(("method", "body", "answer"), [
    ("POST", b"", b"Please send a valid request body\n"),
    ("POST", b"not json", b"Please send a valid request body\n"),
    ("POST", b'{"rule": "r", "priority": "Critical", "time": "2026-12-01T22:43:20Z"}',
     b"Please send a valid request body\n"),  # no output_fields: FalcoPayload.Check() fails
    ("POST", b'{"rule": "r", "priority": "loud", "time": "2026-12-01T22:43:20Z", '
             b'"output_fields": {"a": 1}}', b"Please send a valid request body\n"),
    ("GET", None, b"Please send with post http method\n"),
])
def test_invalid_request_is_refused_and_not_forwarded(sidekick, receiver, method, body, answer):
    status, headers, got = call(sidekick.port, method, "/", body)
    assert (status, got) == (400, answer)
    assert headers["content-type"] == "text/plain; charset=utf-8"
    # A valid alert sent afterwards is the only thing forwarded and the only accepted line.
    status, _, _ = call(sidekick.port, "POST", "/", json.dumps(real_alert()).encode())
    assert status == 200
    receiver.wait_records("http", 1)
    assert len(receiver.records("http")) == 1
    assert sidekick.stdout().count("accepted alert") == 1


def test_alert_below_minimumpriority_is_accepted_not_forwarded(tmp_path, receiver):
    sidekick = Sidekick(tmp_path, {"webhook": {
        "address": f"http://127.0.0.1:{receiver.http}/hook", "minimumpriority": "critical"}})
    try:
        low = dict(real_alert(), priority="Warning", rule="low")
        assert call(sidekick.port, "POST", "/", json.dumps(low).encode())[0] == 200
        assert call(sidekick.port, "POST", "/", json.dumps(real_alert()).encode())[0] == 200
        (record,) = receiver.wait_records("http", 1)
        assert record["body"]["rule"] == real_alert()["rule"]
        assert 'accepted alert rule="low" priority="Warning"' in sidekick.stdout()
    finally:
        sidekick.stop()
    assert len(receiver.records("http")) == 1


def test_webhook_failure_is_logged_and_the_service_keeps_going(tmp_path):
    closed = free_port()
    sidekick = Sidekick(tmp_path, {"webhook": {"address": f"http://127.0.0.1:{closed}/"}})
    try:
        alert = json.dumps(real_alert()).encode()
        assert call(sidekick.port, "POST", "/", alert)[0] == 200
        assert wait_for(lambda: "[ERROR] : Webhook - " in sidekick.stderr()), sidekick.stderr()
        assert call(sidekick.port, "GET", "/ping")[0] == 200
        assert call(sidekick.port, "POST", "/", alert)[0] == 200
        assert sidekick.proc.poll() is None
    finally:
        assert sidekick.stop() == 0


def test_sigterm_stops_it_promptly_with_status_0(tmp_path):
    sidekick = Sidekick(tmp_path, {})
    assert "Enabled Outputs : []" in sidekick.stderr()  # no webhook configured: no output
    started = time.monotonic()
    assert sidekick.stop() == 0
    assert time.monotonic() - started < 5


def test_cli_like_upstream(tmp_path):
    run = [sys.executable, str(STANDIN)]
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([*run, "--version"], capture_output=True, text=True, env=env,
                         timeout=30)
    assert res.returncode == 0 and res.stdout.startswith("GitVersion:    2.31.1\n")
    res = subprocess.run([*run, "-c", str(tmp_path / "missing.yaml")], capture_output=True,
                         text=True, env=env, timeout=30)
    assert res.returncode == 1
    assert f"falcosidekick: error: path '{tmp_path / 'missing.yaml'}' does not exist" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"listenport: {free_port()}\nlistenaddress: not-an-ip\n")
    res = subprocess.run([*run, "--config-file", str(bad)], capture_output=True, text=True,
                         env=env, timeout=30)
    assert res.returncode == 1 and "[ERROR] : Failed to parse ListenAddress" in res.stderr


def build(out: Path, *version: str) -> subprocess.CompletedProcess:
    if shutil.which("tar") is None or shutil.which("gzip") is None:
        pytest.skip("tar and gzip are needed to build the archive")
    res = subprocess.run(["bash", str(BUILD), str(out), *version], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_archive_is_laid_out_like_the_release_and_deterministic(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    build(first)
    build(second)
    build(first)  # a rebuild in place changes nothing either
    name = ARCHIVE.format("2.31.1")
    digest = sha256(first / name)
    assert sha256(second / name) == digest
    gz = (first / name).read_bytes()
    assert gz[3] & 0x08 == 0 and gz[4:8] == bytes(4)  # gzip -n: no file name, no time stamp
    assert (first / f"{name}.sha256").read_text() == digest + "\n"
    with tarfile.open(first / name) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["CHANGELOG.md", "LICENSE", "README.md",
                                            "falcosidekick"]
        assert all(m.isfile() and m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members)
        modes = {m.name: m.mode for m in members}
        assert modes == {"CHANGELOG.md": 0o644, "LICENSE": 0o644, "README.md": 0o644,
                         "falcosidekick": 0o755}
        assert archive.extractfile("falcosidekick").read() == STANDIN.read_bytes()
        assert b"stands in" in archive.extractfile("LICENSE").read()
    tampered = first / "tampered" / name
    assert tampered.is_file() and sha256(tampered) != digest
    assert sha256(second / "tampered" / name) == sha256(tampered)


def test_archive_of_another_version_runs_as_that_version(tmp_path):
    build(tmp_path, "2.30.0")
    name = ARCHIVE.format("2.30.0")
    assert (tmp_path / f"{name}.sha256").read_text().strip() == sha256(tmp_path / name)
    with tarfile.open(tmp_path / name) as archive:
        archive.extractall(tmp_path / "x", filter="data")
    binary = tmp_path / "x" / "falcosidekick"
    assert os.access(binary, os.X_OK)
    res = subprocess.run([sys.executable, str(binary), "--version"], capture_output=True,
                         text=True, timeout=30)
    assert res.stdout.startswith("GitVersion:    2.30.0\n")
    with tarfile.open(tmp_path / "tampered" / name) as archive:
        tampered = archive.extractfile("falcosidekick").read()
    assert tampered != binary.read_bytes() and tampered.startswith(binary.read_bytes())


def test_build_script_refuses_bad_arguments(tmp_path):
    for args in ([], [str(tmp_path), "2.31"], [str(tmp_path), "1.0.0", "extra"]):
        res = subprocess.run(["bash", str(BUILD), *args], capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 1, args
        assert "build-standin-falcosidekick: error:" in res.stderr
    assert not list(tmp_path.iterdir())
