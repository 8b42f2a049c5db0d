"""The health check after a reload (module_utils/falco_rules_host.py), judged on what a real
Falco 0.40 wrote: the recorded journals, alert documents and web server answers in
../shared/corpus/falco-real-0.40/. No root, no systemd: the host's commands are replayed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from test_falco_rules_probe import load_host_code

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT.parent / "shared" / "corpus" / "falco-real-0.40"
UNIT = "falco-modern-bpf.service"
RULES_FILE = "/etc/falco/rules.d/falco-deploy_rules.yaml"

pytestmark = pytest.mark.skipif(not RECORDED.is_dir(), reason=f"corpus not found at {RECORDED}")


frh = load_host_code()


def recorded(name: str) -> list[dict]:
    return frh.journal_entries_from_text((RECORDED / name).read_text(encoding="utf-8"))


def reloads(entries: list[dict]) -> list[int]:
    """Indexes of systemd's `Reloading ...` lines (one per `systemctl reload`)."""
    return [i for i, e in enumerate(entries)
            if e["ident"] == "systemd" and e["message"].startswith("Reloading")]


def as_text_form(entries: list[dict]) -> list[dict]:
    """The same journal as Falco writes it with json_output false: an internal event is
    `<HH:MM:SS.nnnnnnnnn>: Critical <output> (<fields>)` (falcosecurity/falco
    userspace/falco/falco_outputs.cpp, handle_msg), here made from the recorded JSON documents."""
    out = []
    for entry in entries:
        message = entry["message"]
        if message.startswith("{"):
            doc = json.loads(message)
            clock = doc["time"][11:29]
            message = f"{clock}: {doc['priority']} {doc['output']} ()"
        out.append({**entry, "message": message})
    return out


BAD_THEN_GOOD = recorded("journal-bad-then-good-reload.txt")
FIRST_RELOAD, LAST_RELOAD = reloads(BAD_THEN_GOOD)[0], reloads(BAD_THEN_GOOD)[-1]


# -- reading the journal ----------------------------------------------------------------------


def test_recorded_journal_lines_parse_into_entries():
    entries = recorded("journal-cold-start.txt")
    assert entries[0] == {"ident": "systemd", "pid": 1, "message": entries[0]["message"]}
    assert entries[1] == {"ident": "falco", "pid": 1437,
                          "message": "Falco version: 0.40.0 (x86_64)"}


def test_journalctl_json_record_becomes_the_same_entry():
    record = {"SYSLOG_IDENTIFIER": "falco", "_PID": "2573", "__CURSOR": "s=1",
              "MESSAGE": list(b"SIGHUP received, restarting...")}
    assert frh.journal_entry(record) == {"ident": "falco", "pid": 2573,
                                         "message": "SIGHUP received, restarting..."}


def test_a_good_reload_lists_the_files_it_loaded():
    outcomes, pending, reload_at = frh.reload_outcomes(BAD_THEN_GOOD[LAST_RELOAD - 1:])
    assert reload_at == 1 and not pending
    ours = [o for o in outcomes if o["start"] > reload_at]
    assert len(ours) == 1 and ours[0]["ok"]
    assert ours[0]["loaded"] == ["/etc/falco/falco_rules.yaml",
                                 "/etc/falco/falco_rules.local.yaml", RULES_FILE]
    assert ours[0]["webserver"] == "0.0.0.0:8765"


@pytest.mark.parametrize("form", ["json", "text"])
def test_a_failing_reload_is_a_failure_that_names_its_file_and_line(form):
    entries = BAD_THEN_GOOD[FIRST_RELOAD:LAST_RELOAD - 1]
    if form == "text":
        entries = as_text_form(entries)
        assert not any(e["message"].startswith("{") for e in entries)
    outcomes, _, reload_at = frh.reload_outcomes(entries)
    ours = [o for o in outcomes if o["start"] > reload_at]
    assert not ours[0]["ok"]
    assert frh.report_summary(ours[0]["detail"]) == (
        "/etc/falco/rules.d/zz-broken.yaml:2:13: LOAD_ERR_COMPILE_CONDITION (Error compiling "
        "condition): filter_check called with nonexistent field nosuch.field")


def test_the_alert_file_document_is_a_hot_restart_failure_too():
    for line in (RECORDED / "alert-file-hot-restart-failure.jsonl").read_text().splitlines():
        assert frh.restart_failure(line).startswith("/etc/falco/rules.d/zz-broken.yaml: Invalid")
    assert frh.restart_failure('{"rule": "Terminal shell in container", "output": "x"}') is None
    assert frh.restart_failure("SIGHUP received, restarting...") is None


def test_only_a_dry_run_that_began_after_systemctl_reload_is_ours():
    # The watched-file reload at 22:47:19 failed before the first `systemctl reload`; the
    # reload's own dry run failed again after it.
    outcomes, _, reload_at = frh.reload_outcomes(BAD_THEN_GOOD[:LAST_RELOAD - 1])
    assert [(o["ok"], o["start"] > reload_at) for o in outcomes] == [
        (False, False), (False, True), (True, True)]


def test_a_dry_run_that_fails_on_the_configuration_is_a_failure_too():
    """Falco reads its configuration before it logs `Falco version:`: a bad drop-in fails the
    dry run with the failure line alone."""
    document = next(e for e in BAD_THEN_GOOD if e["message"].startswith("{"))
    entries = [BAD_THEN_GOOD[FIRST_RELOAD], BAD_THEN_GOOD[FIRST_RELOAD + 1], document]
    outcomes, pending, reload_at = frh.reload_outcomes(entries)
    assert not pending and len(outcomes) == 1
    assert not outcomes[0]["ok"] and outcomes[0]["start"] > reload_at


def test_a_reload_in_progress_is_pending():
    cut = next(i for i in range(LAST_RELOAD, len(BAD_THEN_GOOD))
               if BAD_THEN_GOOD[i]["message"].startswith("SIGHUP received"))
    outcomes, pending, _ = frh.reload_outcomes(BAD_THEN_GOOD[LAST_RELOAD:cut + 3])
    assert pending and outcomes == []


def test_the_web_server_the_last_start_ran():
    assert frh.last_webserver(recorded("journal-cold-start.txt")) == "0.0.0.0:8765"
    # The reload into the metrics configuration restarted without the web server.
    metrics = recorded("journal-reload-metrics-webserver.txt")
    assert frh.last_webserver(metrics[:reloads(metrics)[1]]) == ""
    assert frh.last_webserver(metrics) == "0.0.0.0:8765"
    assert frh.last_webserver(recorded("journal-stop.txt")) == ""


# -- the whole check, with the host's commands replayed ----------------------------------------


def recorded_answers() -> dict[str, bytes]:
    """The recorded raw HTTP answers of /healthz and /versions, in order."""
    text = (RECORDED / "webserver-healthz-versions.txt").read_text(encoding="utf-8")
    answers = [chunk for chunk in text.split("HTTP/1.1 ") if chunk.strip()]
    raw = []
    for chunk in answers:
        head, body = chunk.split("\n\n", 1)
        head_lines = ("HTTP/1.1 " + head).split("\n")
        length = int(next(h for h in head_lines if h.startswith("Content-Length")).split(": ")[1])
        raw.append(("\r\n".join(head_lines) + "\r\n\r\n").encode() + body.encode()[:length])
    return {"/healthz": raw[0], "/versions": raw[1]}


class RecordedWebServer:
    """Answers GET /healthz and /versions with the recorded bytes on a free loopback port."""

    def __init__(self) -> None:
        self.answers = recorded_answers()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                path = conn.recv(4096).split(b" ")[1].decode()
                conn.sendall(self.answers.get(path, b"HTTP/1.1 404 Not Found\r\n"
                                                    b"Content-Length: 0\r\n\r\n"))

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReplayedHost(frh.Host):
    """A host whose journal, unit and switch are replayed: `history` is what the journal held
    before the switch, `after` arrives a few entries per read after `systemctl reload`."""

    def __init__(self, history, after, pids=(2573,), wanted=("falco-deploy_rules.yaml",)):
        super().__init__({"service_unit": UNIT, "health_timeout": 3})
        self.history, self.after, self.pids = history, list(after), list(pids)
        self.wanted = list(wanted)
        self.commands: list[list[str]] = []
        self.reads = 0

    def unit_facts(self, refresh=False):
        pid = self.pids[min(self.reads, len(self.pids) - 1)]
        return {"unit": UNIT, "active": "active", "sub": "running", "main_pid": pid,
                "restarts": 0}

    def journal(self, unit, cursor=None, lines=0):
        if not cursor:
            return self.history, "c0"
        self.reads += 1
        chunk, self.after = self.after[:4], self.after[4:]
        return chunk, f"c{self.reads}"

    def run(self, argv, timeout=120):
        self.commands.append(list(argv))
        return 0, "", ""

    def switch(self, rid):
        self.commands.append(["switch", rid])

    def set_record(self, name, rid):
        pass

    def manifest(self, rid):
        return {"files": [{"name": n, "sha256": ""} for n in self.wanted]}


def with_webserver(entries: list[dict], port: int) -> list[dict]:
    return [{**e, "message": e["message"].replace("0.0.0.0:8765", f"127.0.0.1:{port}")}
            for e in entries]


def test_replayed_good_reload_is_healthy_by_journal_unit_and_web_server():
    server = RecordedWebServer()
    try:
        history = with_webserver(recorded("journal-cold-start.txt")[:16], server.port)
        after = with_webserver(BAD_THEN_GOOD[LAST_RELOAD:], server.port)
        host = ReplayedHost(history, after)
        assert host.reload_and_check("r2") == ""
    finally:
        server.close()
    assert ["systemctl", "reload", UNIT] in host.commands
    assert host.checks == [
        f"journal: the reload that followed `systemctl reload {UNIT}`",
        "journal: Falco loaded the release's 1 file(s) from /etc/falco/rules.d",
        f"unit: {UNIT} active, MainPID 2573 kept",
        f"web server: /healthz ok and /versions says Falco 0.40.0 on 127.0.0.1:{server.port}",
    ]


@pytest.mark.parametrize("form", ["json", "text"])
def test_replayed_failing_reload_is_refused_with_its_file(form):
    # The file is removed 2 s later and Falco reloads by itself: the verdict comes before that.
    after = BAD_THEN_GOOD[FIRST_RELOAD:LAST_RELOAD - 1]
    host = ReplayedHost(recorded("journal-cold-start.txt")[:16],
                        after if form == "json" else as_text_form(after))
    assert host.reload_and_check("r2") == (
        "Falco refused the reload: /etc/falco/rules.d/zz-broken.yaml:2:13: "
        "LOAD_ERR_COMPILE_CONDITION (Error compiling condition): filter_check called with "
        "nonexistent field nosuch.field")


def test_replayed_reload_of_other_files_is_a_mismatch():
    host = ReplayedHost(recorded("journal-cold-start.txt")[:16], BAD_THEN_GOOD[LAST_RELOAD:],
                        wanted=("falco-deploy_rules.yaml", "site_rules.yaml"))
    assert host.reload_and_check("r2") == (
        "Falco loaded ['falco-deploy_rules.yaml'] from /etc/falco/rules.d, expected "
        "['falco-deploy_rules.yaml', 'site_rules.yaml']")


def test_replayed_reload_without_the_web_server_coming_back_is_reported():
    metrics = recorded("journal-reload-metrics-webserver.txt")
    host = ReplayedHost(recorded("journal-cold-start.txt")[:16], metrics[:reloads(metrics)[1]])
    problem = host.reload_and_check("r2")
    assert problem == ("Falco's web server (listening on 0.0.0.0:8765 before the reload) did "
                       "not start again: no `Starting health webserver` line after the restart")


def test_replayed_web_server_that_does_not_answer_is_reported():
    port = free_port()  # nothing listens there
    after = with_webserver(BAD_THEN_GOOD[LAST_RELOAD:], port)
    host = ReplayedHost(with_webserver(recorded("journal-cold-start.txt")[:16], port), after)
    host.params["health_timeout"] = 1
    started = time.monotonic()
    problem = host.reload_and_check("r2")
    assert problem.startswith(f"Falco's web server on 127.0.0.1:{port} is not healthy after "
                              "the reload (/healthz: connection refused")
    assert time.monotonic() - started < 5


def test_replayed_crash_during_the_reload_is_reported_with_the_journal():
    host = ReplayedHost(recorded("journal-cold-start.txt")[:16], BAD_THEN_GOOD[LAST_RELOAD:],
                        pids=(2573, 2573, 3001))
    problem = host.reload_and_check("r2")
    assert problem.startswith(f"{UNIT} did not stay up during the reload: active (running), "
                              "MainPID 2573 -> 3001")


def test_replayed_silence_says_the_reload_cannot_be_proven():
    systemd_only = [e for e in BAD_THEN_GOOD[LAST_RELOAD:] if e["ident"] == "systemd"]
    host = ReplayedHost([], systemd_only)
    host.params["health_timeout"] = 0.3
    assert host.reload_and_check("r2") == (
        f"Falco wrote nothing to the journal of {UNIT} within 0.3 s of `systemctl reload`: no "
        "reload happened, or Falco does not log through syslog (log_syslog: false), so none can "
        "be proven")


def test_a_stopped_falco_is_not_reloaded():
    class Stopped(ReplayedHost):
        def unit_facts(self, refresh=False):
            return {"unit": UNIT, "active": "inactive", "sub": "dead", "main_pid": 0,
                    "restarts": 0}

        def falco_bin(self):
            return "/usr/bin/falco"

    host = Stopped([], [])
    assert host.reload_and_check("r2") == ""
    assert ["systemctl", "reload", UNIT] not in host.commands
    assert host.checks == ["not reloaded: Falco is not running"]
    assert frh.health_status(host) == ("falco_down", f"{UNIT} inactive (dead): Falco is not "
                                                     "running")


# -- host-side falco -V: errors point at their file ---------------------------------------------

VALIDATE_EXAMPLE = RECORDED.parent / "falco-output" / "validate-json-example.txt"


def recorded_validate_json() -> dict:
    text = VALIDATE_EXAMPLE.read_text(encoding="utf-8")
    return json.loads(next(ln for ln in text.splitlines() if ln.startswith('{"falco_load_')))


class ValidatingHost(frh.Host):
    """A host whose `falco -V` prints a given JSON document."""

    def __init__(self, doc: dict, **params) -> None:
        super().__init__(params)
        self.doc = doc

    def falco_bin(self):
        return "/usr/bin/falco"

    def run(self, argv, timeout=120):
        return 1, json.dumps(self.doc) + "\n", ""


def test_host_validation_names_the_file_and_line_of_each_error(tmp_path):
    doc = recorded_validate_json()
    # The file as the release stages it; Falco reports it under that path.
    staged = str(tmp_path / "brief_rules.yaml")
    doc["falco_load_results"][0]["name"] = staged
    for loc in doc["falco_load_results"][0]["errors"][0]["context"]["locations"]:
        if loc["position"]["name"] == "tests/brief_rules.yaml":
            loc["position"]["name"] = staged
    host = ValidatingHost(doc, base_rules_files=[])
    results, reasons = host.validate(str(tmp_path), ["brief_rules.yaml"])
    assert reasons == ["brief_rules.yaml:14:13: LOAD_ERR_COMPILE_CONDITION: filter_check "
                       "called with nonexistent field proc.nosuchfield"]
    assert results[0]["successful"] is False


def test_an_error_filed_under_a_later_file_names_the_file_that_holds_it(tmp_path):
    """Falco files an error under the file it was loading when it compiled the set; the error's
    locations name the file that holds it (here a base file, not the release's)."""
    doc = recorded_validate_json()
    result = doc["falco_load_results"][0]
    result["name"] = str(tmp_path / "falco-deploy_rules.yaml")
    for loc in result["errors"][0]["context"]["locations"]:
        if loc["position"]["name"] == "tests/brief_rules.yaml":
            loc["position"]["name"] = "/etc/falco/falco_rules.local.yaml"
    host = ValidatingHost(doc, base_rules_files=[])
    _, reasons = host.validate(str(tmp_path), ["falco-deploy_rules.yaml"])
    assert reasons == ["/etc/falco/falco_rules.local.yaml:14:13: LOAD_ERR_COMPILE_CONDITION: "
                       "filter_check called with nonexistent field proc.nosuchfield"]
