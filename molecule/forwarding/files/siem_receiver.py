#!/usr/bin/python3
"""SIEM receiver double for falco-deploy's forwarding tests. It stands in for the SIEM only.

It runs on a test host, on loopback, started by siem-receiver.service, and answers the way the
real receiving ends do, so that Falco's outputs and Falcosidekick deliver to it as they would to a
SIEM. Every request (every syslog message) becomes one JSON line in the record file, written,
flushed and fsynced line by line, so that a test reads what reached "the SIEM":

- Elasticsearch (--es-port, 9200), answering like Elasticsearch 8.15.0: GET / ; POST|PUT
  /_bulk and /<index>/_bulk (index, create, delete); POST|PUT /<index>/_doc[/<id>] and
  /<index>/_create/<id>; HEAD|GET /<index> (200 {}); PUT /<index>. Each document stored is
  an "es_doc" record, each refused one an "es_rejected" record, any other request an
  "es_request" record.
- HTTP collector (--http-port, 8080): any request is an "http" record (body parsed as JSON when
  it is JSON, else text) and gets 200 "ok". Falco's http_output and Falcosidekick's webhook
  output post here.
- Syslog over TCP (--syslog-port, 6514, no TLS): RFC 6587 octet-counted ("LEN SP MSG") and
  LF-terminated frames, told apart frame by frame; each message is a "syslog" record with a
  best-effort RFC 5424 / RFC 3164 parse.

Every record carries "kind" and "time" (UTC, ISO 8601 with microseconds). It keeps documents only
as records: nothing can be searched, and no index has mappings or settings.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import secrets
import signal
import socketserver
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

# GET / of a real 8.15.0 docker image, as published transcripts of `curl localhost:9200` show it
# (build_hash 1a77947f, Lucene 9.11.1); name and cluster_uuid are per-cluster values.
ES_ROOT = {
    "name": "siem-receiver", "cluster_name": "docker-cluster",
    "cluster_uuid": "siemReceiverClusterUid",
    "version": {
        "number": "8.15.0", "build_flavor": "default", "build_type": "docker",
        "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179",
        "build_date": "2024-08-05T10:05:34.233336849Z", "build_snapshot": False,
        "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "You Know, for Search",
}
# One node, one replica that cannot be assigned: what a single-node cluster reports per write.
SHARDS = {"total": 2, "successful": 1, "failed": 0}
INDEX_UUID = "siemReceiverDoubleUuid"  # 22 characters, as index uuids have


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Recorder:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps({**record, "time": now()}, ensure_ascii=False) + "\n"
        with self._lock:  # one whole line at a time, on disk before the sender gets its answer
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def es_error(error: dict, status: int) -> tuple[int, dict]:
    """The error envelope of Elasticsearch's REST layer."""
    return status, {"error": {"root_cause": [error], **error}, "status": status}


def bad_request(kind: str, reason: str) -> tuple[int, dict]:
    return es_error({"type": kind, "reason": reason}, 400)


def parse_source(raw: bytes) -> tuple[object, dict | None]:
    """A document source, or the error Elasticsearch 8.x reports for one it cannot parse.

    Since 8.7 that error is a document_parsing_exception whose reason starts with the parser's
    [line:column] (elastic/elasticsearch PR #92646; earlier versions said mapper_parsing_exception).
    The caused_by object of the real answer is left out: its exact shape is not verified here.
    """
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError as err:
        line, col = getattr(err, "lineno", 1), getattr(err, "colno", 1)
        return None, {"type": "document_parsing_exception",
                      "reason": f"[{line}:{col}] failed to parse: {err}"}
    if not isinstance(doc, dict):
        return None, {"type": "document_parsing_exception",
                      "reason": "[1:1] failed to parse: the document is not a JSON object"}
    return doc, None


class Store:
    """Per-index sequence numbers and document versions, as one primary shard keeps them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq_no: dict[str, int] = {}
        self.versions: dict[tuple[str, str], int] = {}

    def write(self, op: str, index: str, doc_id: str | None) -> dict:
        """The bulk item / index API body for one write (docs-bulk.asciidoc, index_.asciidoc)."""
        with self.lock:
            doc_id = doc_id or secrets.token_urlsafe(15)  # 20 characters, like generated ids
            version = self.versions.get((index, doc_id))
            if op == "create" and version is not None:
                return {"_index": index, "_id": doc_id, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists "
                              f"(current version [{version}])",
                    "index_uuid": INDEX_UUID, "shard": "0", "index": index}}
            seq_no = self.seq_no.get(index, -1) + 1
            self.seq_no[index] = seq_no
            if op == "delete":
                if version is None:
                    result, status, version = "not_found", 404, 1
                else:
                    result, status, version = "deleted", 200, version + 1
                    del self.versions[(index, doc_id)]
            else:
                result, status = ("created", 201) if version is None else ("updated", 200)
                version = (version or 0) + 1
                self.versions[(index, doc_id)] = version
            return {"_index": index, "_id": doc_id, "_version": version, "result": result,
                    "_shards": dict(SHARDS), "_seq_no": seq_no, "_primary_term": 1,
                    "status": status}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # libcurl (Falco's http_output) sends Expect: 100-continue
    recorder: Recorder

    def send_response(self, code, message=None):
        self.send_response_only(code, message)  # neither Elasticsearch nor a collector says Server

    def log_message(self, *args) -> None:
        pass  # the record file is the log

    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            data = b"".join(parts)
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            data = gzip.decompress(data)
        return data

    def reply(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        for name, value in {"Content-Type": ctype, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def request_headers(self) -> dict:
        return dict(self.headers.items())


class CollectorHandler(Handler):
    def route(self) -> None:
        data = self.body()
        text = data.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        self.recorder.write({"kind": "http", "method": self.command, "path": self.path,
                             "headers": self.request_headers(), "body": body})
        self.reply(200, b"ok", "text/plain; charset=utf-8")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = route


class ElasticHandler(Handler):
    store: Store

    def json_reply(self, code: int, doc, headers: dict | None = None) -> None:
        # Clients of 8.x (elasticsearch-py, go-elasticsearch) refuse a server without this header.
        self.reply(code, json.dumps(doc, separators=(",", ":")).encode(), "application/json",
                   {"X-elastic-product": "Elasticsearch", **(headers or {})})

    def route(self) -> None:
        started = time.monotonic()
        data = self.body()
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.split("/") if p]
        method = self.command
        if method in ("POST", "PUT") and parts and parts[-1] == "_bulk" and len(parts) <= 2:
            self.bulk(data, parts[0] if len(parts) == 2 else None, started)
        elif (method in ("POST", "PUT") and len(parts) in (2, 3) and not parts[0].startswith("_")
              and parts[1] in ("_doc", "_create") and (len(parts) == 3 or method == "POST")):
            self.index_one(data, parts)
        else:
            self.recorder.write({"kind": "es_request", "method": method, "path": self.path,
                                 "headers": self.request_headers()})
            if not parts and method in ("GET", "HEAD"):
                self.json_reply(200, ES_ROOT)
            elif len(parts) == 1 and not parts[0].startswith("_") and method in ("GET", "HEAD"):
                self.json_reply(200, {})
            elif len(parts) == 1 and not parts[0].startswith("_") and method == "PUT":
                self.json_reply(200, {"acknowledged": True, "shards_acknowledged": True,
                                      "index": parts[0]})
            else:  # RestController.handleBadRequest: a plain string, not an error object
                self.json_reply(400, {"error": f"no handler found for uri [{self.path}] and "
                                               f"method [{method}]"})

    def index_one(self, data: bytes, parts: list[str]) -> None:
        index, op = parts[0], "create" if parts[1] == "_create" else "index"
        doc_id = parts[2] if len(parts) == 3 else None
        doc, error = parse_source(data)
        if error:
            self.recorder.write({"kind": "es_rejected", "index": index, "id": doc_id,
                                 "raw": data.decode("utf-8", "replace"), "error": error,
                                 "headers": self.request_headers()})
            self.json_reply(*es_error(error, 400))
            return
        item = self.store.write(op, index, doc_id)
        status = item.pop("status")
        if "error" in item:
            self.recorder.write({"kind": "es_rejected", "index": index, "id": item["_id"],
                                 "raw": data.decode("utf-8", "replace"), "error": item["error"],
                                 "headers": self.request_headers()})
            self.json_reply(*es_error(item["error"], status))
            return
        self.recorder.write({"kind": "es_doc", "index": index, "id": item["_id"], "doc": doc,
                             "headers": self.request_headers()})
        location = {"Location": f"/{index}/_doc/{item['_id']}"} if status == 201 else {}
        self.json_reply(status, item, location)

    def refuse_bulk(self, kind: str, reason: str) -> None:
        # Whole-request refusals; the reasons follow the messages of Elasticsearch's
        # BulkRequestParser and bulk request validation (not checked against 8.15 byte for byte).
        status, envelope = bad_request(kind, reason)
        self.recorder.write({"kind": "es_request", "method": self.command, "path": self.path,
                             "headers": self.request_headers(), "status": status,
                             "error": envelope["error"]})
        self.json_reply(status, envelope)

    def bulk(self, data: bytes, default_index: str | None, started: float) -> None:
        """docs-bulk.asciidoc: NDJSON action/source pairs; one item per action, in order."""
        headers = self.request_headers()
        if data and not data.endswith(b"\n"):
            self.refuse_bulk("illegal_argument_exception",
                             "The bulk request must be terminated by a newline [\\n]")
            return
        lines = data.split(b"\n")[:-1] if data else []
        actions, n = [], 0
        while n < len(lines):
            if not lines[n].strip():
                n += 1
                continue
            try:
                action = json.loads(lines[n])
            except ValueError:
                action = None
            if not isinstance(action, dict) or len(action) != 1:
                self.refuse_bulk("illegal_argument_exception",
                                 f"Malformed action/metadata line [{n + 1}], "
                                 "expected START_OBJECT or END_OBJECT")
                return
            (op, meta), = action.items()
            if op not in ("index", "create", "delete", "update") or not isinstance(meta, dict):
                self.refuse_bulk("illegal_argument_exception",
                                 f"Malformed action/metadata line [{n + 1}], "
                                 "expected field [create], [delete], [index] or "
                                 f"[update] but found [{op}]")
                return
            index = meta.get("_index") or default_index
            if not index:
                self.refuse_bulk("action_request_validation_exception",
                                 "Validation Failed: 1: index is missing;")
                return
            source = None
            if op != "delete":
                n += 1
                source = lines[n] if n < len(lines) else b""
            actions.append((op, str(index), meta.get("_id"), source))
            n += 1
        if not actions:
            self.refuse_bulk("action_request_validation_exception",
                             "Validation Failed: 1: no requests added;")
            return
        items = []
        for op, index, doc_id, source in actions:
            doc_id = None if doc_id is None else str(doc_id)
            if op == "update":  # a SIEM feed never updates; this double does not either
                items.append({op: {"_index": index, "_id": doc_id, "status": 400, "error": {
                    "type": "illegal_argument_exception",
                    "reason": "update is not supported by the SIEM receiver double"}}})
                continue
            doc, error = (None, None) if op == "delete" else parse_source(source)
            item = ({"_index": index, "_id": doc_id, "status": 400, "error": error} if error
                    else self.store.write(op, index, doc_id))
            if "error" in item:
                self.recorder.write({"kind": "es_rejected", "index": index, "id": doc_id,
                                     "raw": (source or b"").decode("utf-8", "replace"),
                                     "error": item["error"], "headers": headers})
            elif op != "delete":
                self.recorder.write({"kind": "es_doc", "index": index, "id": item["_id"],
                                     "doc": doc, "headers": headers})
            items.append({op: item})
        errors = any("error" in item for entry in items for item in entry.values())
        took = int((time.monotonic() - started) * 1000)
        self.json_reply(200, {"took": took, "errors": errors, "items": items})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = route


RFC5424 = re.compile(r"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) "
                     r"(-|(?:\[(?:[^\]\"\\]|\\.|\"(?:[^\"\\]|\\.)*\")*\])+)(?: (.*))?", re.S)
RFC3164 = re.compile(r"<(\d{1,3})>(?:([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)"
                     r"|(\d{4}-\d\d-\d\dT\S+)) (\S+) (.*)", re.S)
TAG = re.compile(r"([^\s:\[]+)(?:\[([^\]]*)\])?: ?(.*)", re.S)


def nil(value: str | None) -> str | None:
    return None if value == "-" else value  # RFC 5424 NILVALUE


def parse_syslog(msg: str) -> dict:
    """Best effort: RFC 5424 first, then RFC 3164 (and Go log/syslog's RFC 3339 variant)."""
    if m := RFC5424.fullmatch(msg):
        pri = int(m[1])
        return {"format": "rfc5424", "pri": pri, "facility": pri >> 3, "severity": pri & 7,
                "version": int(m[2]), "timestamp": nil(m[3]), "hostname": nil(m[4]),
                "app_name": nil(m[5]), "procid": nil(m[6]), "msgid": nil(m[7]),
                "structured_data": nil(m[8]), "msg": (m[9] or "").removeprefix("\ufeff")}
    if m := RFC3164.fullmatch(msg):
        pri = int(m[1])
        tag = TAG.fullmatch(m[5])
        return {"format": "rfc3164", "pri": pri, "facility": pri >> 3, "severity": pri & 7,
                "timestamp": m[2] or m[3], "hostname": m[4],
                "app_name": tag[1] if tag else None, "procid": tag[2] if tag else None,
                "msg": tag[3] if tag else m[5]}
    return {"format": None}


class SyslogHandler(socketserver.StreamRequestHandler):
    recorder: Recorder

    def handle(self) -> None:
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        while True:
            first = self.rfile.read(1)
            if not first:
                return
            if first in (b"\r", b"\n", b"\0"):
                continue  # what a sender puts between frames
            framing = "lf"  # RFC 6587 3.4.2 non-transparent framing, LF trailer
            if first.isdigit():
                head = first
                while (char := self.rfile.read(1)).isdigit():
                    head += char
                if char == b" ":  # RFC 6587 3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG
                    # read() allocates what it is asked for: a bogus length must not exhaust memory
                    framing, raw = "octet-counting", self.rfile.read(min(int(head), 1 << 24))
                else:
                    raw = head + char + (b"" if char in (b"\n", b"") else self.rfile.readline())
            else:
                raw = first + self.rfile.readline()
            if framing == "lf":
                raw = raw.rstrip(b"\n").rstrip(b"\r")
            msg = raw.decode("utf-8", "replace")
            self.recorder.write({"kind": "syslog", "framing": framing, "peer": peer,
                                 "raw": msg, **parse_syslog(msg)})


class SyslogServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, type=Path, help="JSON lines file to append to")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--es-port", type=int, default=9200)
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--syslog-port", type=int, default=6514)
    args = parser.parse_args(argv)
    recorder = Recorder(args.record)
    bases = {"recorder": recorder}
    listeners = [
        ("elasticsearch", ThreadingHTTPServer, args.es_port,
         type("ES", (ElasticHandler,), {**bases, "store": Store()})),
        ("http", ThreadingHTTPServer, args.http_port, type("HTTP", (CollectorHandler,), bases)),
        ("syslog", SyslogServer, args.syslog_port, type("Syslog", (SyslogHandler,), bases)),
    ]
    servers = []
    for name, server_class, port, handler in listeners:
        try:
            servers.append(server_class((args.bind, port), handler))
        except OSError as err:
            print(f"siem-receiver: cannot listen for {name} on {args.bind}:{port}: {err}",
                  file=sys.stderr)
            return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
    where = ", ".join(f"{name} {args.bind}:{server.server_address[1]}"
                      for (name, *_), server in zip(listeners, servers, strict=True))
    print(f"siem-receiver: listening on {where}; recording to {args.record}", flush=True)
    while not stop.wait(1):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
