"""The falco_preflight probe module: parsing helpers and the bpf(2) probes it reports on."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
import sys
from pathlib import Path

import pytest

MODULE_PATH = (
    Path(__file__).resolve().parents[2] / "plugins" / "modules" / "falco_preflight_probe.py"
)


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("falco_preflight_probe", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _btf_blob(types: list[tuple[str, int, bytes]]) -> bytes:
    """A minimal BTF blob: (name, kind, extra bytes after btf_type) per type, ids from 1."""
    strings = b"\0"
    body = b""
    for name, kind, extra in types:
        offset = len(strings)
        strings += name.encode() + b"\0"
        vlen = len(extra) // 12 if kind == 4 else 0
        body += struct.pack("<III", offset, (kind << 24) | vlen, 0) + extra
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return header + body + strings


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.18.44-fc-v657", "6.18.44"),
        ("5.8.0-63-generic", "5.8.0"),
        ("5.4", "5.4.0"),
        ("4.18.0-553.el8_10.x86_64", "4.18.0"),
        ("6.1.0-rc7+", "6.1.0"),
    ],
)
def test_kernel_version_keeps_only_the_numbers(probe, release, expected):
    assert probe.kernel_version(release) == expected


def test_btf_type_id_walks_variable_sized_types(probe, tmp_path):
    # An INT (4 extra bytes) and a STRUCT with two members (2 * 12 bytes) come first: a parser
    # that ignores their tails would misread the typedef that follows.
    blob = _btf_blob(
        [
            ("int", 1, b"\0" * 4),
            ("task_struct", 4, b"\0" * 24),
            ("btf_trace_sys_enter", 8, b""),
        ]
    )
    path = tmp_path / "vmlinux"
    path.write_bytes(blob)
    assert probe.btf_type_id(str(path), b"btf_trace_sys_enter") == 3
    assert probe.btf_type_id(str(path), b"btf_trace_sys_exit") == 0
    # A struct of the same name is not the typedef the tp_btf attach needs.
    assert probe.btf_type_id(str(path), b"task_struct") == 0


def test_btf_type_id_rejects_other_files(probe, tmp_path):
    path = tmp_path / "not-btf"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError):
        probe.btf_type_id(str(path), b"btf_trace_sys_enter")


@pytest.mark.skipif(not os.path.isfile("/sys/kernel/btf/vmlinux"), reason="kernel without BTF")
def test_btf_type_id_finds_sys_enter_in_the_running_kernel(probe):
    assert probe.btf_type_id("/sys/kernel/btf/vmlinux", b"btf_trace_sys_enter") > 0


def test_capabilities_read_cap_sys_resource_from_both_sets(probe, monkeypatch):
    # The build machine's bounding set: every capability but CAP_SYS_RESOURCE (bit 24).
    status = "CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n"
    monkeypatch.setattr(probe, "read", lambda path, default="": status)
    caps = probe.capabilities()
    assert caps["CAP_SYS_RESOURCE"] is False
    assert caps["CAP_BPF"] is True and caps["CAP_SYS_ADMIN"] is True
    assert caps["cap_bnd"] == "000001fffeffffff"

    full = "CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
    monkeypatch.setattr(probe, "read", lambda path, default="": full)
    assert probe.capabilities()["CAP_SYS_RESOURCE"] is True


class _FakeModule:
    def __init__(self, rc: int, out: str) -> None:
        self.rc, self.out, self.calls = rc, out, []

    def run_command(self, argv):
        self.calls.append(argv)
        return self.rc, self.out, ""


def test_unit_states_split_systemctl_show_blocks_in_order(probe, monkeypatch):
    monkeypatch.setattr(probe.shutil, "which", lambda name: "/usr/bin/" + name)
    out = (
        "Id=falco-modern-bpf.service\nLoadState=loaded\nUnitFileState=enabled\n"
        "ActiveState=active\nSubState=running\n\n"
        "Id=falcoctl-artifact-follow.service\nLoadState=masked\nUnitFileState=masked\n"
        "ActiveState=inactive\nSubState=dead\n"
    )
    module = _FakeModule(0, out)
    units = ["falco-modern-bpf.service", "falcoctl-artifact-follow.service"]
    states = probe.unit_states(module, units)
    assert len(module.calls) == 1
    assert states["falco-modern-bpf.service"]["ActiveState"] == "active"
    assert states["falcoctl-artifact-follow.service"]["UnitFileState"] == "masked"
    assert probe.unit_states(_FakeModule(1, ""), units) == {}


def test_file_states_report_content_and_owner(probe, tmp_path):
    path = tmp_path / "falcosecurity.list"
    path.write_text("deb x stable main\n")
    path.chmod(0o644)
    states = probe.file_states([str(path), str(tmp_path / "missing")])
    # The same checksum ansible.builtin.copy compares, so roles can skip unchanged files.
    assert states[str(path)]["sha1"] == hashlib.sha1(b"deb x stable main\n").hexdigest()
    assert states[str(path)]["mode"] == "0644"
    assert states[str(path)]["regular"] is True
    assert states[str(tmp_path / "missing")] == {}


@pytest.mark.skipif(sys.platform != "linux", reason="bpf(2) is Linux only")
def test_bpf_probes_report_errors_not_exceptions(probe):
    arch = os.uname().machine
    if arch not in probe.BPF_SYSCALL:
        pytest.skip(f"no bpf syscall number for {arch}")
    bpf = probe.Bpf(arch)
    # A ring buffer size that is not a power-of-two multiple of the page size is always refused.
    attr = bytearray(probe.ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, probe.BPF_MAP_TYPE_RINGBUF, 0, 0, 1000)
    bad = bpf.call(probe.BPF_MAP_CREATE, attr)
    assert bad["ok"] is False and bad["error"]
    # A tracing program with a BTF id that names no function/typedef is refused as well.
    wrong = bpf.prog(probe.BPF_PROG_TYPE_TRACING, probe.BPF_TRACE_RAW_TP, 1)
    assert wrong["ok"] is False and wrong["error"]
