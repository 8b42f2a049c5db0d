"""The stand-in `falcoctl`: `driver config` writes what falcoctl writes; follow changes nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import yaml
from standin_support import FALCOCTL


def test_driver_config_writes_the_engine_kind_drop_in(tree):
    res = tree.falcoctl("driver", "config", "--type", "modern_ebpf",
                        "--falco-config-dir", str(tree.etc))
    assert res.returncode == 0, res.stderr
    target = tree.config_d / "engine-kind-falcoctl.yaml"
    # cmd/driver/config/config.go marshals {engine: {kind}} with yaml.v3 (4-space indent).
    assert target.read_text() == "engine:\n    kind: modern_ebpf\n"
    assert target.stat().st_mode & 0o777 == 0o644
    settings = yaml.safe_load(tree.falcoctl_config.read_text())
    assert settings["driver"]["type"] == ["modern_ebpf"]
    assert settings["artifact"]["follow"]["refs"] == ["falco-rules:5"]  # untouched
    # Idempotent: a second run leaves the same bytes.
    before = target.read_bytes()
    assert tree.falcoctl("driver", "config", "--type", "modern_ebpf",
                         "--falco-config-dir", str(tree.etc)).returncode == 0
    assert target.read_bytes() == before
    env = tree.falcoctl("driver", "printenv").stdout
    assert 'DRIVER="modern_ebpf"' in env.splitlines()


def test_driver_config_leaves_a_non_driver_falco_alone(tree):
    tree.config.write_text(tree.config.read_text().replace("kind: modern_ebpf", "kind: nodriver"))
    res = tree.falcoctl("driver", "config", "--type", "modern_ebpf",
                        "--falco-config-dir", str(tree.etc))
    assert res.returncode == 0
    assert "not configured to run with a driver" in res.stdout
    assert not (tree.config_d / "engine-kind-falcoctl.yaml").exists()


def test_driver_config_rejects_unknown_types(tree):
    res = tree.falcoctl("driver", "config", "--type", "gvisor", "--falco-config-dir", str(tree.etc))
    assert res.returncode != 0
    assert not (tree.config_d / "engine-kind-falcoctl.yaml").exists()


def test_artifact_follow_idles_and_changes_no_rules(tree):
    before = {p: p.read_bytes() for p in tree.etc.rglob("*") if p.is_file()}
    proc = subprocess.Popen([sys.executable, str(FALCOCTL), "--config", str(tree.falcoctl_config),
                             "artifact", "follow", "--allowed-types=rulesfile"],
                            env=tree.env, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stand-in" in out
    assert {p: p.read_bytes() for p in tree.etc.rglob("*") if p.is_file()} == before


def test_version(tree):
    res = tree.falcoctl("version")
    assert res.returncode == 0 and res.stdout.startswith("Client Version: ")
