"""molecule/forwarding/files/siem_receiver.py: the SIEM receiver double, run here on loopback.

Each test starts the program on free ports, talks to it as Elasticsearch clients, Falco's
http_output and syslog senders do, and checks both its answers and its record file.
"""

from __future__ import annotations

import configparser
import http.client
import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest
from standin_support import ROOT, SHARED, Background, free_port, wait_for

RECEIVER = ROOT / "molecule" / "forwarding" / "files" / "siem_receiver.py"
UNIT = ROOT / "molecule" / "forwarding" / "files" / "siem-receiver.service"
EVENTS = SHARED / "corpus" / "falco-real-0.40" / "verify-run" / "events.jsonl"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def real_alert() -> dict:
    """The first alert a real Falco 0.40 wrote in the shared corpus's verify run."""
    if not EVENTS.is_file():
        pytest.skip(f"recorded Falco alerts not found at {EVENTS} (set FALCO_DEPLOY_SHARED)")
    return json.loads(EVENTS.read_text().splitlines()[0])


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class Receiver(Background):
    """siem_receiver.py in the background; its record file and output in tmp."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.record = base / "state" / "siem-receiver" / "received.jsonl"
        self.es, self.http, self.syslog = free_port(), free_port(), free_port()
        super().__init__([sys.executable, str(RECEIVER), "--record", str(self.record),
                          "--es-port", str(self.es), "--http-port", str(self.http),
                          "--syslog-port", str(self.syslog)],
                         base / "receiver.out", env={"PYTHONDONTWRITEBYTECODE": "1"})
        if not wait_for(self._listening, timeout=10):
            self.stop()
            raise AssertionError("the receiver did not listen: "
                                 + (base / "receiver.out").read_text())

    def _listening(self) -> bool:
        assert self.proc.poll() is None, "the receiver exited"
        for port in (self.es, self.http, self.syslog):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def records(self, kind: str | None = None) -> list[dict]:
        try:
            lines = self.record.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = [json.loads(line) for line in lines]
        return [r for r in records if kind is None or r["kind"] == kind]

    def wait_records(self, kind: str, count: int, timeout: float = 10) -> list[dict]:
        found = wait_for(lambda: len(self.records(kind)) >= count, timeout=timeout)
        assert found, f"expected {count} {kind} records, have: {self.records()}"
        return self.records(kind)


@pytest.fixture
def receiver(tmp_path: Path):
    started = Receiver(tmp_path)
    yield started
    started.stop()


def ndjson(*docs) -> bytes:
    return b"".join((d if isinstance(d, bytes) else json.dumps(d).encode()) + b"\n" for d in docs)


def test_root_document_is_an_elasticsearch_8_15(receiver):
    status, headers, body = call(receiver.es, "GET", "/")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-elastic-product"] == "Elasticsearch"
    root = json.loads(body)
    assert root["version"]["number"] == "8.15.0"
    assert root["tagline"] == "You Know, for Search"
    assert root["name"] and root["cluster_name"]
    assert receiver.records("es_request")[0]["path"] == "/"


def test_bulk_of_two_documents_is_recorded_and_answered_like_elasticsearch(receiver):
    alert = real_alert()
    second = {"rule": "second", "output_fields": {"n": 1}}
    status, headers, body = call(
        receiver.es, "POST", "/falco/_bulk",
        ndjson({"index": {}}, alert, {"create": {"_index": "other", "_id": "doc-2"}}, second),
        {"Content-Type": "application/x-ndjson"})
    assert status == 200 and headers["x-elastic-product"] == "Elasticsearch"
    answer = json.loads(body)
    assert answer["errors"] is False and isinstance(answer["took"], int)
    assert [list(item) for item in answer["items"]] == [["index"], ["create"]]
    first, created = answer["items"][0]["index"], answer["items"][1]["create"]
    assert first["_index"] == "falco" and re.fullmatch(r"[\w-]{20}", first["_id"])
    assert created["_index"] == "other" and created["_id"] == "doc-2"
    for item in (first, created):
        assert item["status"] == 201 and item["result"] == "created"
        assert item["_version"] == 1 and item["_primary_term"] == 1
        assert item["_shards"] == {"total": 2, "successful": 1, "failed": 0}
        assert item["_seq_no"] == 0  # one counter per index
        assert list(item) == ["_index", "_id", "_version", "result", "_shards", "_seq_no",
                              "_primary_term", "status"]
    docs = receiver.records("es_doc")
    assert [(d["index"], d["id"], d["doc"]) for d in docs] == [
        ("falco", first["_id"], alert), ("other", "doc-2", second)]
    assert docs[0]["headers"]["Content-Type"] == "application/x-ndjson"
    assert all(TIME.fullmatch(d["time"]) for d in docs)


def test_bulk_line_that_is_not_json_is_an_item_error(receiver):
    status, _, body = call(receiver.es, "POST", "/_bulk",
                           ndjson({"index": {"_index": "falco"}}, {"ok": True},
                                  {"index": {"_index": "falco", "_id": "bad"}}, b"not json {"),
                           {"Content-Type": "application/x-ndjson"})
    assert status == 200
    answer = json.loads(body)
    assert answer["errors"] is True
    good, bad = (item["index"] for item in answer["items"])
    assert good["status"] == 201 and good["_seq_no"] == 0
    assert bad["status"] == 400 and bad["_index"] == "falco" and bad["_id"] == "bad"
    assert bad["error"]["type"] == "document_parsing_exception"
    assert bad["error"]["reason"].startswith("[1:1] failed to parse")
    assert "result" not in bad and "_version" not in bad
    assert [d["doc"] for d in receiver.records("es_doc")] == [{"ok": True}]
    rejected = receiver.records("es_rejected")
    assert [(r["id"], r["raw"]) for r in rejected] == [("bad", "not json {")]


def test_bulk_without_final_newline_is_refused_whole(receiver):
    status, _, body = call(receiver.es, "POST", "/falco/_bulk",
                           ndjson({"index": {}}, {"a": 1})[:-1])
    assert status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "illegal_argument_exception"
    assert "terminated by a newline" in error["reason"]
    assert receiver.records("es_doc") == []
    assert receiver.records("es_request")[0]["status"] == 400


def test_index_api_creates_then_updates(receiver):
    alert = real_alert()
    status, headers, body = call(receiver.es, "PUT", "/falco-2026.12.01/_doc/a1",
                                 json.dumps(alert).encode(), {"Content-Type": "application/json"})
    assert status == 201
    assert headers["location"] == "/falco-2026.12.01/_doc/a1"
    assert json.loads(body) == {"_index": "falco-2026.12.01", "_id": "a1", "_version": 1,
                                "result": "created", "_shards": {"total": 2, "successful": 1,
                                                                 "failed": 0},
                                "_seq_no": 0, "_primary_term": 1}
    status, _, body = call(receiver.es, "PUT", "/falco-2026.12.01/_doc/a1", b'{"x": 2}')
    assert status == 200
    assert json.loads(body)["result"] == "updated" and json.loads(body)["_version"] == 2
    # Falcosidekick's Elasticsearch output: POST /<index>-<date>/_doc, the id generated.
    status, _, body = call(receiver.es, "POST", "/falco-2026.12.01/_doc", b'{"y": 3}')
    assert status == 201 and re.fullmatch(r"[\w-]{20}", json.loads(body)["_id"])
    assert json.loads(body)["_seq_no"] == 2
    docs = receiver.records("es_doc")
    assert [d["doc"] for d in docs] == [alert, {"x": 2}, {"y": 3}]
    status, _, body = call(receiver.es, "POST", "/falco/_doc", b"<not json>")
    assert status == 400
    assert json.loads(body)["error"]["root_cause"][0]["type"] == "document_parsing_exception"
    assert len(receiver.records("es_doc")) == 3


def test_create_of_an_existing_id_is_a_conflict(receiver):
    call(receiver.es, "PUT", "/falco/_create/same", b'{"a": 1}')
    status, _, body = call(receiver.es, "PUT", "/falco/_create/same", b'{"a": 2}')
    assert status == 409
    assert json.loads(body)["error"]["type"] == "version_conflict_engine_exception"
    assert [d["doc"] for d in receiver.records("es_doc")] == [{"a": 1}]


def test_head_and_get_of_an_index(receiver):
    status, headers, body = call(receiver.es, "HEAD", "/falco")
    assert status == 200 and body == b"" and headers["content-length"] == "2"
    status, _, body = call(receiver.es, "GET", "/falco")
    assert status == 200 and json.loads(body) == {}
    status, _, body = call(receiver.es, "GET", "/_cluster/health/extra")
    assert status == 400 and "no handler found" in json.loads(body)["error"]
    assert [r["method"] for r in receiver.records("es_request")] == ["HEAD", "GET", "GET"]


def test_http_collector_records_json_and_text(receiver):
    alert = real_alert()
    status, _, body = call(receiver.http, "POST", "/falco", json.dumps(alert).encode(),
                           {"Content-Type": "application/json", "X-Feed": "falco"})
    assert status == 200 and body == b"ok"
    status, _, _ = call(receiver.http, "POST", "/text", b"22:43:20.957596636: Critical text",
                        {"Content-Type": "text/plain"})
    assert status == 200
    first, second = receiver.records("http")
    assert first["path"] == "/falco" and first["method"] == "POST"
    assert first["body"] == alert and first["headers"]["X-Feed"] == "falco"
    assert second["body"] == "22:43:20.957596636: Critical text"


def test_http_collector_meets_expect_100_continue(receiver):
    # What libcurl (Falco's http_output) sends with a body over 1 KiB.
    body = json.dumps(real_alert()).encode()
    with socket.create_connection(("127.0.0.1", receiver.http), timeout=10) as sock:
        sock.sendall(b"POST /curl HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert b"HTTP/1.1 200" in sock.recv(1024)
    assert receiver.wait_records("http", 1)[0]["body"] == real_alert()


def test_syslog_octet_counted_and_lf_frames(receiver):
    rfc5424 = "<134>1 2026-12-01T22:43:20.957Z host-a falco 42 - - Critical two\nlines"
    framed = rfc5424.encode()
    rfc3164 = "<131>Dec  1 22:43:20 host-b falco[42]: Error one line"
    with socket.create_connection(("127.0.0.1", receiver.syslog), timeout=10) as sock:
        sock.sendall(b"%d %s" % (len(framed), framed) + rfc3164.encode() + b"\n"
                     + b"12 <14>short\n")
    octet, lf, short = receiver.wait_records("syslog", 3)
    assert octet["framing"] == "octet-counting" and octet["raw"] == rfc5424
    assert (octet["format"], octet["pri"], octet["facility"], octet["severity"]) == (
        "rfc5424", 134, 16, 6)
    assert (octet["hostname"], octet["app_name"], octet["procid"], octet["msgid"]) == (
        "host-a", "falco", "42", None)
    assert octet["msg"] == "Critical two\nlines"
    assert lf["framing"] == "lf" and lf["raw"] == rfc3164
    assert (lf["format"], lf["severity"], lf["hostname"], lf["app_name"], lf["procid"],
            lf["msg"]) == ("rfc3164", 3, "host-b", "falco", "42", "Error one line")
    # Twelve octets include the LF: counted frames keep what they count.
    assert short["framing"] == "octet-counting" and short["raw"] == "<14>short\n"
    assert all(TIME.fullmatch(r["time"]) for r in (octet, lf, short))


def test_sigterm_stops_it_with_status_0(tmp_path):
    receiver = Receiver(tmp_path)
    call(receiver.http, "POST", "/x", b"{}")
    assert receiver.record.parent.is_dir()  # created by the receiver
    started = time.monotonic()
    assert receiver.stop() == 0
    assert time.monotonic() - started < 5
    assert [r["kind"] for r in receiver.records()] == ["http"]


def test_unit_starts_it_once_on_the_host():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["Type"] == "simple"
    assert service["ExecStart"] == ("/usr/bin/python3 /usr/local/bin/siem_receiver.py "
                                    "--record /var/lib/siem-receiver/received.jsonl")
    assert service["Restart"] == "no"
    assert RECEIVER.stat().st_mode & 0o111, "siem_receiver.py must be executable"
