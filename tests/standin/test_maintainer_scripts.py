"""The stand-in's postinst/postrm with recording shims for systemctl and falcoctl.

Enable/start only run where /run/systemd/system exists (a systemd host); the end-to-end check on a
test host covers them. Here: the driver choice, the falcoctl calls and the follower mask.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from standin_support import STANDIN

SHIM = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
if [ "$(basename "$0")" = falcoctl ] && [ "$1 $2" = "driver printenv" ]; then
    echo 'DRIVER="modern_ebpf"'
fi
"""
UNITS = ["falco-kmod.service", "falco-modern-bpf.service", "falco-custom.service",
         "falcoctl-artifact-follow.service"]


def run_script(tmp_path: Path, script: str, arg: str, **env: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("systemctl", "falcoctl", "dialog", "clear"):
        (bin_dir / name).write_text(SHIM)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), **env}
    res = subprocess.run(["/bin/sh", str(STANDIN / "debian" / script), arg], env=full_env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    return calls.read_text().splitlines()


def test_postinst_none_stops_disables_and_configures_nothing(tmp_path):
    calls = run_script(tmp_path, "postinst", "configure",
                       FALCO_FRONTEND="noninteractive", FALCO_DRIVER_CHOICE="none")
    assert calls[:8] == ([f"systemctl --system stop {u}" for u in UNITS]
                         + [f"systemctl --system disable {u}" for u in UNITS])
    assert "systemctl --system unmask falcoctl-artifact-follow.service" in calls
    assert not [c for c in calls if c.startswith("falcoctl")]
    assert "systemctl --system daemon-reload" in calls
    assert not [c for c in calls if " mask " in c]


@pytest.mark.parametrize(("choice", "driver"), [("modern_ebpf", "modern_ebpf"),
                                                ("modern-bpf", "modern_ebpf"),
                                                ("kmod", "kmod")])
def test_postinst_configures_the_chosen_driver(tmp_path, choice, driver):
    calls = run_script(tmp_path, "postinst", "configure",
                       FALCO_FRONTEND="noninteractive", FALCO_DRIVER_CHOICE=choice)
    assert f"falcoctl driver config --type {driver}" in calls
    builds = [c for c in calls if c.startswith("falcoctl driver install")]
    assert builds == (["falcoctl driver install --download=false"] if driver == "kmod" else [])


def test_postinst_default_is_automatic_selection(tmp_path):
    calls = run_script(tmp_path, "postinst", "configure", FALCO_FRONTEND="noninteractive")
    assert "falcoctl driver config --type auto" in calls
    assert "falcoctl driver printenv" in calls


def test_postinst_masks_the_follower_when_falcoctl_is_disabled(tmp_path):
    calls = run_script(tmp_path, "postinst", "configure", FALCO_FRONTEND="noninteractive",
                       FALCO_DRIVER_CHOICE="none", FALCOCTL_ENABLED="no")
    unmask = calls.index("systemctl --system unmask falcoctl-artifact-follow.service")
    assert calls.index("systemctl --system mask falcoctl-artifact-follow.service") > unmask


def test_postinst_noninteractive_never_opens_dialog(tmp_path):
    calls = run_script(tmp_path, "postinst", "configure", FALCO_FRONTEND="noninteractive")
    assert not [c for c in calls if c.startswith("dialog")]


def test_postrm_remove_disables_the_four_units(tmp_path):
    calls = run_script(tmp_path, "postrm", "remove")
    if os.path.isdir("/run/systemd/system"):
        assert [f"systemctl --system disable {u}" for u in UNITS] == calls[:4]
    else:  # only on a systemd host, as upstream
        assert calls == []
