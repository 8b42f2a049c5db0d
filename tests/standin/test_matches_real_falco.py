"""The stand-in `falco` against recordings of a real Falco 0.40.0 (shared corpus falco-real-0.40/).

What is compared: the logger's lines (here read from stderr, prefix stripped; on a host the same
lines go to syslog and the journal), the internal hot restart failure on the outputs (stdout_output
and file_output here; syslog_output on a host) and the raw answers of the web server. Normalised:
timestamps, PIDs and hostnames, the tmp tree's prefix (vs /etc/falco), the `System info:` value,
version numbers (stand-in 0.44.0, recording 0.40.0) and, in the web server line, the address, port
and threadiness (the tests listen on 127.0.0.1 and a free port; the recorded host had 2 CPUs and
threadiness 0 = the CPU count).

The local tree is shaped like the recorded host: config.d holds the project's alert drop-in
(60-falco-deploy-alerts.yaml) and falcoctl's engine-kind-falcoctl.yaml, and nothing else (Falco
0.40 has no container plugin drop-in); rules.d holds the project's falco-deploy_rules.yaml when
the recording had it.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from standin_support import ROOT, SHARED, Daemon, FalcoTree, wait_for

CORPUS = SHARED / "corpus" / "falco-real-0.40"
PROJECT_RULES = ROOT / "rules" / "falco-deploy_rules.yaml"

# Reconstructed from the recorded error text: rule 'broken' at 0:2, its condition at 2:13, the
# unknown field at column 32 of `evt.type=open and nosuch.field=1`.
BROKEN = """\
- rule: broken
  desc: broken
  condition: evt.type=open and nosuch.field=1
  output: broken
  priority: WARNING
"""

ALERTS_DROP_IN = """\
# Managed by falco-deploy (falco_service role, falco_service_alert_output_enabled).
# JSON alerts appended to {events}; read by `falco-deploy verify`.
file_output:
  enabled: true
  filename: {events}
  keep_alive: false
json_include_output_property: true
json_include_tags_property: true
json_output: {json_output}
"""

JOURNAL_LINE = re.compile(r"^\S+ \S+ ([\w.-]+)\[\d+\]: (.*)$")
STDERR_PREFIX = re.compile(
    r"^(?:[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}): ")
WEB_LINE = re.compile(r"^Starting health webserver with threadiness \d+, listening on \S+:\d+$")
FAILURE_PREFIX = "Falco internal: hot restart failure: "


# ---------------------------------------------------------------------------------------------
# The recordings


def _journal(name: str) -> list[tuple[str, str]]:
    entries = []
    for line in (CORPUS / name).read_text().splitlines():
        match = JOURNAL_LINE.match(line)
        assert match, f"{name}: not a journal line: {line!r}"
        entries.append((match.group(1), match.group(2)))
    return entries


def _falco(entries: list[tuple[str, str]]) -> list[str]:
    return [message for ident, message in entries if ident == "falco"]


def recorded_cold_start() -> list[str]:
    """journal-cold-start.txt up to the reload that follows the start."""
    entries = _journal("journal-cold-start.txt")
    end = next(i for i, (ident, msg) in enumerate(entries)
               if ident == "systemd" and msg.startswith("Reloading"))
    return _falco(entries[:end])


def recorded_failed_dry_run() -> tuple[list[str], str]:
    """The first block of journal-bad-then-good-reload.txt (zz-broken.yaml appears, the watch
    reloads by itself): the dry run's lines, and the JSON document the syslog output wrote."""
    messages = _falco(_journal("journal-bad-then-good-reload.txt"))
    end = next(i for i, msg in enumerate(messages) if msg.startswith("{"))
    return messages[:end], messages[end]


def recorded_good_reload() -> list[str]:
    """The last block of journal-bad-then-good-reload.txt: `systemctl reload` (SIGHUP) with good
    rules: dry run, `SIGHUP received, restarting...`, the whole start."""
    entries = _journal("journal-bad-then-good-reload.txt")
    start = max(i for i, (ident, msg) in enumerate(entries)
                if ident == "systemd" and msg.startswith("Reloaded"))
    return _falco(entries[start + 1:])


def recorded_responses() -> list[bytes]:
    """The raw HTTP answers in webserver-healthz-versions.txt (/healthz, then /versions), each
    cut at its Content-Length."""
    data = (CORPUS / "webserver-healthz-versions.txt").read_bytes()
    responses = []
    while data.strip():
        data = data.lstrip(b"\n")
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
        responses.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return responses


def normalise(message: str, tree: FalcoTree | None = None) -> str:
    if tree is not None:
        message = message.replace(str(tree.etc), "/etc/falco")
    message = re.sub(r"^System info: .+$", "System info: <kernel>", message)
    return re.sub(r"^Falco version: \d+\.\d+\.\d+ ", "Falco version: <version> ", message)


def expected(messages: list[str], tree: FalcoTree) -> list[str]:
    """Recorded lines as this machine's run must write them."""
    out = []
    for message in messages:
        if message.startswith("Starting health webserver"):
            assert WEB_LINE.match(message), message
            message = (f"Starting health webserver with threadiness {os.cpu_count()}, "
                       f"listening on 127.0.0.1:{tree.web_port}")
        out.append(normalise(message))
    return out


# ---------------------------------------------------------------------------------------------
# The stand-in


@dataclass
class Host:
    tree: FalcoTree
    events: Path


def shape_like_recorded_host(tree: FalcoTree, json_output: bool = True) -> Host:
    (tree.config_d / "falco.container_plugin.yaml").unlink()
    events = tree.base / "events.json"
    (tree.config_d / "60-falco-deploy-alerts.yaml").write_text(
        ALERTS_DROP_IN.format(events=events, json_output=str(json_output).lower()))
    (tree.config_d / "engine-kind-falcoctl.yaml").write_text("engine:\n    kind: modern_ebpf\n")
    return Host(tree, events)


@pytest.fixture
def host(tree) -> Host:
    if not CORPUS.is_dir():
        pytest.skip(f"recordings of real Falco not found at {CORPUS}")
    return shape_like_recorded_host(tree)


def start(daemon, host: Host) -> Daemon:
    # ExecStart of falco-modern-bpf.service.
    d = daemon("-o", "engine.kind=modern_ebpf")
    d.wait_state()
    return d


def logged(d: Daemon, tree: FalcoTree, since: int = 0) -> list[str]:
    """The logger's lines from stderr, prefix stripped and normalised."""
    out = []
    for line in d.log().splitlines()[since:]:
        match = STDERR_PREFIX.match(line)
        assert match, f"no logger prefix: {line!r}"
        out.append(normalise(line[match.end():], tree))
    return out


def normalise_document(line: str, tree: FalcoTree) -> str:
    """time and hostname replaced (after checking their form), the tree prefix made /etc/falco;
    the rest stays byte for byte."""
    assert re.search(r'"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"', line), line
    line = re.sub(r'"time":"[^"]*"', '"time":"<time>"', line)
    line = re.sub(r'"hostname":"[^"]*"', '"hostname":"<hostname>"', line)
    return line.replace(str(tree.etc), "/etc/falco")


def http_get(port: int, path: str) -> bytes:
    """One GET on loopback, like curl: HTTP/1.1, keep-alive; read exactly one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before the headers: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the body"
            body += chunk
        return head + b"\r\n\r\n" + body


def answers(port: int) -> bool:
    try:
        return http_get(port, "/healthz").startswith(b"HTTP/1.1 200 OK\r\n")
    except OSError:
        return False


def header_names(response: bytes) -> list[str]:
    head = response.partition(b"\r\n\r\n")[0].decode()
    return [line.split(":", 1)[0] for line in head.split("\r\n")[1:]]


# ---------------------------------------------------------------------------------------------
# Journal lines


def test_cold_start_logs_the_recorded_sequence(host, daemon):
    d = start(daemon, host)
    assert logged(d, host.tree) == expected(recorded_cold_start(), host.tree)
    # The value normalised above is /proc/version, as Falco's print_kernel_version reads it.
    proc_version = Path("/proc/version").read_text().strip()
    assert f"System info: {proc_version}" in d.log()
    assert "stand-in" not in d.log()


def test_good_sighup_reload_logs_dry_run_then_the_whole_start(host, daemon):
    (host.tree.rules_d / "falco-deploy_rules.yaml").write_bytes(PROJECT_RULES.read_bytes())
    d = start(daemon, host)
    before = len(d.log().splitlines())
    d.hup()
    state = d.wait_state(lambda s: s["reload_count"] == 1)
    assert state["last_reload"]["trigger"] == "SIGHUP"
    assert logged(d, host.tree, before) == expected(recorded_good_reload(), host.tree)
    assert state["pid"] == d.proc.pid and d.proc.poll() is None


def test_bad_file_in_rules_d_gives_the_recorded_dry_run_and_json_failure(host, daemon):
    (host.tree.rules_d / "falco-deploy_rules.yaml").write_bytes(PROJECT_RULES.read_bytes())
    d = start(daemon, host)
    before = len(d.log().splitlines())
    rules_before = d.tree.read_state()["rules_files"]
    (host.tree.rules_d / "zz-broken.yaml").write_text(BROKEN)
    state = d.wait_state(lambda s: s["reload_failures"] == 1)
    assert state["last_reload"]["trigger"] == "watch_config_files"
    assert state["rules_files"] == rules_before  # the old rules stay

    dry_run, journal_document = recorded_failed_dry_run()
    # The logger writes the dry run only: no SIGHUP line, no restart, and not the document.
    assert logged(d, host.tree, before) == expected(dry_run, host.tree)

    recorded = (CORPUS / "alert-file-hot-restart-failure.jsonl").read_text().splitlines()[0]
    assert journal_document == recorded  # the syslog output and the file output agree
    want = normalise_document(recorded, host.tree)
    written = host.events.read_text().splitlines()
    assert [normalise_document(line, host.tree) for line in written] == [want]
    printed = d.stdout().splitlines()
    assert [normalise_document(line, host.tree) for line in printed] == [want]
    document = json.loads(written[0])
    assert document["hostname"] == socket.gethostname()
    assert d.proc.poll() is None


def test_failure_with_json_output_false_is_the_text_form(tree, daemon):
    if not CORPUS.is_dir():
        pytest.skip(f"recordings of real Falco not found at {CORPUS}")
    host = shape_like_recorded_host(tree, json_output=False)
    d = start(daemon, host)
    (tree.rules_d / "zz-broken.yaml").write_text(BROKEN)
    d.wait_state(lambda s: s["reload_failures"] == 1)
    recorded = json.loads((CORPUS / "alert-file-hot-restart-failure.jsonl").read_text()
                          .splitlines()[0])
    error = recorded["output"].removeprefix(FAILURE_PREFIX)
    assert error.endswith("LOAD_ERR_COMPILE_CONDITION (Error compiling condition): filter_check "
                          "called with nonexistent field nosuch.field\n")
    # falco_outputs.cpp handle_msg: HH:MM:SS.nnnnnnnnn + ": " + priority + " " + msg + " (" +
    # fields + ")", fields empty.
    for text in (d.stdout(), tree.base.joinpath("events.json").read_text()):
        text = text.replace(str(tree.etc), "/etc/falco")
        match = re.fullmatch(r"\d\d:\d\d:\d\d\.\d{9}: (.*)\n", text, re.DOTALL)
        assert match, text
        assert match.group(1) == f"Critical {FAILURE_PREFIX}{error} ()"


def test_stop_logs_sigint_received(host, daemon):
    d = start(daemon, host)
    assert d.stop() == 0
    recorded = _falco(_journal("journal-stop.txt"))
    assert logged(d, host.tree)[-len(recorded):] == expected(recorded, host.tree)
    assert recorded[-1] == "SIGINT received, exiting..."


# ---------------------------------------------------------------------------------------------
# Web server


def test_healthz_answer_is_byte_identical(host, daemon):
    start(daemon, host)
    healthz = recorded_responses()[0]
    assert http_get(host.tree.web_port, "/healthz") == healthz


def test_versions_has_the_recorded_form_and_the_standins_versions(host, daemon):
    start(daemon, host)
    recorded = recorded_responses()[1]
    answer = http_get(host.tree.web_port, "/versions")
    assert answer.split(b"\r\n")[0] == recorded.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert header_names(answer) == header_names(recorded)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/json\r\nKeep-Alive: timeout=5, max=5" in head
    assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head
    recorded_body = recorded.partition(b"\r\n\r\n")[2]
    data = json.loads(body)
    assert data.keys() == json.loads(recorded_body).keys()
    # Same form as Falco's nlohmann dump: keys sorted, compact.
    assert body == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    version = host.tree.falco("-o", "json_output=true", "--version", check=True).stdout
    assert data == json.loads(version)


def test_other_paths_are_not_found(host, daemon):
    start(daemon, host)
    for path in ("/metrics", "/", "/healthz/x"):
        answer = http_get(host.tree.web_port, path)
        assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer
        assert b"Server:" not in answer and b"Date:" not in answer


def test_web_server_comes_back_after_a_good_reload_and_stays_after_a_failed_one(host, daemon):
    d = start(daemon, host)
    port = host.tree.web_port
    healthz = recorded_responses()[0]
    assert http_get(port, "/healthz") == healthz
    (host.tree.rules_d / "zz-broken.yaml").write_text(BROKEN)
    d.wait_state(lambda s: s["reload_failures"] == 1)
    assert http_get(port, "/healthz") == healthz  # the dry run leaves it running
    (host.tree.rules_d / "zz-broken.yaml").unlink()
    d.wait_state(lambda s: s["reload_count"] == 1)
    log = d.log()
    restart = log.index("SIGHUP received, restarting...")
    assert f"listening on 127.0.0.1:{port}" in log[restart:]  # started again by the restart
    assert wait_for(lambda: answers(port))
    assert http_get(port, "/healthz") == healthz
    d.hup()
    d.wait_state(lambda s: s["reload_count"] == 2)
    assert http_get(port, "/healthz") == healthz


def test_no_web_server_when_disabled(host, daemon):
    (host.tree.config_d / "70-no-webserver.yaml").write_text("webserver:\n  enabled: false\n")
    d = start(daemon, host)
    assert "Starting health webserver" not in d.log()
    assert "Opening 'syscall' source with modern BPF probe." in d.log()
    with pytest.raises(OSError):
        http_get(host.tree.web_port, "/healthz")


def test_reconstructed_broken_file_gives_the_recorded_error_text(tree):
    """The project's validator (vendored into the stand-in) writes the recorded report."""
    broken = tree.rules_d / "zz-broken.yaml"
    broken.write_text(BROKEN)
    res = tree.falco("-V", str(broken))
    assert res.returncode == 1
    if not CORPUS.is_dir():
        pytest.skip(f"recordings of real Falco not found at {CORPUS}")
    recorded = json.loads((CORPUS / "alert-file-hot-restart-failure.jsonl").read_text()
                          .splitlines()[0])
    error = recorded["output"].removeprefix(FAILURE_PREFIX)
    assert res.stdout.replace(str(tree.etc), "/etc/falco") == error
