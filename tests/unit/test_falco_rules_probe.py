"""The read-only probe of falco_rules_release (module_utils/falco_rules_host.py) and the action
plugin that answers `status` and an already-live deploy with it instead of the module.

The host here is this machine with rules_dir and state_dir in a temporary folder; files must be
root-owned to be in sync with a manifest, so most tests need root (CI runs as root).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST_CODE = ROOT / "plugins" / "module_utils" / "falco_rules_host.py"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="release files must be root-owned")


def load_host_code():
    """module_utils/falco_rules_host.py, loaded by path (standard library only)."""
    spec = importlib.util.spec_from_file_location("falco_rules_host", HOST_CODE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


frh = load_host_code()

FILES = {
    "a_rules.yaml": b"- macro: fd_probe_a\n  condition: evt.type = open\n",
    "b_rules.yaml": b"- list: fd_probe_b\n  items: [cat]\n",
}


def release_of(files: dict[str, bytes], rid: str = "20261130T120000Z-00000000") -> dict:
    entries = [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d),
                "content": base64.b64encode(d).decode()} for n, d in sorted(files.items())]
    digest = frh.manifest_hash(entries)
    return {"id": rid[:17] + digest[:8], "created": "2026-11-30T12:00:00Z", "sha256": digest,
            "files": entries, "source": {"git_commit": "", "paths": []},
            "falco_deploy_version": "test"}


@pytest.fixture
def host(tmp_path):
    """Options of a host whose rules_dir and state_dir live under tmp_path."""
    (tmp_path / "etc").mkdir()
    return {"rules_dir": str(tmp_path / "etc" / "rules.d"), "state_dir": str(tmp_path / "state"),
            "allowed_rules_dirs": [str(tmp_path / "etc" / "rules.d")],
            "falco_config": str(tmp_path / "etc" / "falco.yaml"),
            "base_rules_files": [], "service_unit": "fd-probe-none.service"}


def go_live(options: dict, release: dict) -> str:
    """Write the release and switch to it the way the module does."""
    h = frh.Host(options)
    files = frh.build_files(release)
    h.write_release(release["id"], files)
    meta = {k: release[k] for k in ("created", "sha256", "source", "falco_deploy_version")}
    meta["id"] = release["id"]
    meta["files"] = [{"name": n, "sha256": frh.sha256_bytes(d), "size": len(d)}
                     for n, d in sorted(files.items())]
    h.write_manifest(release["id"], meta)
    h.switch(release["id"])
    h.set_record("active", release["id"])
    return release["id"]


def run_probe(options: dict, want: str = "") -> dict:
    """The probe as the action plugin runs it: the file on stdin of an isolated python3."""
    proc = subprocess.run([sys.executable, "-I", "-", json.dumps({**options, "want_sha256": want})],
                          input=HOST_CODE.read_bytes(), capture_output=True, check=True)
    return json.loads(proc.stdout.decode().splitlines()[-1])


def test_host_code_needs_only_the_standard_library():
    # The probe runs on hosts where Ansible's module_utils are not installed.
    text = HOST_CODE.read_text()
    assert "ansible" not in "".join(line for line in text.splitlines()
                                    if line.startswith(("import ", "from ")))


def test_module_defaults_are_the_probe_defaults():
    text = (ROOT / "plugins" / "modules" / "falco_rules_release.py").read_text()
    for key in frh.DEFAULTS:
        if key in ("fail_on_warnings", "health_timeout"):
            continue
        assert f'"default": DEFAULTS["{key}"]' in text, key


@needs_root
def test_probe_says_live_for_the_active_release(host):
    release = release_of(FILES)
    rid = go_live(host, release)
    answer = run_probe(host, release["sha256"])
    assert answer["live"] is True
    result = answer["result"]
    assert result["release"] == rid and result["release_sha256"] == release["sha256"]
    assert result["drift"] is False and result["releases"] == [rid]
    # The probe tells the truth about Falco itself too: this machine has none.
    assert result["status"] == "no_falco" and result["falco_state"] == "missing"
    assert result["rules_dir_state"] == "release"


@needs_root
def test_probe_is_not_live_for_another_release(host):
    go_live(host, release_of(FILES))
    other = release_of({**FILES, "c_rules.yaml": b"- list: fd_probe_c\n  items: [ls]\n"})
    assert run_probe(host, other["sha256"])["live"] is False


@needs_root
@pytest.mark.parametrize("tamper", ["edit", "chmod", "extra", "remove"])
def test_probe_is_not_live_when_the_live_files_drifted(host, tamper):
    release = release_of(FILES)
    go_live(host, release)
    live = Path(host["rules_dir"])
    if tamper == "edit":
        (live / "a_rules.yaml").write_bytes(b"- macro: fd_probe_a\n  condition: evt.type = exec\n")
    elif tamper == "chmod":
        (live / "a_rules.yaml").chmod(0o666)
    elif tamper == "extra":
        (live / "zz_local.yaml").write_bytes(b"- list: extra\n  items: []\n")
    else:
        (live / "b_rules.yaml").unlink()
    answer = run_probe(host, release["sha256"])
    assert answer["live"] is False
    assert answer["result"]["drift"] is True and answer["result"]["drift_files"]


def test_probe_without_any_release(host):
    answer = run_probe(host, "0" * 64)
    assert answer["live"] is False
    assert answer["result"]["release"] == "" and answer["result"]["releases"] == []


# -- the action plugin, through ansible-playbook on this machine (local connection) -----------

PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Call falco_rules_release
      falco_deploy.falco.falco_rules_release: {args}
      register: out
    - name: Show the result
      ansible.builtin.debug:
        msg: "FD-RESULT {{{{ out | to_json }}}}"
"""


def play(tmp_path: Path, args: dict, **extra_vars) -> tuple[dict, str]:
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK.format(args=json.dumps(args)))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    proc = subprocess.run([str(playbook), "-vvv", str(book), "-e",
                           json.dumps({"ansible_python_interpreter": sys.executable,
                                       **extra_vars})],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if "FD-RESULT " in ln)
    return json.loads(line.split("FD-RESULT ", 1)[1].rstrip('"').replace('\\"', '"')), proc.stdout


PROBED = "answered by the probe, no module call"


@needs_root
def test_live_release_is_answered_by_the_probe(tmp_path, host):
    release = release_of(FILES)
    rid = go_live(host, release)
    out, log = play(tmp_path, {"action": "deploy", "release": release, **host})
    assert PROBED in log
    assert out["changed"] is False
    assert out["result"]["release"] == rid and out["result"]["drift"] is False
    # As the module reports its invocation (shown at -vvv): never the release's contents.
    assert release["files"][0]["content"] not in log


@needs_root
def test_without_pipelining_the_module_answers_the_same(tmp_path, host):
    # The probe travels on stdin like a pipelined module; without pipelining the module runs.
    release = release_of(FILES)
    rid = go_live(host, release)
    out, log = play(tmp_path, {"action": "deploy", "release": release, **host},
                    ansible_pipelining=False)
    assert PROBED not in log
    assert out["changed"] is False
    assert out["result"]["release"] == rid and out["result"]["drift"] is False


@needs_root
def test_status_is_answered_by_the_probe(tmp_path, host):
    rid = go_live(host, release_of(FILES))
    out, log = play(tmp_path, {"action": "status", **host})
    assert PROBED in log
    assert out["result"]["release"] == rid


@needs_root
def test_a_release_that_is_not_live_goes_to_the_module(tmp_path, host):
    go_live(host, release_of(FILES))
    other = release_of({"c_rules.yaml": b"- list: fd_probe_c\n  items: [ls]\n"})
    out, log = play(tmp_path, {"action": "deploy", "release": other, **host,
                               "health_timeout": 1})
    assert PROBED not in log
    # The module ran: this machine has no falco, so it stops before staging anything.
    assert out["result"]["status"] == "no_falco"
    assert out["result"]["reason"] == "no falco binary on this host (Falco is not installed)"


@needs_root
def test_a_damaged_release_goes_to_the_module_even_when_its_hash_is_live(tmp_path, host):
    release = release_of(FILES)
    go_live(host, release)
    damaged = json.loads(json.dumps(release))
    damaged["files"][0]["content"] = base64.b64encode(b"- list: other\n  items: []\n").decode()
    out, log = play(tmp_path, {"action": "deploy", "release": damaged, **host})
    assert PROBED not in log
    assert out["result"]["status"] == "refused"
    assert "does not match its sha256" in out["result"]["reason"]


# -- the build: one release id per run, also across the batches of a serial play --------------

SERIAL_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  serial: 1
  tasks:
    - name: Build the release
      falco_deploy.falco.falco_rules_bundle:
        sources: ["{sources}"]
        fail_on_warnings: false  # the files are an unused macro and list
      run_once: true
      register: bundle
    - name: Show the id
      ansible.builtin.debug:
        msg: "FD-ID {{{{ bundle.release.id }}}} {{{{ bundle.release.created }}}}"
    - name: Let the clock pass a second so that a rebuilt release would get another id
      ansible.builtin.command: sleep 1.2
      changed_when: false
"""


def test_every_batch_of_a_serial_play_gets_the_same_release(tmp_path):
    sources = tmp_path / "rules"
    sources.mkdir()
    for name, data in FILES.items():
        (sources / name).write_bytes(data)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    fd-a: {ansible_connection: local}\n"
        "    fd-b: {ansible_connection: local}\n")
    book = tmp_path / "play.yml"
    book.write_text(SERIAL_PLAYBOOK.format(sources=sources))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    proc = subprocess.run([str(playbook), "-i", str(tmp_path / "hosts.yml"), str(book), "-e",
                           json.dumps({"ansible_python_interpreter": sys.executable})],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    ids = [ln.split("FD-ID ", 1)[1].rstrip('"') for ln in proc.stdout.splitlines()
           if "FD-ID " in ln]
    assert len(ids) == 2, proc.stdout[-3000:]
    assert ids[0] == ids[1]
    digest = frh.manifest_hash([{"name": n, "sha256": hashlib.sha256(d).hexdigest()}
                                for n, d in FILES.items()])
    assert ids[0].split()[0].endswith("-" + digest[:8])


def test_an_unreachable_host_is_reported_after_one_attempt(tmp_path):
    # A connection failure of the probe is the host's answer: no second try through the module.
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    fd-closed:\n      ansible_connection: ssh\n"
        "      ansible_host: 127.0.0.1\n      ansible_port: 1\n")  # nothing listens on port 1
    book = tmp_path / "play.yml"
    book.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Status\n"
                    "      falco_deploy.falco.falco_rules_release: {action: status}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    proc = subprocess.run([str(playbook), "-vvv", "-i", str(tmp_path / "hosts.yml"), str(book)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert "unreachable=1" in proc.stdout, proc.stdout[-3000:]
    attempts = [ln for ln in proc.stdout.splitlines() if "SSH: EXEC ssh" in ln]
    assert len(attempts) == 1, "\n".join(attempts)


# -- what the host refuses before it writes anything ---------------------------------------------

def test_release_ids_and_file_names_must_match_exactly():
    for rid in ("../../x", "20261130T120000Z-0000000g", "20261130T120000Z-00000000\n",
                "20261130T120000Z-00000000/.."):
        with pytest.raises(frh.Refused, match="invalid release id"):
            frh.check_release_id(rid)
    frh.check_release_id("20261130T120000Z-0a1b2c3d")
    for name in ("a.yaml\n", "my rules.yaml", ".hidden.yaml", "../x.yaml", "a/b.yaml", ""):
        assert frh.unsafe_name(name), name
    assert frh.unsafe_name("falco-deploy_rules.yaml") is None


@needs_root
def test_a_release_id_that_walks_out_of_the_releases_folder_is_refused(tmp_path, host):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    release = release_of(FILES)
    release["id"] = "../../victim"
    out, _ = play(tmp_path, {"action": "deploy", "release": release, **host})
    assert out["result"]["status"] == "refused"
    assert "invalid release id '../../victim'" in out["result"]["reason"]
    assert (victim / "keep.txt").read_text() == "x"
    assert not (tmp_path / "state" / "releases").exists() or \
        os.listdir(tmp_path / "state" / "releases") == []
    out, _ = play(tmp_path, {"action": "rollback", "rollback_to": "../../victim", **host})
    assert "invalid release id" in out["result"]["reason"]


def test_deploy_refuses_a_rules_dir_nobody_allowed(tmp_path, host):
    other = tmp_path / "etc" / "other"
    other.mkdir()
    (other / "mine.yaml").write_text("- list: mine\n  items: []\n")
    options = {**host, "rules_dir": str(other)}
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK.format(args=json.dumps(
        {"action": "deploy", "release": release_of(FILES), **options})))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), str(book),
                           "-e", json.dumps({"ansible_python_interpreter": sys.executable})],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert f"rules_dir {other} is not /etc/falco/rules.d nor in allowed_rules_dirs" in proc.stdout
    # Not adopted, not turned into a symlink.
    assert other.is_dir() and not other.is_symlink()
    assert (other / "mine.yaml").is_file()
