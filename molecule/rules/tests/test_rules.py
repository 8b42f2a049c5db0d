"""The rules lifecycle on a real systemd host with the stand-in Falco.

After converge the host runs the scenario's first release. The later tests run the playbooks the
wrapper runs (rules_deploy.yml, rollback.yml, status.yml) against the same host, in file order,
and assert what the host and the running Falco then hold: files, links, manifests, the hashes of
the rules Falco loaded (the stand-in's state file) and how many reloads happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import testinfra

INVENTORY_FILE = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
SCENARIO = PROJECT / "molecule" / "rules"
FILES = SCENARIO / "files"
HOST = "fd-rules-1"
STATE_DIR = "/var/lib/falco-deploy"
RELEASES = f"{STATE_DIR}/releases"
RULES_D = "/etc/falco/rules.d"
STANDIN_STATE = "/run/falco/standin-state.json"
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# A restarted stand-in rewrites its state file once its rules are loaded.
WAIT = f"for i in $(seq 100); do [ -s {STANDIN_STATE} ] && break; sleep 0.1; done"

FIRST_SOURCES = [str(PROJECT / "rules"), str(FILES / "good")]
SECOND_SOURCES = FIRST_SOURCES + [str(FILES / "good2")]


@pytest.fixture(scope="module")
def host():
    # docker exec directly: the ansible backend would start ansible for every command.
    return testinfra.get_host(f"docker://{HOST}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_files(sources: list[str]) -> dict[str, bytes]:
    out = {}
    for source in map(Path, sources):
        for path in sorted(source.iterdir()) if source.is_dir() else [source]:
            if path.suffix in (".yaml", ".yml") and path.is_file():
                out[path.name] = path.read_bytes()
    return out


def run_playbook(name: str, extra: dict | None = None, check: bool = False,
                 gate_may_refuse: bool = False) -> dict:
    """Run playbooks/<name> as the wrapper does; return rc, the host's report, its stats and,
    for rules_deploy.yml, the offline gate's verdict (`validation`)."""
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
               ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
               ANSIBLE_PIPELINING="True",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_FORCE_COLOR="0",
               MOLECULE_PROJECT_DIRECTORY=str(PROJECT),
               MOLECULE_SCENARIO_DIRECTORY=str(SCENARIO))
    argv = [str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(Path(INVENTORY_FILE).parent), str(PROJECT / "playbooks" / name)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    if check:
        argv += ["--check", "--diff"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"{name}: no JSON output (rc {proc.returncode}):\n{proc.stdout[-3000:]}"
                    f"\n{proc.stderr[-3000:]}")
    report, diffs, validation = None, [], None
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            res = task.get("hosts", {}).get(HOST, {})
            if isinstance(res.get("falco_deploy_result"), dict):
                report = res["falco_deploy_result"]
            if isinstance(res.get("validation"), dict) and "falco_load_results" in res.get(
                    "validation"):
                validation = res["validation"]
            diff = res.get("diff")
            diffs += diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []
    if not (gate_may_refuse and validation is not None and not validation["ok"]):
        assert report is not None, f"{name}: no falco_deploy_result:\n{proc.stdout[-3000:]}"
    return {"rc": proc.returncode, "report": report, "stats": doc["stats"][HOST],
            "diffs": diffs, "validation": validation}


LIVE_PROBE = r"""
import hashlib, json, os, sys
d = sys.argv[1]
link = os.readlink(d) if os.path.islink(d) else ""
files = {n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest()
         for n in sorted(os.listdir(d))}
state = json.load(open(sys.argv[2]))
print(json.dumps({"link": link, "files": files, "state": state}))
"""


def live(host) -> dict:
    """What is live: the active release, the live files' hashes, what Falco loaded."""
    probe = json.loads(host.check_output(f"python3 -c '{LIVE_PROBE}' {RULES_D} {STANDIN_STATE}"))
    state = probe["state"]
    loaded = {Path(f["path"]).name: f["sha256"] for f in state["rules_files"]
              if f["path"].startswith(RULES_D + "/")}
    return {"active": Path(probe["link"]).parent.name if probe["link"] else "",
            "files": probe["files"], "loaded": loaded,
            "reloads": (state["reload_count"], state["reload_failures"]), "pid": state["pid"]}


def releases(host) -> list[str]:
    return sorted(host.check_output(f"ls -1 {RELEASES}/").split())


def manifest(host, rid: str) -> dict:
    return json.loads(host.file(f"{RELEASES}/{rid}/manifest.json").content_string)


def assert_runs_exactly(host, rid: str, wanted: dict[str, bytes]) -> None:
    """rid is live, its files are byte-identical to `wanted`, and Falco loaded those bytes."""
    now = live(host)
    hashes = {name: sha256(data) for name, data in wanted.items()}
    assert now["active"] == rid
    assert now["files"] == hashes
    assert now["loaded"] == hashes
    assert {f["name"]: f["sha256"] for f in manifest(host, rid)["files"]} == hashes
    assert host.file(f"{STATE_DIR}/active").content_string.strip() == rid


# --- after converge ----------------------------------------------------------------------------

def test_live_set_is_the_release_and_its_manifest_describes_it(host):
    rid = live(host)["active"]
    assert ID_PATTERN.match(rid), rid
    wanted = source_files(FIRST_SOURCES)
    assert_runs_exactly(host, rid, wanted)
    assert host.file(RULES_D).linked_to == f"{RELEASES}/{rid}/rules"

    meta = manifest(host, rid)
    lines = "".join(f"{sha256(wanted[n])}  {n}\n" for n in sorted(wanted))
    assert meta["sha256"] == sha256(lines.encode()) and rid.endswith(meta["sha256"][:8])
    assert meta["files"] == [{"name": n, "sha256": sha256(wanted[n]), "size": len(wanted[n])}
                             for n in sorted(wanted)]
    head = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert meta["source"]["git_commit"].startswith(head.stdout.strip())
    assert meta["source"]["paths"] == FIRST_SOURCES
    init = (PROJECT / "wrapper" / "falco_deploy" / "__init__.py").read_text()
    assert meta["falco_deploy_version"] == re.search(r'__version__ = "([^"]+)"', init).group(1)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", meta["created"])


def test_release_files_are_root_owned_and_not_writable_by_others(host):
    assert host.check_output(
        f"find {STATE_DIR} \\( ! -user root -o ! -group root -o -perm /0022 \\) -print") == ""
    modes = host.check_output(f"find {RELEASES} -mindepth 1 -printf '%y %m %P\\n'").splitlines()
    for line in modes:
        kind, mode, path = line.split(" ", 2)
        assert mode == ("755" if kind == "d" else "644"), line


def test_first_deploy_adopted_the_operators_folder(host):
    rid = live(host)["active"]
    previous = host.file(f"{STATE_DIR}/previous").content_string.strip()
    assert previous and previous != rid and previous in releases(host)
    meta = manifest(host, previous)
    assert meta["source"].get("adopted") is True
    operator = (FILES / "operator_rules.yaml").read_bytes()
    assert [f["name"] for f in meta["files"]] == ["operator_rules.yaml"]
    assert host.file(f"{RELEASES}/{previous}/rules/operator_rules.yaml").content_string.encode() \
        == operator


# --- broken sets: refused, nothing switched, Falco not even reloaded ---------------------------
# The offline gate on the control node refuses them before any host task. Sets that pass the
# gate but not the host's own falco -V (here: a gate base that differs from the hosts' base
# rules) are refused by the host, with the same outcome for Falco.

BROKEN = [
    ("yaml_error.yaml", "yaml-cpp: error at line"),
    ("unknown_field.yaml", "nonexistent field proc.nosuchfield"),
    ("undefined_macro.yaml", "Undefined macro 'fd_scenario_no_such_macro'"),
    ("override_missing_rule.yaml", "no rule by that name already exists"),
    ("empty.yaml", "empty.yaml"),  # Falco would accept it; the gate, like the hosts, does not
    # Passes alone (only a warning); fails once falco_rules.yaml is loaded first.
    ("only_with_base.yaml", "nonexistent field proc.nosuchfield"),
]
UPSTREAM = PROJECT / "wrapper" / "falco_deploy" / "rules_engine" / "data" / "falco_rules-0.44.yaml"
# (file, the sources deployed, the gate's base files, what the host's falco -V says)
HOST_ONLY = [
    # Alone and after an empty base: only a warning for the gate.
    ("only_with_base.yaml", [], [FILES / "gate-base" / "empty.yaml"],
     "nonexistent field proc.nosuchfield"),
    # The gate's base defines the macro; the hosts' base rules do not.
    ("undefined_macro.yaml", FIRST_SOURCES, [UPSTREAM, FILES / "gate-base" / "site_macros.yaml"],
     "Undefined macro 'fd_scenario_no_such_macro'"),
]


@pytest.fixture(scope="module")
def broken_runs(host):
    """Deploy every broken set at once (the host's lock serialises what reaches it; ansible's
    start-up overlaps): the live state before, each run's outcome, the live state after."""
    before, history = live(host), releases(host)
    runs = {("gate", name): {"falco_rules_sources": FIRST_SOURCES + [str(FILES / "broken" / name)]}
            for name, _ in BROKEN}
    runs.update({("host", name): {
        "falco_rules_sources": sources + [str(FILES / "broken" / name)],
        "falco_rules_gate_base_files": [str(b) for b in base],
        "falco_rules_fail_on_warnings": False,
    } for name, sources, base, _ in HOST_ONLY})
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {key: pool.submit(run_playbook, "rules_deploy.yml", extra,
                                    gate_may_refuse=key[0] == "gate")
                   for key, extra in runs.items()}
        outcomes = {key: future.result() for key, future in futures.items()}
    return {"before": before, "history": history, "outcomes": outcomes,
            "after": live(host), "after_history": releases(host)}


def _messages(validation: dict) -> str:
    return json.dumps([f for f in validation["falco_load_results"] if not f["successful"]]
                      + validation["empty_files"])


@pytest.mark.parametrize(("name", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_set_is_refused_by_the_gate_before_the_host(broken_runs, name, expected):
    out = broken_runs["outcomes"][("gate", name)]
    assert out["rc"] != 0
    assert out["report"] is None  # the play ended at the gate, before any host task
    assert out["validation"]["ok"] is False
    assert expected in _messages(out["validation"]), _messages(out["validation"])
    assert out["stats"]["changed"] == 0


@pytest.mark.parametrize(("name", "expected"), [(h[0], h[3]) for h in HOST_ONLY],
                         ids=[h[0] for h in HOST_ONLY])
def test_a_set_only_the_host_refuses(broken_runs, name, expected):
    out = broken_runs["outcomes"][("host", name)]
    assert out["validation"]["ok"] is True  # the gate let it through
    assert out["rc"] != 0
    assert out["report"]["status"] == "refused"
    assert expected in out["report"]["reason"], out["report"]["reason"]
    assert out["report"]["release"] == broken_runs["before"]["active"]
    assert out["stats"]["changed"] == 0


def test_after_broken_sets_falco_still_runs_the_previous_release(broken_runs):
    # Same release, same bytes, same loaded hashes, and not a single reload attempt.
    assert broken_runs["after"] == broken_runs["before"]
    assert broken_runs["after_history"] == broken_runs["history"]  # nothing left behind


def test_the_combined_failure_needs_the_base_rules(host):
    """The last broken file is valid for a falco -V that loads it alone."""
    text = (FILES / "broken" / "only_with_base.yaml").read_text()
    host.run(f"cat > /tmp/only_with_base.yaml <<'EOF'\n{text}EOF")
    alone = host.run("falco -c /etc/falco/falco.yaml -V /tmp/only_with_base.yaml")
    assert alone.rc == 0, alone.stdout
    together = host.run("falco -c /etc/falco/falco.yaml -V /etc/falco/falco_rules.yaml "
                        "-V /tmp/only_with_base.yaml")
    assert together.rc == 1


# --- check mode, second release, rollback ------------------------------------------------------

def test_check_mode_reports_the_change_and_changes_nothing(host):
    before, history = live(host), releases(host)
    out = run_playbook("rules_deploy.yml", {"falco_rules_sources": SECOND_SOURCES}, check=True)
    assert out["rc"] == 0 and out["stats"]["changed"] >= 1
    assert out["report"]["status"] == "ok"
    assert "add scenario_rules_v2.yaml" in out["report"]["plan"]
    assert any(d.get("after_header", "").endswith("scenario_rules_v2.yaml") for d in out["diffs"])
    assert live(host) == before and releases(host) == history


SAMPLER = r"""
import hashlib, json, os, sys, time
live, stop, out = sys.argv[1:4]
states, samples = {}, 0
while not os.path.exists(stop):
    try:
        real = os.path.realpath(live)  # one resolution per sample: what a reload would read
        state = sorted([n, hashlib.sha256(open(os.path.join(real, n), "rb").read()).hexdigest()]
                       for n in os.listdir(real))
    except OSError as exc:
        state = ["error", str(exc)]
    states[json.dumps(state)] = 1
    samples += 1
    time.sleep(0.002)
json.dump({"samples": samples, "states": [json.loads(k) for k in states]}, open(out, "w"))
"""


def test_second_release_then_rollback_one_step_is_byte_identical(host):
    first = live(host)["active"]
    # Sample the live folder all through the deploy: only the complete old set or the complete
    # new set may ever be seen there (no missing folder, no half-copied or mixed set).
    host.run("rm -f /tmp/sampler.stop /tmp/sampler.json")
    host.run(f"setsid python3 -c '{SAMPLER}' {RULES_D} /tmp/sampler.stop /tmp/sampler.json "
             "</dev/null >/dev/null 2>&1 &")
    out = run_playbook("rules_deploy.yml", {"falco_rules_sources": SECOND_SOURCES})
    host.run("touch /tmp/sampler.stop; for i in $(seq 50); do [ -s /tmp/sampler.json ] && break; "
             "sleep 0.1; done")
    assert out["rc"] == 0 and out["report"]["status"] == "ok", out["report"]
    second = out["report"]["release"]
    assert second != first and second > first and out["report"]["previous_release"] == first
    # Judged from what Falco offers: its journal, its unit, its web server.
    checks = out["report"]["health_checks"]
    assert checks[0] == "journal: the reload that followed `systemctl reload " \
                        "falco-modern-bpf.service`"
    assert checks[1] == f"journal: Falco loaded the release's 3 file(s) from {RULES_D}"
    assert re.match(r"^unit: falco-modern-bpf.service active, MainPID \d+ kept$", checks[2])
    assert checks[3] == "web server: /healthz ok and /versions says Falco 0.44.0 on " \
                        "127.0.0.1:8765"
    assert_runs_exactly(host, second, source_files(SECOND_SOURCES))
    sampled = json.loads(host.file("/tmp/sampler.json").content_string)
    sets = [sorted([n, sha256(d)] for n, d in source_files(src).items())
            for src in (FIRST_SOURCES, SECOND_SOURCES)]
    assert sampled["samples"] > 10
    assert sets[1] in sampled["states"]
    assert all(state in sets for state in sampled["states"]), sampled["states"]

    out = run_playbook("rollback.yml", {"falco_rules_rollback_steps": 1})
    assert out["rc"] == 0 and out["report"]["status"] == "ok", out["report"]
    assert out["report"]["release"] == first and out["report"]["previous_release"] == second
    assert_runs_exactly(host, first, source_files(FIRST_SOURCES))


def test_failed_health_check_switches_back(host):
    """Falco that never finishes a reload: the switch is undone and the host reported."""
    host.run("mkdir -p /etc/systemd/system/falco-modern-bpf.service.d && "
             "printf '[Service]\\nExecReload=\\nExecReload=/bin/true\\n' "
             "> /etc/systemd/system/falco-modern-bpf.service.d/zz-no-reload.conf && "
             "printf 'watch_config_files: false\\n' > /etc/falco/config.d/zz-no-watch.yaml && "
             f"systemctl daemon-reload && systemctl restart falco-modern-bpf.service && {WAIT}")
    try:
        before = live(host)
        out = run_playbook("rules_deploy.yml", {"falco_rules_sources": SECOND_SOURCES,
                                                 "falco_rules_health_timeout": 1})
        assert out["rc"] != 0
        assert out["report"]["status"] == "rolled_back"
        assert out["report"]["reason"].startswith(
            "Falco wrote nothing to the journal of falco-modern-bpf.service within 1 s of "
            "`systemctl reload`: no reload happened")
        now = live(host)
        assert now["active"] == before["active"] and now["files"] == before["files"]
        assert now["loaded"] == before["loaded"]
    finally:
        host.run("rm -f /etc/systemd/system/falco-modern-bpf.service.d/zz-no-reload.conf "
                 "/etc/falco/config.d/zz-no-watch.yaml && systemctl daemon-reload && "
                 f"systemctl restart falco-modern-bpf.service && {WAIT}")


BROKEN_EXTRA = """\
- rule: broken
  desc: broken
  condition: evt.type=open and nosuch.field=1
  output: broken
  priority: WARNING
"""


def test_a_reload_falco_refuses_switches_back(host):
    """The host's `falco -V` accepts the set, but the running Falco's dry run refuses the
    reload: a drop-in has it also load a rules file outside the files the role validates with
    (falco_rules_base_files), and that file is broken. The hot restart failure Falco writes to
    its journal (a JSON document: the alert drop-in sets json_output) switches the host back."""
    extra = "/etc/falco/zz-extra-rules.yaml"
    host.run(f"cat > {extra} <<'EOF'\n{BROKEN_EXTRA}EOF")
    host.run(f"printf 'rules_files:\\n  - {extra}\\n' > /etc/falco/config.d/zz-extra.yaml")
    try:
        before = live(host)
        out = run_playbook("rules_deploy.yml", {"falco_rules_sources": SECOND_SOURCES,
                                                 "falco_rules_health_timeout": 10})
        assert out["rc"] != 0
        report = out["report"]
        assert report["status"] == "rolled_back", report
        assert report["reason"] == (
            f"Falco refused the reload: {extra}:2:13: LOAD_ERR_COMPILE_CONDITION (Error "
            "compiling condition): filter_check called with nonexistent field nosuch.field")
        assert report["health_checks"][0].startswith("journal: the reload that followed")
        now = live(host)
        assert (now["active"], now["files"], now["loaded"], now["pid"]) == (
            before["active"], before["files"], before["loaded"], before["pid"])
        journal = host.check_output("journalctl -u falco-modern-bpf.service -o cat -n 300")
        assert '"rule":"Falco internal: hot restart failure","source":"internal"' in journal
    finally:
        host.run(f"rm -f /etc/falco/config.d/zz-extra.yaml {extra} && "
                 f"systemctl restart falco-modern-bpf.service && {WAIT}")


# --- drift ---------------------------------------------------------------------------------------

def test_out_of_band_edit_is_drift_and_a_deploy_repairs_it(host):
    active = live(host)["active"]
    host.run(f"echo '# edited by hand' >> {RULES_D}/scenario_rules.yaml")
    out = run_playbook("status.yml")
    assert out["rc"] == 0 and out["stats"]["changed"] == 0
    report = out["report"]
    assert report["status"] == "ok" and report["release"] == active
    assert report["drift"] is True and report["drift_files"] == [f"{RULES_D}/scenario_rules.yaml"]
    assert report["falco_version"] == "0.44.0" and report["driver"] == "modern_ebpf"
    assert report["service"].startswith("falco-modern-bpf.service active")
    assert report["release_sha256"] == manifest(host, active)["sha256"]

    out = run_playbook("rules_deploy.yml", {"falco_rules_sources": FIRST_SOURCES,
                                             "falco_rules_keep_releases": 2})
    assert out["rc"] == 0 and out["stats"]["changed"] == 1
    repaired = out["report"]["release"]
    assert repaired != active and out["report"]["drift"] is False
    assert_runs_exactly(host, repaired, source_files(FIRST_SOURCES))
    # keep 2: the new active one and the previous one (the drifted release) stay.
    assert releases(host) == sorted([active, repaired])
