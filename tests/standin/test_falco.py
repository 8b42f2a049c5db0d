"""The stand-in `falco`: configuration and rules loading, validation, reload, journal lines."""

from __future__ import annotations

import hashlib
import json
import time

from standin_support import BROKEN_RULE, GOOD_RULE, wait_for


def _names(entries: list[dict]) -> list[str]:
    return [e["path"].rsplit("/", 1)[-1] for e in entries]


def test_version_text_and_json_forms(tree):
    text = tree.falco("--version", check=True).stdout.splitlines()
    assert text[0] == "Falco version: 0.44.0"
    assert [line.split(":")[0] for line in text] == [
        "Falco version", "Libs version", "Plugin API", "Engine", "Driver",
        "  API version", "  Schema version", "  Default driver"]
    # The package scripts probe the default driver this way (scripts/packaging/functions.sh.in).
    assert text[-1] == "  Default driver: 10.2.0+driver"
    data = json.loads(tree.falco("-o", "json_output=true", "--version", check=True).stdout)
    assert data["falco_version"] == "0.44.0"
    assert data["engine_version"] == "62" and data["engine_version_semver"] == "0.62.0"


def test_validate_default_rules_then_a_custom_file(tree):
    custom = tree.base / "custom.yaml"
    custom.write_text(GOOD_RULE)
    res = tree.falco("-V", str(tree.etc / "falco_rules.yaml"), "-V", str(custom))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{custom}: Ok" in res.stdout


def test_validate_invalid_file_prints_falcos_text_and_json(tree):
    broken = tree.base / "brief_rules.yaml"
    broken.write_text(BROKEN_RULE)
    res = tree.falco("-V", str(broken))
    assert res.returncode == 1
    assert res.stdout.startswith(f"{broken}: Invalid")
    assert "nonexistent field proc.nosuchfield" in res.stdout
    assert f"Error: {broken}: Invalid" in res.stderr
    res = tree.falco("-o", "json_output=true", "-V", str(broken))
    assert res.returncode == 1
    result = json.loads(res.stdout)["falco_load_results"][0]
    assert result["successful"] is False
    assert result["errors"][0]["code"] == "LOAD_ERR_COMPILE_CONDITION"


def test_unknown_option_is_an_error(tree):
    res = tree.falco("--no-such-option")
    assert res.returncode == 1 and res.stderr.startswith("Error:")


def test_start_loads_config_and_rules_in_falcos_order(tree, daemon):
    (tree.config_d / "20-json.yaml").write_text("json_output: false\n")
    (tree.config_d / "10-json.yaml").write_text("json_output: true\n")
    (tree.rules_d / "b.yaml").write_text(GOOD_RULE.replace("test shell", "test shell b"))
    (tree.rules_d / "a.yaml").write_text(GOOD_RULE)
    d = daemon("-o", "engine.kind=modern_ebpf")
    state = d.wait_state()
    assert state["engine_kind"] == "modern_ebpf"
    assert _names(state["config_files"]) == [
        "falco.yaml", "10-json.yaml", "20-json.yaml", "falco.container_plugin.yaml"]
    assert state["json_output"] is False  # the later drop-in wins
    assert _names(state["rules_files"]) == [
        "falco_rules.yaml", "falco_rules.local.yaml", "a.yaml", "b.yaml"]
    digest = hashlib.sha256((tree.etc / "falco_rules.yaml").read_bytes()).hexdigest()
    assert state["rules_files"][0]["sha256"] == digest
    assert "Stand-in test shell in container" in state["rules"]
    assert "Stand-in test shell b in container" in state["rules"]
    assert state["plugins"] == ["container"]
    assert state["reload_count"] == 0 and state["alerts_emitted"] == 0
    assert wait_for(lambda: "Opening 'syscall' source with modern BPF probe." in d.log())
    assert d.proc.poll() is None


def test_engine_kind_comes_from_falcoctl_drop_in_without_override(tree, daemon):
    res = tree.falcoctl("driver", "config", "--type", "kmod", "--falco-config-dir", str(tree.etc))
    assert res.returncode == 0, res.stderr
    state = daemon().wait_state()
    assert state["engine_kind"] == "kmod"


def test_cold_start_with_invalid_rules_exits_nonzero(tree):
    (tree.rules_d / "broken.yaml").write_text(BROKEN_RULE)
    res = tree.falco("-o", "engine.kind=modern_ebpf")
    assert res.returncode == 1
    assert f"Error: {tree.rules_d / 'broken.yaml'}: Invalid" in res.stderr
    assert tree.read_state() is None


def test_unsupported_engine_kind_is_refused(tree):
    res = tree.falco("-o", "engine.kind=ebpf")  # removed in Falco 0.44
    assert res.returncode == 1 and "engine.kind" in res.stderr


def test_sighup_reloads_good_rules_in_the_same_process(tree, daemon):
    tree.config.write_text(tree.config.read_text().replace(
        "watch_config_files: true", "watch_config_files: false"))
    d = daemon("-o", "engine.kind=modern_ebpf")
    d.wait_state()
    (tree.rules_d / "new.yaml").write_text(GOOD_RULE)
    d.hup()
    state = d.wait_state(lambda s: s["reload_count"] == 1)
    assert "Stand-in test shell in container" in state["rules"]
    assert state["last_reload"]["result"] == "ok"
    assert state["last_reload"]["trigger"] == "SIGHUP"
    assert "SIGHUP received, restarting..." in d.log()


def test_bad_reload_keeps_the_old_rules_and_logs_hot_restart_failure(tree, daemon):
    d = daemon("-o", "engine.kind=modern_ebpf")
    before = d.wait_state()
    broken = tree.rules_d / "broken.yaml"
    broken.write_text(BROKEN_RULE)
    d.hup()
    state = d.wait_state(lambda s: s["reload_failures"] >= 1)
    assert state["rules_files"] == before["rules_files"]
    assert state["rules"] == before["rules"]
    assert state["last_reload"]["result"] == "failed"
    # Through the outputs (stdout_output here, json_output false), not the logger.
    assert f"Critical Falco internal: hot restart failure: {broken}: Invalid" in d.stdout()
    assert "nonexistent field proc.nosuchfield" in d.stdout()
    assert "hot restart failure" not in d.log()
    assert "SIGHUP received" not in d.log()  # no restart after a failed dry run
    assert d.proc.poll() is None  # still running: `systemctl reload` exits 0


def test_watch_config_files_reloads_without_a_signal(tree, daemon):
    d = daemon("-o", "engine.kind=modern_ebpf")
    d.wait_state()
    started = time.monotonic()
    (tree.rules_d / "watched.yaml").write_text(GOOD_RULE)
    state = d.wait_state(lambda s: s["reload_count"] >= 1, timeout=5)
    assert time.monotonic() - started < 2.0
    assert state["last_reload"]["trigger"] == "watch_config_files"
    assert "Stand-in test shell in container" in state["rules"]
    (tree.config_d / "90-json.yaml").write_text("json_output: true\n")
    state = d.wait_state(lambda s: s["json_output"] is True, timeout=5)
    assert "SIGHUP received, restarting..." in d.log()


def test_watch_disabled_means_no_reload(tree, daemon):
    tree.config.write_text(tree.config.read_text().replace(
        "watch_config_files: true", "watch_config_files: false"))
    d = daemon("-o", "engine.kind=modern_ebpf")
    d.wait_state()
    (tree.rules_d / "ignored.yaml").write_text(GOOD_RULE)
    time.sleep(0.6)
    assert tree.read_state()["reload_count"] == 0


def test_sigterm_exits_cleanly_and_removes_the_state(tree, daemon):
    d = daemon("-o", "engine.kind=modern_ebpf")
    d.wait_state()
    assert d.stop() == 0
    assert tree.read_state() is None
    # Falco logs this text for the terminate signal, SIGTERM included (journal-stop.txt).
    assert d.log().rstrip("\n").endswith("SIGINT received, exiting...")


def test_second_instance_cannot_listen_and_leaves_the_running_state(tree, daemon):
    d = daemon("-o", "engine.kind=modern_ebpf")
    state = d.wait_state()
    res = tree.falco("-o", "engine.kind=modern_ebpf")  # same web server port
    assert res.returncode == 1
    assert res.stderr.endswith("Error: an error occurred while starting webserver\n")
    assert tree.read_state() == state
    assert d.proc.poll() is None
